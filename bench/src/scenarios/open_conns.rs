//! Connections held open: N application connections opened at once (one
//! small request each) through a freshly started path, then held idle
//! while each side's proxy memory is read. What a connection costs to
//! keep: a TLS pair holds one TLS connection per application connection on
//! each side; Ferry's client edge holds the application connections and
//! carries their requests as streams on its one pooled tunnel, and its
//! server edge holds that tunnel and its own connections to the
//! application. Also times the burst (first connect to last response),
//! where a pair does N TLS handshakes at once.

use std::time::Duration;

use super::{record_burst, run_fresh, Env, ERRORS, SETTLE};
use crate::loadgen::open_conns::{self, Burst};
use crate::paths::PathKind;
use crate::peers::{Ctx, RunningPath};
use crate::results::{Better, Metric, Results};

pub const ALL_ANSWERED: &str = "all answered ms";
pub const CLIENT_KIB: &str = "client side KiB per connection";
pub const SERVER_KIB: &str = "server side KiB per connection";

pub fn scenario(n: usize) -> String {
    format!("{n} application connections opened at once and held open")
}

pub fn metrics() -> [Metric; 4] {
    [
        Metric::new(ALL_ANSWERED, Better::Lower, 1, true),
        Metric::new(CLIENT_KIB, Better::Lower, 1, true),
        Metric::new(SERVER_KIB, Better::Lower, 1, true),
        Metric::new(ERRORS, Better::Lower, 0, false),
    ]
}

/// Memory added per connection, KiB, from the process trees' RSS before
/// and while holding `n` connections.
fn per_conn(before: Option<u64>, held: Option<u64>, n: usize) -> Option<f64> {
    let (b, h) = (before?, held?);
    (n > 0).then(|| h.saturating_sub(b) as f64 / n as f64)
}

struct Measured {
    burst: Burst,
    client_kib: Option<f64>,
    server_kib: Option<f64>,
}

fn measure(env: &Env, kind: PathKind, ctx: &Ctx, n: usize) -> anyhow::Result<Measured> {
    let mut path = RunningPath::start(kind, ctx)?;
    let http = path
        .http
        .ok_or_else(|| anyhow::anyhow!("this path has no HTTP entry"))?;
    // One request first, so a tunnel that is pooled is already there.
    env.topo
        .client
        .run_timeout("first request", Duration::from_secs(20), async move {
            crate::loadgen::new_conn::one(http).await
        })?;
    std::thread::sleep(SETTLE);
    let before = (path.client_rss_kib(), path.server_rss_kib());
    let held =
        env.topo
            .client
            .run_timeout("open connections", Duration::from_secs(120), async move {
                open_conns::open(http, n).await
            })?;
    std::thread::sleep(SETTLE);
    path.check_alive()?;
    let during = (path.client_rss_kib(), path.server_rss_kib());
    let open = held.conns.len();
    drop(held.conns);
    Ok(Measured {
        burst: held.burst,
        client_kib: per_conn(before.0, during.0, open),
        server_kib: per_conn(before.1, during.1, open),
    })
}

pub fn run(env: &Env, kind: PathKind, ctx: &Ctx, results: &mut Results) {
    let n = env.plan.open_conns;
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
            if let Some(v) = m.client_kib {
                t.set(kind, CLIENT_KIB, v);
            }
            if let Some(v) = m.server_kib {
                t.set(kind, SERVER_KIB, v);
            }
            record_burst(t, kind, ALL_ANSWERED, m.burst);
        },
    );
}

#[cfg(test)]
mod tests {
    use super::per_conn;

    #[test]
    fn memory_per_connection() {
        assert_eq!(per_conn(Some(1000), Some(3000), 100), Some(20.0));
        // Memory that shrank (a heap trimmed meanwhile) counts as nothing.
        assert_eq!(per_conn(Some(3000), Some(1000), 100), Some(0.0));
        assert_eq!(per_conn(None, Some(1000), 100), None);
        assert_eq!(per_conn(Some(1000), Some(3000), 0), None);
    }
}
