//! The scenarios, each filling its table for one path on one link: bulk
//! throughput and CPU per GiB, fixed-rate latency, maximum request rate,
//! new-connection cost, memory, idle CPU, cold and resumed handshakes, connections
//! held open, many peer edges (Ferry only), and loss/RTT conditions. A
//! failure becomes a note in the path's row, not the end of the run.

pub mod bulk;
pub mod handshake;
pub mod idle_cpu;
pub mod latency;
pub mod lossy;
pub mod max_rate;
pub mod memory;
pub mod new_conn;
pub mod open_conns;
pub mod peer_edges;

use crate::app::App;
use crate::loadgen::open_conns::Burst;
use crate::opts::Plan;
use crate::paths::PathKind;
use crate::peers::Ctx;
use crate::progress::Progress;
use crate::results::{Metric, Results, Table};
use crate::topology::Topology;

/// How long memory gets to settle before it is read.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The `errors` column of the burst scenarios.
pub const ERRORS: &str = "errors";

/// Runs a burst scenario that starts its own path: announces it, runs
/// `measure` in the scenario's own work directory, and fills the path's
/// row of `table` (name, columns) with `record`, or notes the failure.
pub fn run_fresh<M>(
    env: &Env,
    kind: PathKind,
    ctx: &Ctx,
    results: &mut Results,
    (name, metrics): (&str, &[Metric]),
    measure: impl FnOnce() -> anyhow::Result<M>,
    record: impl FnOnce(&mut Table, M),
) {
    env.progress
        .step(&format!("{} · {} · {name}", env.topo.name, kind.label()));
    let r = std::fs::create_dir_all(&ctx.dir)
        .map_err(|e| anyhow::anyhow!("create {}: {e}", ctx.dir.display()))
        .and_then(|()| measure());
    let t = results.table(&env.topo.name, name, metrics);
    match r {
        Ok(m) => record(t, m),
        Err(e) => t.note(kind, format!("failed: {e:#}")),
    }
}

/// Records a burst: its duration under `answered`, its errors, the first
/// error as a note.
pub fn record_burst(t: &mut Table, kind: PathKind, answered: &str, b: Burst) {
    t.set(kind, answered, ms(b.all_answered));
    t.set(kind, ERRORS, b.errors as f64);
    if let Some(e) = b.first_error {
        t.note(kind, format!("first error: {e}"));
    }
}

/// What every scenario gets.
pub struct Env<'a> {
    pub topo: &'a Topology,
    pub app: &'a App,
    pub plan: &'a Plan,
    pub progress: &'a Progress,
}

/// Milliseconds from a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
