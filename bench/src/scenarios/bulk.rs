//! Bulk TCP through a path with 1 and 8 flows: throughput (Gb/s of
//! payload) and CPU-seconds per GiB of the proxies on both sides (or of
//! both raw-transport endpoints).

use super::Env;
use crate::loadgen::bulk;
use crate::paths::PathKind;
use crate::peers::RunningPath;
use crate::results::{Better, Metric, Results};

pub const GBPS: &str = "Gb/s";
pub const CPU: &str = "CPU s/GiB (both proxies)";

pub fn scenario(flows: usize) -> String {
    if flows == 1 {
        "Bulk TCP, 1 flow".into()
    } else {
        format!("Bulk TCP, {flows} flows")
    }
}

pub fn metrics() -> [Metric; 2] {
    [
        Metric::new(GBPS, Better::Higher, 2, true),
        Metric::new(CPU, Better::Lower, 2, true),
    ]
}

pub fn run(env: &Env, path: &mut RunningPath, flows: usize, results: &mut Results) {
    let name = scenario(flows);
    env.progress.step(&format!(
        "{} · {} · {name}",
        env.topo.name,
        path.kind.label()
    ));
    let r = (|| {
        let f = path.open_flows(env.topo, flows)?;
        let rt = path.flow_runtime(env.topo);
        let count = || path.received(env.app);
        let cpu = || path.cpu();
        bulk::run(
            &rt,
            f,
            env.plan.bulk_warmup,
            env.plan.bulk_secs,
            &count,
            &cpu,
        )
    })();
    let t = results.table(&env.topo.name, &name, &metrics());
    match r {
        Ok(b) => {
            t.set(path.kind, GBPS, b.gbps);
            if let Some(c) = b.cpu_s_per_gib {
                t.set(path.kind, CPU, c);
            }
        }
        Err(e) => t.note(path.kind, format!("failed: {e:#}")),
    }
    if path.kind == PathKind::Direct {
        t.note(path.kind, "no proxy: kernel only");
    }
}
