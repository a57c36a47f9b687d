//! The Markdown report: the run's context, then one table per link and
//! scenario with every figure, its ratio to the direct path and to the
//! best mutual-TLS pair, and the targets with met/missed.

use std::fmt::Write;

use crate::paths::PathKind;
use crate::results::{Results, Table};

use super::targets;

/// `1.23×`, or `—` when there is nothing to divide.
pub fn ratio(value: Option<f64>, reference: Option<f64>) -> String {
    match (value, reference) {
        (Some(v), Some(r)) if r != 0.0 && v.is_finite() && r.is_finite() => {
            format!("{:.2}×", v / r)
        }
        _ => "—".into(),
    }
}

pub fn number(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "—".into(),
    }
}

/// Text safe inside a table cell (no pipes, no line breaks).
pub fn cell_text(s: &str) -> String {
    s.replace('|', "/").replace('\n', " ⏎ ")
}

/// One scenario's table.
pub fn table(t: &Table) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "#### {} — {}\n", t.link, t.scenario);
    let mut head = String::from("| path |");
    let mut rule = String::from("|---|");
    for m in &t.metrics {
        head += &format!(" {} |", m.name);
        rule += "---:|";
        if m.ratios {
            head += " ÷ direct | ÷ best pair |";
            rule += "---:|---:|";
        }
    }
    head += " notes |";
    rule += "---|";
    let _ = writeln!(s, "{head}\n{rule}");
    for (&path, row) in &t.rows {
        let mut line = format!("| {} |", path.label());
        for (i, m) in t.metrics.iter().enumerate() {
            let v = row.values.get(i).copied().flatten();
            line += &format!(" {} |", number(v, m.decimals));
            if m.ratios {
                let direct = t.get(PathKind::Direct, m.name);
                let best = t.best_pair(m.name).map(|b| b.1);
                line += &format!(" {} | {} |", ratio(v, direct), ratio(v, best));
            }
        }
        line += &format!(" {} |", cell_text(row.note.as_deref().unwrap_or_default()));
        let _ = writeln!(s, "{line}");
    }
    let best: Vec<String> = t
        .metrics
        .iter()
        .filter(|m| m.ratios)
        .filter_map(|m| {
            t.best_pair(m.name)
                .map(|(p, _)| format!("{}: {}", m.name, p.label()))
        })
        .collect();
    if !best.is_empty() {
        let _ = writeln!(
            s,
            "\nBest mutual-TLS pair per column — {}.",
            best.join("; ")
        );
    }
    for n in &t.notes {
        let _ = writeln!(s, "\n{n}");
    }
    s
}

/// The whole report.
pub fn render(r: &Results) -> String {
    let mut s = String::from("### Results\n\n");
    for c in &r.context {
        let _ = writeln!(s, "- {c}");
    }
    if !r.problems.is_empty() {
        let _ = writeln!(s, "\n**Problems in this run:**\n");
        for p in &r.problems {
            let _ = writeln!(s, "- {p}");
        }
    }
    let _ = writeln!(
        s,
        "\nRatios are this row's figure divided by the direct path's and by the best mutual-TLS pair's \
         figure in the same column (best = highest throughput or rate, lowest latency, CPU or memory).\n"
    );
    let checks = targets::evaluate(r);
    if !checks.is_empty() {
        let _ = writeln!(s, "#### Targets (ratios from this run)\n");
        let _ = writeln!(s, "| link | target | measured | |\n|---|---|---|---|");
        for c in &checks {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                c.link,
                c.target,
                c.measured,
                if c.met { "met" } else { "**missed**" }
            );
        }
        s.push('\n');
    }
    for t in &r.tables {
        s += &table(t);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Better, Metric};

    #[test]
    fn renders_ratios_and_notes() {
        let mut r = Results::default();
        let t = r.table(
            "loopback",
            "Bulk",
            &[Metric::new("Gb/s", Better::Higher, 2, true)],
        );
        t.set(PathKind::Direct, "Gb/s", 10.0);
        t.set(PathKind::Stunnel, "Gb/s", 2.0);
        t.set(PathKind::Haproxy, "Gb/s", 4.0);
        t.set(PathKind::FerryQuic, "Gb/s", 5.0);
        t.note(
            PathKind::Nginx,
            "not installed: `apt-get install -y nginx-light`",
        );
        let md = table(&r.tables[0]);
        assert!(
            md.contains("| Ferry, QUIC | 5.00 | 0.50× | 1.25× |"),
            "{md}"
        );
        assert!(
            md.contains("| HAProxy pair (mTLS) | 4.00 | 0.40× | 1.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| nginx stream pair (mTLS) | — | — | — | not installed"),
            "{md}"
        );
        assert!(md.contains("Best mutual-TLS pair per column — Gb/s: HAProxy pair (mTLS)."));
        assert_eq!(ratio(Some(1.0), None), "—");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "—");
        assert_eq!(number(Some(1.23456), 3), "1.235");
    }
}
