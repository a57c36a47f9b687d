//! Many peer edges (Ferry only): one server-side edge and N client-side
//! edges, each sending its first request at the same moment, so the
//! server edge does N handshakes at once (what a rollout of the callers,
//! or a restart of the callee, looks like to it). Measures the time until
//! every first request is answered, the server edge's CPU per new peer
//! connection, and the memory it holds per peer connection afterwards.
//! Before the burst, one more client edge sends N requests at once, so the
//! server edge's pool of application connections is already as large as
//! the burst needs and the figures are the peer connections' own.
//! The TLS pairs hold no connection per peer, only per application
//! connection: compare with "connections held open".

use std::time::Duration;

use anyhow::Context;

use super::{ms, record_burst, run_fresh, Env, ERRORS, SETTLE};
use crate::loadgen::open_conns::{self, Burst};
use crate::paths::PathKind;
use crate::peers::{ferry, Ctx};
use crate::procstat;
use crate::results::{Better, Metric, Results};

pub const ALL_ANSWERED: &str = "all first requests answered ms";
pub const CPU_PER_PEER: &str = "server edge CPU ms per new peer";
pub const KIB_PER_PEER: &str = "server edge KiB per peer";

pub fn scenario(n: usize) -> String {
    format!("{n} client edges, one server edge: first requests at once (Ferry only)")
}

pub fn metrics() -> [Metric; 4] {
    [
        Metric::new(ALL_ANSWERED, Better::Lower, 1, false),
        Metric::new(CPU_PER_PEER, Better::Lower, 2, false),
        Metric::new(KIB_PER_PEER, Better::Lower, 1, false),
        Metric::new(ERRORS, Better::Lower, 0, false),
    ]
}

struct Measured {
    burst: Burst,
    cpu_per_peer: Duration,
    kib_per_peer: f64,
}

fn measure(env: &Env, kind: PathKind, ctx: &Ctx, n: usize) -> anyhow::Result<Measured> {
    let transport = kind.ferry_transport().unwrap_or("h2");
    let server = ferry::start_server(ctx, transport, "http")?;
    let mut clients = Vec::with_capacity(n);
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        crate::interrupt::check()?;
        let c = ferry::start_client_numbered(ctx, &server, transport, Some(i), "")
            .with_context(|| format!("client edge {i} of {n}"))?;
        clients.push(c.proc);
        entries.push(c.http);
    }
    // Grow the server edge's application pool to the burst's size first.
    let warm_edge = ferry::start_client_numbered(ctx, &server, transport, Some(n), "")
        .context("the warm-up client edge")?;
    let warm_http = warm_edge.http;
    let warm =
        env.topo
            .client
            .run_timeout("warm-up requests", Duration::from_secs(60), async move {
                open_conns::open(warm_http, n).await
            })?;
    if let Some(e) = warm.burst.first_error {
        anyhow::bail!("warm-up request: {e}");
    }
    drop(warm.conns);
    std::thread::sleep(SETTLE);
    let rss0 = server.proc.rss_kib();
    let cpu0 = procstat::cpu_threads_ns(server.proc.pid());
    let burst = env.topo.client.run_timeout(
        "first requests",
        Duration::from_secs(60),
        open_conns::first_requests(entries),
    )?;
    let cpu = procstat::cpu_threads_ns(server.proc.pid()).saturating_sub(cpu0);
    std::thread::sleep(SETTLE);
    let rss1 = server.proc.rss_kib();
    drop(clients);
    Ok(Measured {
        burst,
        cpu_per_peer: cpu / n.max(1) as u32,
        kib_per_peer: rss1.saturating_sub(rss0) as f64 / n.max(1) as f64,
    })
}

pub fn run(env: &Env, kind: PathKind, ctx: &Ctx, results: &mut Results) {
    if !kind.is_ferry() {
        return;
    }
    let n = env.plan.peer_edges;
    let name = scenario(n);
    let measure = || measure(env, kind, ctx, n);
    run_fresh(
        env,
        kind,
        ctx,
        results,
        (&name, &metrics()),
        measure,
        |t, m| {
            t.set(kind, CPU_PER_PEER, ms(m.cpu_per_peer));
            t.set(kind, KIB_PER_PEER, m.kib_per_peer);
            record_burst(t, kind, ALL_ANSWERED, m.burst);
        },
    );
}
