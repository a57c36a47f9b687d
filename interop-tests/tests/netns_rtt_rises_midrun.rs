//! The round-trip time between two hosts (network namespaces) rises for
//! good in the middle of a run, from a veth pair's tens of microseconds to
//! 20 ms (the NFQUEUE delayer of `ferry-netem`, 10 ms each way). quinn's BBR
//! keeps a connection's lifetime minimum RTT, so the pooled QUIC connection
//! would stay window-limited; the client edge retires it after the RTT has
//! stayed risen for its hold (10 s) and the next request dials a new QUIC
//! connection. Every request before, during and after succeeds intact, and
//! the retirement is counted (`ferry_transport_quic_rtt_replaced_total`).

use std::time::{Duration, Instant};

use ferry_netem::{Impairment, TwoHosts};
use interop_tests::curl;
use interop_tests::digest::Pattern;
use interop_tests::pair::http_app_behind_hosts;
use interop_tests::prereq::{root, tool};

const SIZE: usize = 20_000;

#[test]
fn a_connection_whose_rtt_rose_for_good_is_replaced() {
    root();
    tool("curl", "curl");
    let hosts = TwoHosts::create("rttup").unwrap();
    let (_app, pair) = http_app_behind_hosts(&hosts);
    let scratch = pair.dir.path().join("body");
    let mut seed = 0u64;
    let mut request = || {
        seed += 1;
        let url = format!("http://{}/bytes/{SIZE}?seed={seed}", pair.listener);
        let r = curl::get(Some(&hosts.a), &url, Duration::from_secs(10), &scratch)
            .unwrap_or_else(|e| panic!("request {seed}: {e}"));
        assert_eq!(r.status, 200, "request {seed}");
        let mut want = vec![0u8; SIZE];
        Pattern::new(seed).fill(&mut want);
        assert!(r.body == want, "response {seed} intact");
    };
    let quic_handshakes = [("transport", "quic"), ("side", "client"), ("result", "ok")];
    let replaced = "ferry_transport_quic_rtt_replaced_total";

    // A second of requests at the veth's own RTT: one QUIC connection.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        request();
    }
    assert_eq!(
        pair.client
            .metric("ferry_transport_handshakes_total", &quic_handshakes),
        1.0
    );
    assert_eq!(pair.client.metric(replaced, &[]), 0.0);

    let _impaired = hosts
        .impair(Impairment {
            loss: 0.0,
            delay: Duration::from_millis(10),
        })
        .unwrap();
    let risen = Instant::now();
    // Requests keep going over the slow path until the connection is
    // retired (after the 10 s hold), and must all succeed meanwhile.
    while pair.client.metric(replaced, &[]) < 1.0 {
        assert!(
            risen.elapsed() < Duration::from_secs(30),
            "the risen RTT was not noticed in 30 s: {}",
            pair.client.metrics()
        );
        request();
    }
    let noticed = risen.elapsed();
    assert!(
        noticed >= Duration::from_secs(9),
        "retired after {noticed:?}, before the 10 s hold"
    );

    // The next request dials a new QUIC connection (not the fallback), and
    // only one: the new connection's minimum is the new path's RTT.
    for _ in 0..3 {
        request();
    }
    let m = pair.client.metrics();
    let get =
        |name: &str, labels: &[(&str, &str)]| interop_tests::metrics::metric(&m, name, labels);
    assert_eq!(
        get("ferry_transport_handshakes_total", &quic_handshakes),
        2.0,
        "{m}"
    );
    assert_eq!(get(replaced, &[]), 1.0, "{m}");
    assert_eq!(
        get(
            "ferry_transport_fallbacks_total",
            &[("reason", "quic_unanswered")]
        ),
        0.0,
        "a slow path is not a dead one: {m}"
    );
    let failed = [("direction", "outbound"), ("status_class", "5xx")];
    assert_eq!(get("ferry_requests_total", &failed), 0.0, "{m}");
}
