//! SVG charts (plotters, SVG backend): latency distributions (percentile
//! plots) per link and fixed rate, and bulk throughput per link.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::paths::PathKind;
use crate::results::Results;
use crate::scenarios::bulk;

fn color(p: PathKind) -> RGBColor {
    match p {
        PathKind::Direct => RGBColor(90, 90, 90),
        PathKind::RawTls => RGBColor(150, 150, 150),
        PathKind::RawQuic => RGBColor(190, 190, 190),
        PathKind::Stunnel => RGBColor(31, 119, 180),
        PathKind::Haproxy => RGBColor(44, 160, 44),
        PathKind::Nginx => RGBColor(148, 103, 189),
        PathKind::FerryQuic => RGBColor(214, 39, 40),
        PathKind::FerryH2 => RGBColor(255, 127, 14),
        PathKind::FerryQuicOpaque => RGBColor(140, 20, 30),
        PathKind::FerryH2Opaque => RGBColor(180, 90, 10),
    }
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// x position of quantile q on a "number of nines" axis.
fn nines(q: f64, cap: f64) -> f64 {
    if q >= 1.0 {
        cap
    } else {
        (-(1.0 - q).log10()).min(cap)
    }
}

/// One percentile plot per (link, scenario) that has curves.
pub fn latency_charts(r: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for c in &r.curves {
        let k = (c.link.clone(), c.scenario.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut files = Vec::new();
    for (link, scenario) in keys {
        let curves: Vec<_> = r
            .curves
            .iter()
            .filter(|c| c.link == link && c.scenario == scenario && !c.points.is_empty())
            .collect();
        let max_ms = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1.as_secs_f64() * 1e3))
            .fold(0.01f64, f64::max);
        let min_ms = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1.as_secs_f64() * 1e3))
            .fold(f64::MAX, f64::min)
            .max(0.001);
        let cap = curves
            .iter()
            .flat_map(|c| {
                c.points
                    .iter()
                    .filter(|p| p.0 < 1.0)
                    .map(|p| nines(p.0, 10.0))
            })
            .fold(1.0f64, f64::max)
            + 0.5;
        let file = dir.join(format!("latency-{}-{}.svg", slug(&link), slug(&scenario)));
        {
            let root = SVGBackend::new(&file, (960, 560)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{link}: {scenario}"), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(65)
                .build_cartesian_2d(0f64..cap, (min_ms * 0.8..max_ms * 1.25).log_scale())
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("percentile (0 = p0, 1 = p90, 2 = p99, 3 = p99.9; rightmost = max)")
                .y_desc("latency (ms, log)")
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() > 0.01 {
                        return String::new();
                    }
                    let p = 100.0 * (1.0 - 10f64.powf(-x.round()));
                    format!("p{p:.4}")
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                        .to_string()
                })
                .draw()
                .map_err(err)?;
            for c in &curves {
                let col = color(c.path);
                let pts: Vec<(f64, f64)> = c
                    .points
                    .iter()
                    .map(|(q, d)| (nines(*q, cap), d.as_secs_f64() * 1e3))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts, col.stroke_width(2)))
                    .map_err(err)?
                    .label(c.path.label())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        files.push(file);
    }
    Ok(files)
}

/// Bulk throughput per link: bars for 1 and 8 flows per path.
pub fn throughput_charts(r: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut links: Vec<String> = Vec::new();
    for t in &r.tables {
        if t.scenario.starts_with("Bulk TCP") && !links.contains(&t.link) {
            links.push(t.link.clone());
        }
    }
    let mut files = Vec::new();
    for link in links {
        let scenarios = [bulk::scenario(1), bulk::scenario(8)];
        let paths: Vec<PathKind> = PathKind::ALL
            .into_iter()
            .filter(|&p| {
                scenarios
                    .iter()
                    .any(|s| r.get(&link, s, p, bulk::GBPS).is_some())
            })
            .collect();
        if paths.is_empty() {
            continue;
        }
        let max = paths
            .iter()
            .flat_map(|&p| {
                let link = &link;
                scenarios
                    .iter()
                    .filter_map(move |s| r.get(link, s, p, bulk::GBPS))
            })
            .fold(0.1f64, f64::max);
        let file = dir.join(format!("throughput-{}.svg", slug(&link)));
        {
            let root = SVGBackend::new(&file, (960, 520)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let n = paths.len();
            let labels: Vec<&'static str> = paths.iter().map(|p| p.key()).collect();
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("{link}: bulk TCP throughput (left bar 1 flow, right bar 8 flows)"),
                    ("sans-serif", 18),
                )
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..max * 1.15)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                        labels[i as usize].to_string()
                    } else {
                        String::new()
                    }
                })
                .y_desc("Gb/s")
                .draw()
                .map_err(err)?;
            for (i, &p) in paths.iter().enumerate() {
                let col = color(p);
                for (j, s) in scenarios.iter().enumerate() {
                    if let Some(v) = r.get(&link, s, p, bulk::GBPS) {
                        let x0 = i as f64 - 0.4 + j as f64 * 0.4;
                        let style = if j == 0 {
                            col.filled()
                        } else {
                            col.mix(0.55).filled()
                        };
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(x0, 0.0), (x0 + 0.38, v)],
                                style,
                            )))
                            .map_err(err)?;
                    }
                }
            }
            root.present().map_err(err)?;
        }
        files.push(file);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Curve;
    use std::time::Duration;

    #[test]
    fn draws_both_charts() {
        let mut r = Results::default();
        let t = r.table("loopback", &bulk::scenario(1), &bulk::metrics());
        t.set(PathKind::Direct, bulk::GBPS, 30.0);
        t.set(PathKind::FerryQuic, bulk::GBPS, 3.0);
        r.curves.push(Curve {
            link: "loopback".into(),
            scenario: "1k".into(),
            path: PathKind::FerryQuic,
            points: vec![
                (0.0, Duration::from_micros(100)),
                (0.5, Duration::from_micros(400)),
                (1.0, Duration::from_millis(3)),
            ],
        });
        let dir = tempfile::tempdir().unwrap();
        let a = latency_charts(&r, dir.path()).unwrap();
        let b = throughput_charts(&r, dir.path()).unwrap();
        assert_eq!((a.len(), b.len()), (1, 1));
        let svg = std::fs::read_to_string(&a[0]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Ferry, QUIC"));
        assert_eq!(slug("veth MTU 1500"), "veth-mtu-1500");
    }
}
