//! CPU the proxies burn while idle: started, one request served (so Ferry
//! holds a pooled tunnel connection, the pairs a finished one), then left
//! alone. Read to the nanosecond from each proxy process tree's threads
//! (`/proc/<pid>/task/*/schedstat`) over the plan's idle window, in
//! milliseconds of CPU per second: what a fleet of idle sidecars costs.

use std::time::{Duration, Instant};

use super::Env;
use crate::paths::PathKind;
use crate::peers::RunningPath;
use crate::results::{Better, Metric, Results};

pub const SCENARIO: &str = "Idle CPU per proxy process tree (ms of CPU per second)";
pub const CLIENT: &str = "client side ms/s";
pub const SERVER: &str = "server side ms/s";

pub fn metrics() -> [Metric; 2] {
    [
        Metric::new(CLIENT, Better::Lower, 3, true),
        Metric::new(SERVER, Better::Lower, 3, true),
    ]
}

/// Watches the idle path for `window` and records both sides' CPU rate.
pub fn run(env: &Env, path: &RunningPath, window: Duration, results: &mut Results) {
    let before = (path.client_cpu_ns(), path.server_cpu_ns());
    let t0 = Instant::now();
    std::thread::sleep(window);
    let secs = t0.elapsed().as_secs_f64();
    let after = (path.client_cpu_ns(), path.server_cpu_ns());
    let rate = |a: Option<Duration>, b: Option<Duration>| {
        Some(b?.saturating_sub(a?).as_secs_f64() * 1e3 / secs)
    };
    record(
        env,
        results,
        path.kind,
        rate(before.0, after.0),
        rate(before.1, after.1),
    );
}

fn record(
    env: &Env,
    results: &mut Results,
    kind: PathKind,
    client: Option<f64>,
    server: Option<f64>,
) {
    let t = results.table(&env.topo.name, SCENARIO, &metrics());
    for (metric, v) in [(CLIENT, client), (SERVER, server)] {
        if let Some(v) = v {
            t.set(kind, metric, v);
        }
    }
}
