//! The results table (and its JSON form): one row per scenario, with the
//! path, the transport the proxies report, the result, the request count,
//! p50 and p99 latency and the payload bytes moved.

use std::time::Duration;

use crate::scenario::Outcome;

const HEADERS: [&str; 8] = [
    "scenario",
    "path",
    "transport",
    "result",
    "requests",
    "p50",
    "p99",
    "bytes",
];

/// The table, with a line under the header and the failures listed after.
pub fn table(outcomes: &[Outcome]) -> String {
    let rows: Vec<[String; 8]> = outcomes.iter().map(row).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Numbers right-aligned, text left-aligned.
            if i >= 4 {
                out += &" ".repeat(pad);
                out += cell;
            } else {
                out += cell;
                out += &" ".repeat(pad);
            }
            out += "  ";
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADERS.map(String::from));
    out += &line(&widths.map(|w| "-".repeat(w)));
    for r in &rows {
        out += &line(r);
    }
    for o in outcomes.iter().filter(|o| !o.passed) {
        out += &format!(
            "\n{} failed: {}",
            o.name,
            o.error.as_deref().unwrap_or("unknown error")
        );
    }
    if outcomes.iter().any(|o| !o.passed) {
        out += "\n";
    }
    out
}

fn row(o: &Outcome) -> [String; 8] {
    [
        o.name.clone(),
        o.path.clone(),
        o.transport.clone(),
        if o.passed {
            "pass".into()
        } else {
            "FAIL".into()
        },
        if o.succeeded == o.requests {
            o.requests.to_string()
        } else {
            format!("{}/{}", o.succeeded, o.requests)
        },
        latency(o.p50),
        latency(o.p99),
        bytes(o.bytes),
    ]
}

/// The outcomes as one JSON value (latencies in microseconds).
pub fn json(outcomes: &[Outcome]) -> serde_json::Value {
    let rows: Vec<_> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "scenario": o.name,
                "path": o.path,
                "transport": o.transport,
                "passed": o.passed,
                "error": o.error,
                "requests": o.requests,
                "succeeded": o.succeeded,
                "p50_us": o.p50.map(|d| d.as_micros() as u64),
                "p99_us": o.p99.map(|d| d.as_micros() as u64),
                "bytes": o.bytes,
            })
        })
        .collect();
    serde_json::json!({
        "passed": outcomes.iter().all(|o| o.passed),
        "scenarios": rows,
    })
}

fn latency(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_millis(10) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
    }
}

fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{:.1} MiB", f / (KIB * KIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, passed: bool) -> Outcome {
        Outcome {
            name: name.into(),
            path: "east/web → west/gateway → west/api".into(),
            transport: "quic → h2".into(),
            passed,
            error: (!passed).then(|| "HTTP 502".into()),
            requests: 200,
            succeeded: if passed { 200 } else { 150 },
            p50: Some(Duration::from_micros(840)),
            p99: Some(Duration::from_micros(12_300)),
            bytes: 10 << 20,
        }
    }

    #[test]
    fn the_table_aligns_columns_and_lists_failures() {
        let t = table(&[
            outcome("http east → west", true),
            outcome("tcp west → east", false),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("scenario"), "{t}");
        assert!(
            lines[2].contains("pass") && lines[2].contains("0.84 ms"),
            "{t}"
        );
        assert!(
            lines[2].contains("12.3 ms") && lines[2].contains("10.0 MiB"),
            "{t}"
        );
        assert!(
            lines[3].contains("FAIL") && lines[3].contains("150/200"),
            "{t}"
        );
        assert!(t.contains("tcp west → east failed: HTTP 502"), "{t}");
        let col = |l: &str| l.find("quic").unwrap();
        assert_eq!(col(lines[2]), col(lines[3]), "aligned:\n{t}");
    }

    #[test]
    fn json_says_whether_everything_passed() {
        let j = json(&[outcome("a", true), outcome("b", false)]);
        assert_eq!(j["passed"], false);
        assert_eq!(j["scenarios"][0]["p50_us"], 840);
    }
}
