//! Loss and delay between two namespaces (ferry-netem: iptables
//! `statistic` drops on each host's INPUT, an NFQUEUE delayer holding each
//! host's outgoing packets for half the RTT; veth at MTU 1,500, offloads
//! off): 64 concurrent request streams (`--netem-streams`; closed loop,
//! one application connection each, 16 KiB answers) per condition, giving request throughput
//! and p50/p99 latency. Ferry carries the 64 streams on one tunnel
//! connection (QUIC streams, or HTTP/2 streams on one TCP connection); the
//! pairs use one TLS connection per application connection. Each path is
//! started afresh for each RTT. With 0 % loss at 20 ms RTT the cold/resumed
//! handshake rows and, outside `--quick`, the new-application-connection
//! rows (fewer connections, and the opaque-HTTP paths too) are measured
//! too.

use std::time::Duration;

use anyhow::Result;
use ferry_netem::Impairment;

use super::{handshake, ms, new_conn, Env};
use crate::app::App;
use crate::histogram::Histogram;
use crate::loadgen::max_rate;
use crate::paths::PathKind;
use crate::peers::{Ctx, RunningPath};
use crate::results::{Better, Curve, Metric, Results};
use crate::run::Setup;
use crate::topology::Topology;

pub const LINK: &str = "veth MTU 1500 + loss/delay";
pub const RPS: &str = "req/s";
pub const MBPS: &str = "MB/s";
pub const P50: &str = "p50 ms";
pub const P99: &str = "p99 ms";
pub const ERRORS: &str = "errors";

pub fn scenario(streams: usize, loss_pct: f64, rtt_ms: u64) -> String {
    format!("{streams} concurrent request streams, {loss_pct}% loss, {rtt_ms} ms RTT")
}

pub fn metrics() -> [Metric; 5] {
    [
        Metric::new(RPS, Better::Higher, 0, true),
        Metric::new(MBPS, Better::Higher, 1, false),
        Metric::new(P50, Better::Lower, 2, true),
        Metric::new(P99, Better::Lower, 2, true),
        Metric::new(ERRORS, Better::Lower, 0, false),
    ]
}

fn conditions(setup: &Setup) -> Vec<(f64, u64)> {
    let mut v = Vec::new();
    for &rtt in &setup.plan.netem_rtt_ms {
        for &loss in &setup.plan.netem_loss {
            v.push((loss, rtt));
        }
    }
    v
}

fn impair(topo: &Topology, loss: f64, rtt: u64) -> Result<ferry_netem::Impaired> {
    let hosts = topo.netem.as_ref().expect("a ferry-netem topology");
    hosts
        .impair(Impairment {
            loss: loss / 100.0,
            delay: Duration::from_micros(rtt * 500),
        })
        .map_err(|e| anyhow::anyhow!("ferry-netem: impair {loss}% loss, {rtt} ms RTT: {e}"))
}

fn record(
    env: &Env,
    kind: PathKind,
    name: &str,
    r: Result<max_rate::MaxRate>,
    results: &mut Results,
) {
    let t = results.table(LINK, name, &metrics());
    match r {
        Ok(m) => {
            t.set(kind, RPS, m.per_sec);
            t.set(
                kind,
                MBPS,
                m.per_sec * crate::app::body_len("/16k") as f64 / 1e6,
            );
            if let (Some(p50), Some(p99)) = (m.latency.quantile(0.5), m.latency.quantile(0.99)) {
                t.set(kind, P50, ms(p50));
                t.set(kind, P99, ms(p99));
            }
            t.set(kind, ERRORS, m.errors as f64);
            curve(env, kind, name, &m.latency, results);
        }
        Err(e) => t.note(kind, format!("failed: {e:#}")),
    }
}

fn curve(env: &Env, kind: PathKind, name: &str, h: &Histogram, results: &mut Results) {
    let _ = env;
    results.curves.push(Curve {
        link: LINK.to_string(),
        scenario: name.to_string(),
        path: kind,
        points: h.percentile_curve(),
    });
}

/// The new-connection scenario on a fresh path at 20 ms RTT, no loss.
fn new_conns_at_20ms(env: &Env, kind: PathKind, ctx: &Ctx, results: &mut Results) {
    if env.plan.netem_new_conns == 0 {
        return;
    }
    let ctx = Ctx {
        dir: ctx.dir.join("new-conn"),
        ..ctx.clone()
    };
    let imp = match impair(env.topo, 0.0, 20) {
        Ok(imp) => imp,
        Err(e) => {
            results.problems.push(format!("{e:#}"));
            return;
        }
    };
    match RunningPath::start(kind, &ctx) {
        Ok(mut path) => new_conn::run_n(env, &mut path, env.plan.netem_new_conns, results),
        Err(e) => results
            .table(
                LINK,
                &new_conn::scenario(env.plan.netem_new_conns),
                &new_conn::metrics(),
            )
            .note(kind, format!("failed to start: {e:#}")),
    }
    drop(imp);
}

/// Measures every condition for the paths of the plan.
pub fn run_all(setup: &Setup, results: &mut Results) -> Result<()> {
    if let Some(why) = setup.programs.missing_for_loss() {
        results
            .problems
            .push(format!("loss/RTT conditions skipped: {why}"));
        return Ok(());
    }
    setup
        .progress
        .step(&format!("{LINK}: creating the namespaces (ferry-netem)"));
    let topo = Topology::netem(LINK)?;
    let app = App::start(&topo.server)?;
    let env = Env {
        topo: &topo,
        app: &app,
        plan: &setup.plan,
        progress: &setup.progress,
    };
    let paths: Vec<PathKind> = setup
        .paths
        .iter()
        .copied()
        .filter(|p| {
            (p.measures("lossy") || (p.is_opaque_http() && !setup.opts.quick))
                && (!setup.opts.quick
                    || matches!(
                        p,
                        PathKind::Direct
                            | PathKind::FerryQuic
                            | PathKind::FerryH2
                            | PathKind::Haproxy
                    ))
        })
        .collect();
    for (i, &kind) in paths.iter().enumerate() {
        crate::interrupt::check()?;
        if let Some(why) = setup.programs.missing_for(kind) {
            for (loss, rtt) in conditions(setup) {
                results
                    .table(
                        LINK,
                        &scenario(setup.plan.netem_streams, loss, rtt),
                        &metrics(),
                    )
                    .note(kind, why.clone());
            }
            continue;
        }
        let ctx = Ctx {
            topo: &topo,
            app: &app,
            pair_pki: &setup.pair_pki,
            ferry_pki: &setup.ferry_pki,
            ferry: &setup.ferry,
            programs: &setup.programs,
            dir: setup.work.path().join(format!("netem-{i}-{}", kind.key())),
        };
        // New application connections where the RTT shows (20 ms, no
        // loss): the pairs pay TCP's and TLS's round trips per connection,
        // Ferry one for the request on its pooled tunnel (and, for opaque
        // TCP, none for the CONNECT: the first bytes ride with it).
        new_conns_at_20ms(&env, kind, &ctx, results);
        if !kind.measures("lossy") {
            continue;
        }
        // A fresh path for each RTT: a deployment on a 20 ms network never
        // saw 1 ms. The pairs get new TLS connections with every batch of
        // application connections anyway; Ferry's pooled tunnel connection
        // would otherwise carry its RTT history from one network into the
        // next (quinn's BBR keeps the connection's lifetime minimum RTT, so
        // a connection that saw 1 ms stays window-limited at 20 ms).
        let mut running: Option<(u64, RunningPath)> = None;
        for (loss, rtt) in conditions(setup) {
            let name = scenario(setup.plan.netem_streams, loss, rtt);
            if !matches!(running, Some((r, _)) if r == rtt) {
                drop(running.take());
                setup.progress.step(&format!(
                    "{LINK} · {}: starting ({rtt} ms RTT)",
                    kind.label()
                ));
                match RunningPath::start(kind, &ctx) {
                    Ok(p) => running = Some((rtt, p)),
                    Err(e) => {
                        results
                            .table(LINK, &name, &metrics())
                            .note(kind, format!("failed to start: {e:#}"));
                        continue;
                    }
                }
            }
            let (_, path) = running.as_mut().expect("started above");
            let target = path.http.expect("HTTP entry");
            setup
                .progress
                .step(&format!("{LINK} · {} · {name}", kind.label()));
            let r = impair(&topo, loss, rtt).and_then(|imp| {
                let dur = setup.plan.netem_secs;
                let streams = setup.plan.netem_streams;
                let r = topo.client.run_timeout(
                    "loss/RTT load",
                    dur + Duration::from_secs(90),
                    async move { max_rate::run_path(target, "/16k", dur, streams, || {}).await },
                );
                drop(imp);
                r
            });
            record(&env, kind, &name, r, results);
            if let Err(e) = path.check_alive() {
                results
                    .table(LINK, &name, &metrics())
                    .note(kind, format!("{e:#}"));
                drop(running.take());
            }
        }
        drop(running);
        // Handshakes where the RTT shows: 20 ms, no loss.
        match impair(&topo, 0.0, 20) {
            Ok(imp) => {
                let ctx = Ctx {
                    dir: ctx.dir.join("handshake"),
                    ..ctx
                };
                handshake::run(&env, kind, &ctx, results);
                drop(imp);
            }
            Err(e) => results.problems.push(format!("{e:#}")),
        }
    }
    let at_20ms = [
        handshake::SCENARIO.to_string(),
        new_conn::scenario(setup.plan.netem_new_conns),
    ];
    for t in results
        .tables
        .iter_mut()
        .filter(|t| t.link == LINK && at_20ms.contains(&t.scenario))
    {
        t.notes
            .push("Measured with 20 ms RTT (10 ms each way) and no loss.".into());
    }
    Ok(())
}
