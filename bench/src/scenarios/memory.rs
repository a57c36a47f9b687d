//! Resident memory (VmRSS, MiB) of the proxies: idle (started, one request
//! served, settled) and under load (sampled near the end of the
//! maximum-rate run). For nginx the master and its workers are summed.

use super::Env;
use crate::paths::PathKind;
use crate::results::{Better, Metric, Results};

pub const SCENARIO: &str = "Resident memory per proxy process tree (MiB)";
pub const CLIENT_IDLE: &str = "client side, idle";
pub const CLIENT_LOAD: &str = "client side, under load";
pub const SERVER_IDLE: &str = "server side, idle";
pub const SERVER_LOAD: &str = "server side, under load";

pub fn metrics() -> [Metric; 4] {
    [
        Metric::new(CLIENT_IDLE, Better::Lower, 1, true),
        Metric::new(CLIENT_LOAD, Better::Lower, 1, true),
        Metric::new(SERVER_IDLE, Better::Lower, 1, false),
        Metric::new(SERVER_LOAD, Better::Lower, 1, false),
    ]
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

pub fn record(
    env: &Env,
    results: &mut Results,
    path: PathKind,
    idle: (Option<u64>, Option<u64>),
    load: (Option<u64>, Option<u64>),
) {
    let t = results.table(&env.topo.name, SCENARIO, &metrics());
    for (metric, v) in [
        (CLIENT_IDLE, mib(idle.0)),
        (CLIENT_LOAD, mib(load.0)),
        (SERVER_IDLE, mib(idle.1)),
        (SERVER_LOAD, mib(load.1)),
    ] {
        if let Some(v) = v {
            t.set(path, metric, v);
        }
    }
}
