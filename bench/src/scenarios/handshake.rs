//! Cold and resumed proxy-to-proxy handshakes, seen by the application as
//! the time of its first request (connect → full response):
//! - cold: through a pair started a moment ago (nothing cached; includes
//!   the proxy-to-proxy handshake);
//! - resumed: the first request after the proxy-to-proxy connection was
//!   gone while both proxies kept running. For the TLS pairs that is the
//!   next application connection (one TLS connection per application
//!   connection, the client side resumes its cached session). Ferry keeps
//!   one pooled tunnel per peer and does not resume TLS sessions (a design
//!   choice: certificate rotation and withdrawal must apply), so its row
//!   restarts the client-side edge and measures a full handshake again.

use std::time::Duration;

use super::{ms, Env};
use crate::loadgen::new_conn;
use crate::paths::PathKind;
use crate::peers::{ferry, Ctx, RunningPath};
use crate::results::{Better, Metric, Results};

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

/// One repeat for `kind`: (cold, resumed).
fn once(env: &Env, kind: PathKind, ctx: &Ctx) -> anyhow::Result<(Duration, Duration)> {
    if kind.is_ferry() {
        let transport = kind.ferry_transport().unwrap_or("h2");
        let server = ferry::start_server(ctx, transport, "http")?;
        let (client, http, _) = ferry::start_client(ctx, &server, transport)?;
        let cold = first_request(env, http)?;
        drop(client);
        let (_client, http, _) = ferry::start_client(ctx, &server, transport)?;
        let resumed = first_request(env, http)?;
        return Ok((cold, resumed));
    }
    let path = RunningPath::start(kind, ctx)?;
    let http = path.http.ok_or_else(|| anyhow::anyhow!("no HTTP entry"))?;
    let cold = first_request(env, http)?;
    // Let the first TLS connection close (and its session be cached).
    std::thread::sleep(Duration::from_millis(50));
    let resumed = first_request(env, http)?;
    Ok((cold, resumed))
}

pub fn run(env: &Env, kind: PathKind, ctx: &Ctx, results: &mut Results) {
    env.progress.step(&format!(
        "{} · {} · cold/resumed handshake",
        env.topo.name,
        kind.label()
    ));
    let mut cold = Vec::new();
    let mut resumed = Vec::new();
    let mut err = std::fs::create_dir_all(&ctx.dir)
        .err()
        .map(|e| anyhow::anyhow!("create {}: {e}", ctx.dir.display()));
    for _ in 0..env.plan.handshake_repeats {
        if err.is_some() {
            break;
        }
        match once(env, kind, ctx) {
            Ok((c, r)) => {
                cold.push(c);
                resumed.push(r);
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let t = results.table(&env.topo.name, SCENARIO, &metrics());
    if let Some(c) = median(cold) {
        t.set(kind, COLD, ms(c));
    }
    if let Some(r) = median(resumed) {
        t.set(kind, RESUMED, ms(r));
    }
    if kind.is_ferry() {
        t.note(
            kind,
            "no TLS resumption in Ferry: 'resumed' is a full handshake after a client-edge restart",
        );
    }
    if let Some(e) = err {
        t.note(kind, format!("failed: {e:#}"));
    }
}
