//! Cold and resumed proxy-to-proxy handshakes, seen by the application as
//! the time of its first request (connect → full response):
//! - cold: through a pair started a moment ago (nothing cached; includes
//!   the proxy-to-proxy handshake);
//! - resumed: the first request after the proxy-to-proxy connection was
//!   gone while both proxies kept running. For the TLS pairs that is the
//!   next application connection (one TLS connection per application
//!   connection, the client side resumes its cached session). Ferry keeps
//!   one pooled tunnel per peer: its client-side edge runs with
//!   `tunnel.pool_idle_timeout = "200ms"`, so the tunnel connection closes
//!   once the first request is done, and the next request dials a new one,
//!   resuming the TLS session (over QUIC the request's head rides in 0-RTT
//!   data, `tunnel.early_data`, on by default). The server edge's
//!   `ferry_tls_resumptions_total{result="resumed"}` tells whether it
//!   resumed, the client edge's `ferry_quic_early_data_total{result=
//!   "accepted"}` whether the request went in 0-RTT data; the row's note
//!   counts both.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ms, Env};
use crate::loadgen::new_conn;
use crate::paths::PathKind;
use crate::peers::{ferry, Ctx, RunningPath};
use crate::results::{Better, Metric, Results};
use crate::side::Side;

pub const COLD: &str = "cold first request ms";
pub const RESUMED: &str = "resumed first request ms";

pub const SCENARIO: &str = "Proxy-to-proxy handshake: first request (median of repeats)";

pub fn metrics() -> [Metric; 2] {
    [
        Metric::new(COLD, Better::Lower, 3, true),
        Metric::new(RESUMED, Better::Lower, 3, true),
    ]
}

fn first_request(env: &Env, target: std::net::SocketAddr) -> anyhow::Result<Duration> {
    env.topo
        .client
        .run_timeout("first request", Duration::from_secs(30), async move {
            new_conn::one(target).await
        })
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

/// How long the client-side edge keeps an idle tunnel connection here.
const POOL_IDLE: &str = "200ms";
/// Long enough for that connection to be closed: idle for `POOL_IDLE`, and
/// the pool looks every half of it.
const POOL_GONE: Duration = Duration::from_millis(600);

const RESUMED_SERIES: &str = "ferry_tls_resumptions_total{result=\"resumed\"}";
const EARLY_ACCEPTED_SERIES: &str = "ferry_quic_early_data_total{result=\"accepted\"}";

/// One repeat: (cold, resumed, and for Ferry whether the resumed one
/// resumed its TLS session and had its request taken in 0-RTT data).
struct Repeat {
    cold: Duration,
    resumed: Duration,
    tls_resumed: bool,
    early_accepted: bool,
}

/// A counter of the edge whose admin port is `admin`, on `side`.
fn counter(side: &Side, admin: SocketAddr, series: &'static str) -> anyhow::Result<u64> {
    side.run_timeout("admin", Duration::from_secs(15), async move {
        crate::admin::counter(admin, series).await
    })
}

/// One repeat for `kind`.
fn once(env: &Env, kind: PathKind, ctx: &Ctx) -> anyhow::Result<Repeat> {
    if kind.is_ferry() {
        let transport = kind.ferry_transport().unwrap_or("h2");
        let server = ferry::start_server(ctx, transport, "http")?;
        let extra = format!("pool_idle_timeout = \"{POOL_IDLE}\"\n");
        let client = ferry::start_client_with(ctx, &server, transport, &extra)?;
        let cold = first_request(env, client.http)?;
        std::thread::sleep(POOL_GONE);
        let (topo, server_admin, client_admin) = (&env.topo, server.admin, client.admin);
        let before = (
            counter(&topo.server, server_admin, RESUMED_SERIES)?,
            counter(&topo.client, client_admin, EARLY_ACCEPTED_SERIES)?,
        );
        let resumed = first_request(env, client.http)?;
        let after = (
            counter(&topo.server, server_admin, RESUMED_SERIES)?,
            counter(&topo.client, client_admin, EARLY_ACCEPTED_SERIES)?,
        );
        return Ok(Repeat {
            cold,
            resumed,
            tls_resumed: after.0 > before.0,
            early_accepted: after.1 > before.1,
        });
    }
    let path = RunningPath::start(kind, ctx)?;
    let http = path.http.ok_or_else(|| anyhow::anyhow!("no HTTP entry"))?;
    let cold = first_request(env, http)?;
    // Let the first TLS connection close (and its session be cached).
    std::thread::sleep(Duration::from_millis(50));
    let resumed = first_request(env, http)?;
    Ok(Repeat {
        cold,
        resumed,
        tls_resumed: false,
        early_accepted: false,
    })
}

pub fn run(env: &Env, kind: PathKind, ctx: &Ctx, results: &mut Results) {
    env.progress.step(&format!(
        "{} · {} · cold/resumed handshake",
        env.topo.name,
        kind.label()
    ));
    let mut cold = Vec::new();
    let mut resumed = Vec::new();
    let (mut tls_resumed, mut early_accepted) = (0, 0);
    let mut err = std::fs::create_dir_all(&ctx.dir)
        .err()
        .map(|e| anyhow::anyhow!("create {}: {e}", ctx.dir.display()));
    for _ in 0..env.plan.handshake_repeats {
        if err.is_some() {
            break;
        }
        match once(env, kind, ctx) {
            Ok(r) => {
                cold.push(r.cold);
                resumed.push(r.resumed);
                tls_resumed += usize::from(r.tls_resumed);
                early_accepted += usize::from(r.early_accepted);
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let t = results.table(&env.topo.name, SCENARIO, &metrics());
    let repeats = resumed.len();
    if let Some(c) = median(cold) {
        t.set(kind, COLD, ms(c));
    }
    if let Some(r) = median(resumed) {
        t.set(kind, RESUMED, ms(r));
    }
    if kind.is_ferry() && repeats > 0 {
        let early = match kind.ferry_transport() {
            Some("quic") => format!(", {early_accepted} had its request taken in 0-RTT data"),
            _ => String::new(),
        };
        t.note(
            kind,
            format!(
                "resumed: a new tunnel connection between running edges; {tls_resumed} of {repeats} resumed its TLS session{early}"
            ),
        );
    }
    if let Some(e) = err {
        t.note(kind, format!("failed: {e:#}"));
    }
}
