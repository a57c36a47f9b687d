//! What a run measured: one table per (link, scenario) with a row per path
//! and a column per metric, latency curves for the charts, and the run's
//! context (machine, load, versions). Ratios to the direct path and to the
//! best mutual-TLS pair are computed from these tables by the report.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::paths::PathKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub better: Better,
    pub decimals: usize,
    /// Show "÷ direct" and "÷ best pair" columns for this metric.
    pub ratios: bool,
}

impl Metric {
    pub const fn new(name: &'static str, better: Better, decimals: usize, ratios: bool) -> Self {
        Metric {
            name,
            better,
            decimals,
            ratios,
        }
    }
}

/// One path's figures in a table, or why it has none.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub values: Vec<Option<f64>>,
    pub note: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub link: String,
    pub scenario: String,
    pub metrics: Vec<Metric>,
    pub rows: BTreeMap<PathKind, Row>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn set(&mut self, path: PathKind, metric: &str, value: f64) {
        let i = self
            .metrics
            .iter()
            .position(|m| m.name == metric)
            .unwrap_or_else(|| panic!("no metric {metric:?} in {}", self.scenario));
        let n = self.metrics.len();
        let row = self.rows.entry(path).or_default();
        row.values.resize(n, None);
        row.values[i] = Some(value);
    }

    /// Records why `path` has no (or incomplete) figures.
    pub fn note(&mut self, path: PathKind, note: impl Into<String>) {
        let n = self.metrics.len();
        let row = self.rows.entry(path).or_default();
        row.values.resize(n, None);
        let note = note.into();
        row.note = Some(match row.note.take() {
            Some(old) => format!("{old}; {note}"),
            None => note,
        });
    }

    pub fn get(&self, path: PathKind, metric: &str) -> Option<f64> {
        let i = self.metrics.iter().position(|m| m.name == metric)?;
        self.rows.get(&path)?.values.get(i).copied().flatten()
    }

    /// The best mutual-TLS pair for `metric` and its value.
    pub fn best_pair(&self, metric: &str) -> Option<(PathKind, f64)> {
        let m = self.metrics.iter().find(|m| m.name == metric)?;
        self.rows
            .keys()
            .filter(|p| p.is_pair())
            .filter_map(|&p| Some((p, self.get(p, metric)?)))
            .reduce(|a, b| match m.better {
                Better::Higher if b.1 > a.1 => b,
                Better::Lower if b.1 < a.1 => b,
                _ => a,
            })
    }
}

/// A latency distribution for the charts.
#[derive(Clone, Debug)]
pub struct Curve {
    pub link: String,
    pub scenario: String,
    pub path: PathKind,
    /// (quantile, latency)
    pub points: Vec<(f64, Duration)>,
}

#[derive(Default)]
pub struct Results {
    pub tables: Vec<Table>,
    pub curves: Vec<Curve>,
    /// Lines describing the run (machine, load, versions, mode).
    pub context: Vec<String>,
    /// Problems that are not a single cell (a link that could not be set up).
    pub problems: Vec<String>,
}

impl Results {
    /// The table for (link, scenario), created with `metrics` if new.
    pub fn table(&mut self, link: &str, scenario: &str, metrics: &[Metric]) -> &mut Table {
        let pos = self
            .tables
            .iter()
            .position(|t| t.link == link && t.scenario == scenario);
        let i = match pos {
            Some(i) => i,
            None => {
                self.tables.push(Table {
                    link: link.to_string(),
                    scenario: scenario.to_string(),
                    metrics: metrics.to_vec(),
                    rows: BTreeMap::new(),
                    notes: Vec::new(),
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[i]
    }

    pub fn find(&self, link: &str, scenario: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.link == link && t.scenario == scenario)
    }

    pub fn get(&self, link: &str, scenario: &str, path: PathKind, metric: &str) -> Option<f64> {
        self.find(link, scenario)?.get(path, metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_pair_follows_direction() {
        let mut r = Results::default();
        let t = r.table(
            "lo",
            "s",
            &[
                Metric::new("Gb/s", Better::Higher, 2, true),
                Metric::new("p50", Better::Lower, 3, true),
            ],
        );
        t.set(PathKind::Stunnel, "Gb/s", 1.0);
        t.set(PathKind::Haproxy, "Gb/s", 3.0);
        t.set(PathKind::Nginx, "Gb/s", 2.0);
        t.set(PathKind::Stunnel, "p50", 0.5);
        t.set(PathKind::Haproxy, "p50", 0.7);
        t.set(PathKind::FerryQuic, "Gb/s", 9.0);
        t.note(PathKind::Nginx, "crashed");
        assert_eq!(t.best_pair("Gb/s"), Some((PathKind::Haproxy, 3.0)));
        assert_eq!(t.best_pair("p50"), Some((PathKind::Stunnel, 0.5)));
        assert_eq!(r.get("lo", "s", PathKind::FerryQuic, "Gb/s"), Some(9.0));
        assert_eq!(r.get("lo", "s", PathKind::FerryQuic, "p50"), None);
    }
}
