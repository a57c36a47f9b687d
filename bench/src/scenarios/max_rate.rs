//! Maximum rate of small HTTP requests (closed loop, 32 connections);
//! samples the proxies' memory near the end (memory under load).

use super::Env;
use crate::loadgen::max_rate;
use crate::peers::RunningPath;
use crate::results::{Better, Metric, Results};

pub const RPS: &str = "req/s";
pub const ERRORS: &str = "errors";

pub fn scenario(conns: usize) -> String {
    format!("Small HTTP requests, maximum rate ({conns} connections)")
}

pub fn metrics() -> [Metric; 2] {
    [
        Metric::new(RPS, Better::Higher, 0, true),
        Metric::new(ERRORS, Better::Lower, 0, false),
    ]
}

/// Returns the client- and server-side RSS (KiB) sampled under load.
pub fn run(env: &Env, path: &mut RunningPath, results: &mut Results) -> (Option<u64>, Option<u64>) {
    let conns = env.plan.max_rate_conns;
    let name = scenario(conns);
    env.progress.step(&format!(
        "{} · {} · {name}",
        env.topo.name,
        path.kind.label()
    ));
    let Some(target) = path.http else {
        return (None, None);
    };
    let dur = env.plan.max_rate_secs;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let kind = path.kind;
    let path: &RunningPath = path;
    let r = std::thread::scope(|s| {
        // Sample memory when the generator says it is near the end.
        let sampler = s.spawn(move || {
            rx.recv_timeout(dur * 3)
                .ok()
                .map(|_| (path.client_rss_kib(), path.server_rss_kib()))
        });
        let r = env.topo.client.run_timeout(
            "maximum-rate load",
            dur + std::time::Duration::from_secs(60),
            async move {
                max_rate::run(target, dur, conns, move || {
                    let _ = tx.send(());
                })
                .await
            },
        );
        (r, sampler.join().ok().flatten())
    });
    let t = results.table(&env.topo.name, &name, &metrics());
    match r.0 {
        Ok(m) => {
            t.set(kind, RPS, m.per_sec);
            t.set(kind, ERRORS, m.errors as f64);
        }
        Err(e) => t.note(kind, format!("failed: {e:#}")),
    }
    r.1.unwrap_or((None, None))
}
