//! Small HTTP/1.1 requests at fixed rates (open loop, coordinated-omission
//! corrected): p50, p99, p99.9 and errors; the distribution goes to the
//! charts.

use super::{ms, Env};
use crate::loadgen::fixed_rate;
use crate::peers::RunningPath;
use crate::results::{Better, Curve, Metric, Results};

pub const P50: &str = "p50 ms";
pub const P99: &str = "p99 ms";
pub const P999: &str = "p99.9 ms";
pub const ERRORS: &str = "errors";

pub fn scenario(rate: u64) -> String {
    format!("Small HTTP requests at {} req/s (latency)", thousands(rate))
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn metrics() -> [Metric; 4] {
    [
        Metric::new(P50, Better::Lower, 3, true),
        Metric::new(P99, Better::Lower, 3, true),
        Metric::new(P999, Better::Lower, 3, false),
        Metric::new(ERRORS, Better::Lower, 0, false),
    ]
}

/// Connections used at `rate`: enough that one slow answer does not stall
/// the schedule (8 at 1,000/s, 32 at 10,000/s).
pub fn conns(rate: u64) -> usize {
    if rate <= 2_000 {
        8
    } else {
        32
    }
}

pub fn run(env: &Env, path: &mut RunningPath, rate: u64, results: &mut Results) {
    let name = scenario(rate);
    env.progress.step(&format!(
        "{} · {} · {name}",
        env.topo.name,
        path.kind.label()
    ));
    let Some(target) = path.http else { return };
    let dur = env.plan.rate_secs;
    let r = env.topo.client.run_timeout(
        "fixed-rate load",
        dur + std::time::Duration::from_secs(60),
        async move { fixed_rate::run(target, rate, dur, conns(rate)).await },
    );
    let t = results.table(&env.topo.name, &name, &metrics());
    match r {
        Ok(f) => {
            if let (Some(p50), Some(p99), Some(p999)) = (
                f.latency.quantile(0.5),
                f.latency.quantile(0.99),
                f.latency.quantile(0.999),
            ) {
                t.set(path.kind, P50, ms(p50));
                t.set(path.kind, P99, ms(p99));
                t.set(path.kind, P999, ms(p999));
            }
            t.set(path.kind, ERRORS, f.errors as f64);
            if let Some(e) = f.first_error {
                t.note(path.kind, format!("first error: {e}"));
            }
            results.curves.push(Curve {
                link: env.topo.name.clone(),
                scenario: name,
                path: path.kind,
                points: f.latency.percentile_curve(),
            });
        }
        Err(e) => t.note(path.kind, format!("failed: {e:#}")),
    }
}
