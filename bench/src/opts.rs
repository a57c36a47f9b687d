//! Command-line options and the measurement plan (how long each scenario
//! runs) that `--quick` shortens.

use std::path::PathBuf;
use std::time::Duration;

/// `cargo run --release -p ferry-bench --bin bench -- [--quick] [--out DIR]`
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "bench",
    about = "Measures Ferry next to direct connections and mutual-TLS proxy pairs"
)]
pub struct Opts {
    /// Short measurements (finishes within about two minutes).
    #[arg(long)]
    pub quick: bool,
    /// Where results.md and the SVG charts go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The `ferry` binary (default: target/release/ferry next to this binary,
    /// built first with `cargo build --release -p ferry` when run by cargo).
    #[arg(long)]
    pub ferry: Option<PathBuf>,
    /// Do not run `cargo build --release -p ferry` first.
    #[arg(long)]
    pub no_build: bool,
    /// Links to measure (comma separated): loopback, veth1500, veth9000, netem.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "loopback,veth1500,veth9000,netem"
    )]
    pub links: Vec<String>,
    /// Paths to measure (comma separated): direct, raw-quic, raw-tls,
    /// stunnel, haproxy, nginx, ferry-quic, ferry-h2, and ferry-quic-tcp,
    /// ferry-h2-tcp (the HTTP service declared opaque TCP: HTTP request
    /// scenarios only).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,raw-quic,raw-tls,stunnel,haproxy,nginx,ferry-quic,ferry-h2,ferry-quic-tcp,ferry-h2-tcp"
    )]
    pub paths: Vec<String>,
    /// Loss percentages under loss/delay (comma separated; default: the
    /// mode's, 0,1,2,3 full or 0,2 quick).
    #[arg(long, value_delimiter = ',')]
    pub netem_loss: Option<Vec<f64>>,
    /// Round-trip times in ms under loss/delay (comma separated; default:
    /// the mode's, 1,20 full or 20 quick).
    #[arg(long, value_delimiter = ',')]
    pub netem_rtt: Option<Vec<u64>>,
    /// Seconds per loss/delay condition (default: the mode's, 10 or 1.2).
    #[arg(long)]
    pub netem_secs: Option<f64>,
    /// Concurrent request streams under loss/delay (default 64). One
    /// stream leaves gaps in the traffic, so a lost last packet of an
    /// answer waits for the sender's probe timeout.
    #[arg(long)]
    pub netem_streams: Option<usize>,
    /// Scenarios to run on the loopback and veth links (comma separated):
    /// bulk, idle-cpu, latency, max-rate, new-conn, handshake, open-conns,
    /// peer-edges (default: all that the
    /// mode runs on the link). Focused runs, e.g. `--scenarios max-rate`.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Option<Vec<String>>,
}

impl Opts {
    /// Whether a scenario (by its `--scenarios` key) was asked for.
    pub fn wants(&self, scenario: &str) -> bool {
        match &self.scenarios {
            None => true,
            Some(v) => v.iter().any(|s| s == scenario),
        }
    }
}

/// Which scenarios run on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every scenario.
    All,
    /// Bulk transfer and fixed-rate latency.
    BulkLatency,
    /// Bulk transfer only.
    Bulk,
}

/// How long and how much of each scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub bulk_secs: Duration,
    pub bulk_warmup: Duration,
    pub rate_secs: Duration,
    /// Fixed request rates (requests/s) for the latency rows.
    pub rates: Vec<u64>,
    pub max_rate_secs: Duration,
    pub max_rate_conns: usize,
    pub new_conns: usize,
    /// Application connections opened at once and held.
    pub open_conns: usize,
    /// Client edges started against one server edge (Ferry only).
    pub peer_edges: usize,
    pub handshake_repeats: usize,
    /// How long idle CPU is watched.
    pub idle_cpu_window: Duration,
    /// Per loss/RTT condition.
    pub netem_secs: Duration,
    pub netem_streams: usize,
    /// Sequential new application connections at 20 ms RTT (0: none).
    pub netem_new_conns: usize,
    /// Loss percentages and one-way delays (half the RTT) of the conditions.
    pub netem_loss: Vec<f64>,
    pub netem_rtt_ms: Vec<u64>,
}

impl Plan {
    /// The mode's plan with the loss/delay overrides of `opts`.
    pub fn from_opts(opts: &Opts) -> Self {
        let mut plan = Plan::new(opts.quick);
        if let Some(l) = &opts.netem_loss {
            plan.netem_loss = l.clone();
        }
        if let Some(r) = &opts.netem_rtt {
            plan.netem_rtt_ms = r.clone();
        }
        if let Some(s) = opts.netem_secs {
            plan.netem_secs = Duration::from_secs_f64(s);
        }
        if let Some(n) = opts.netem_streams {
            plan.netem_streams = n;
        }
        plan
    }

    pub fn new(quick: bool) -> Self {
        if quick {
            Plan {
                quick,
                bulk_secs: Duration::from_millis(500),
                bulk_warmup: Duration::from_millis(200),
                rate_secs: Duration::from_millis(1000),
                rates: vec![1_000],
                max_rate_secs: Duration::from_millis(700),
                max_rate_conns: 32,
                new_conns: 100,
                open_conns: 200,
                peer_edges: 10,
                handshake_repeats: 1,
                idle_cpu_window: Duration::from_millis(300),
                netem_secs: Duration::from_millis(1200),
                netem_streams: 64,
                netem_new_conns: 0,
                netem_loss: vec![0.0, 2.0],
                netem_rtt_ms: vec![20],
            }
        } else {
            Plan {
                quick,
                bulk_secs: Duration::from_secs(5),
                bulk_warmup: Duration::from_millis(1000),
                rate_secs: Duration::from_secs(10),
                rates: vec![1_000, 10_000],
                max_rate_secs: Duration::from_secs(5),
                max_rate_conns: 32,
                new_conns: 1_000,
                open_conns: 1_000,
                peer_edges: 50,
                handshake_repeats: 5,
                idle_cpu_window: Duration::from_secs(5),
                netem_secs: Duration::from_secs(10),
                netem_streams: 64,
                netem_new_conns: 100,
                netem_loss: vec![0.0, 1.0, 2.0, 3.0],
                netem_rtt_ms: vec![1, 20],
            }
        }
    }

    /// The scenarios for a link: everything in a full run; `--quick` keeps
    /// all of them on loopback, bulk and latency on veth MTU 1500, bulk on
    /// veth MTU 9000.
    pub fn scope(&self, mtu: u32) -> Scope {
        match (self.quick, mtu) {
            (false, _) | (true, 65_536) => Scope::All,
            (true, 1500) => Scope::BulkLatency,
            (true, _) => Scope::Bulk,
        }
    }
}
