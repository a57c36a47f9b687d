//! The cost of a new application connection: N fresh TCP connections one
//! after the other, each carrying one small request. TLS pairs open a TLS
//! connection per application connection; Ferry reuses its pooled tunnel.

use super::{ms, Env};
use crate::loadgen::new_conn;
use crate::peers::RunningPath;
use crate::results::{Better, Metric, Results};

pub const P50: &str = "p50 ms";
pub const P99: &str = "p99 ms";
pub const ERRORS: &str = "errors";

pub fn scenario(n: usize) -> String {
    format!("New application connection ({n} sequential, one request each)")
}

pub fn metrics() -> [Metric; 3] {
    [
        Metric::new(P50, Better::Lower, 3, true),
        Metric::new(P99, Better::Lower, 3, true),
        Metric::new(ERRORS, Better::Lower, 0, false),
    ]
}

pub fn run(env: &Env, path: &mut RunningPath, results: &mut Results) {
    run_n(env, path, env.plan.new_conns, results);
}

/// [`run`] with `n` connections (the loss/delay link takes fewer: each
/// costs round trips of 20 ms).
pub fn run_n(env: &Env, path: &mut RunningPath, n: usize, results: &mut Results) {
    let name = scenario(n);
    env.progress.step(&format!(
        "{} · {} · {name}",
        env.topo.name,
        path.kind.label()
    ));
    let Some(target) = path.http else { return };
    let r = env.topo.client.run_timeout(
        "new connections",
        std::time::Duration::from_secs(120),
        async move { new_conn::run(target, n).await },
    );
    let t = results.table(&env.topo.name, &name, &metrics());
    match r {
        Ok(c) => {
            if let (Some(p50), Some(p99)) = (c.latency.quantile(0.5), c.latency.quantile(0.99)) {
                t.set(path.kind, P50, ms(p50));
                t.set(path.kind, P99, ms(p99));
            }
            t.set(path.kind, ERRORS, c.errors as f64);
            if let Some(e) = c.first_error {
                t.note(path.kind, format!("first error: {e}"));
            }
        }
        Err(e) => t.note(path.kind, format!("failed: {e:#}")),
    }
}
