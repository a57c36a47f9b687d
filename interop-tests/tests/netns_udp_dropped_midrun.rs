//! UDP dropped in the middle of a run (a firewall change between two
//! hosts in network namespaces): the edges carry requests over QUIC, then
//! every UDP packet between the hosts is dropped. New requests must recover
//! (over the TLS/TCP fallback) within two seconds, every response that
//! arrives is intact, and the client edge counts the unanswered QUIC path
//! (`quic_unanswered`) and remembers the peer as QUIC-broken. The same
//! after the connection sat idle first (its path watcher then samples
//! slowly, until a new stream wakes it).

use std::time::{Duration, Instant};

use ferry_netem::TwoHosts;
use interop_tests::curl;
use interop_tests::digest::Pattern;
use interop_tests::pair::http_app_behind_hosts;
use interop_tests::prereq::{root, tool};

const SIZE: usize = 50_000;

fn expected(seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; SIZE];
    Pattern::new(seed).fill(&mut v);
    v
}

#[test]
fn udp_dropped_mid_run_recovers_within_two_seconds() {
    dropped_after("udpmid", Duration::ZERO);
}

#[test]
fn udp_dropped_after_an_idle_spell_recovers_within_two_seconds() {
    dropped_after("udpidle", Duration::from_millis(3_500));
}

/// Three requests over QUIC, `idle`, then UDP blocked and requests for 4 s.
fn dropped_after(tag: &str, idle: Duration) {
    root();
    tool("curl", "curl");
    let hosts = TwoHosts::create(tag).unwrap();
    let (_app, pair) = http_app_behind_hosts(&hosts);
    let scratch = pair.dir.path().join("body");
    let url = |seed: u64| format!("http://{}/bytes/{SIZE}?seed={seed}", pair.listener);

    for seed in 1..=3 {
        let r = curl::get(Some(&hosts.a), &url(seed), Duration::from_secs(5), &scratch).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == expected(seed), "response {seed} intact");
    }
    let quic_ok = [("direction", "outbound"), ("transport", "quic")];
    assert_eq!(
        pair.client.metric_reaches(
            "ferry_requests_total",
            &quic_ok,
            3.0,
            Duration::from_secs(5)
        ),
        3.0
    );

    std::thread::sleep(idle);
    let blocked = hosts.block_udp().unwrap();
    let t0 = Instant::now();
    // Sequential requests, each allowed 1 s, for 4 s after the block.
    let mut log = vec![];
    let mut seed = 100;
    while t0.elapsed() < Duration::from_secs(4) {
        seed += 1;
        let started = t0.elapsed();
        let r = curl::get(Some(&hosts.a), &url(seed), Duration::from_secs(1), &scratch);
        if let Ok(r) = &r {
            if r.status == 200 {
                assert!(
                    r.body == expected(seed),
                    "response {seed} after the block is intact"
                );
            }
        }
        log.push((started, t0.elapsed(), r.map(|r| r.status)));
    }
    for (started, done, r) in &log {
        eprintln!("{started:>12.3?} → {done:>12.3?}  {r:?}");
    }
    let first_ok = log
        .iter()
        .find(|(_, _, r)| r.as_ref().is_ok_and(|s| *s == 200))
        .map(|(_, done, _)| *done);
    assert!(
        first_ok.is_some_and(|t| t <= Duration::from_secs(2)),
        "a request succeeded within 2 s of the block: {log:#?}"
    );
    let late: Vec<_> = log
        .iter()
        .filter(|(started, _, _)| *started >= Duration::from_secs(2))
        .collect();
    assert!(!late.is_empty());
    assert!(
        late.iter()
            .all(|(_, _, r)| r.as_ref().is_ok_and(|s| *s == 200)),
        "every request started 2 s after the block succeeds: {log:#?}"
    );
    assert!(blocked.dropped().unwrap() > 0, "UDP was really dropped");
    let m = pair.client.metrics();
    let get =
        |name: &str, labels: &[(&str, &str)]| interop_tests::metrics::metric(&m, name, labels);
    assert_eq!(
        get(
            "ferry_transport_fallbacks_total",
            &[("reason", "quic_unanswered")]
        ),
        1.0,
        "the dead QUIC path was noticed: {m}"
    );
    assert_eq!(get("ferry_transport_quic_broken_peers", &[]), 1.0, "{m}");
    let h2_ok = [
        ("direction", "outbound"),
        ("transport", "h2"),
        ("status_class", "2xx"),
    ];
    assert!(
        pair.client.metric("ferry_requests_total", &h2_ok) >= late.len() as f64,
        "the late requests went over the TLS/TCP fallback"
    );
}
