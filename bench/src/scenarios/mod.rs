//! The scenarios, each filling its table for one path on one link: bulk
//! throughput and CPU per GiB, fixed-rate latency, maximum request rate,
//! new-connection cost, memory, cold and resumed handshakes, connections
//! held open, and loss/RTT conditions. A failure becomes a note in the path's row, not the end of
//! the run.

pub mod bulk;
pub mod handshake;
pub mod latency;
pub mod lossy;
pub mod max_rate;
pub mod memory;
pub mod new_conn;
pub mod open_conns;

use crate::app::App;
use crate::opts::Plan;
use crate::progress::Progress;
use crate::topology::Topology;

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
