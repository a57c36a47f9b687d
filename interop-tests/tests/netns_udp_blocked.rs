//! UDP dropped between two hosts (network namespaces) from the start: the
//! edges still carry HTTP requests and an integrity-checked opaque TCP
//! transfer, over the TLS/TCP fallback. The client edge's metrics show the
//! fallback (head start expired, an h2 handshake, the peer remembered as
//! QUIC-broken, requests and TCP counted under `transport="h2"`, none
//! under `quic`), and the firewall rule really dropped the QUIC packets.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_netem::TwoHosts;
use interop_tests::apps::{HttpApp, TcpEcho};
use interop_tests::bulk::echo_transfer;
use interop_tests::curl;
use interop_tests::pair::{EdgePair, PairSpec};
use interop_tests::prereq::{root, tool};

#[test]
fn udp_blocked_traffic_flows_over_the_tls_fallback() {
    root();
    tool("curl", "curl");
    let hosts = TwoHosts::create("udpblk").unwrap();
    let blocked = hosts.block_udp().unwrap();
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let app = HttpApp::start(hosts.b.tcp_listen(SocketAddr::new(lo, 0)).unwrap());
    let echo = TcpEcho::start(hosts.b.tcp_listen(SocketAddr::new(lo, 0)).unwrap());
    let pair = EdgePair::start(&PairSpec::hosts(
        &hosts,
        vec![
            (SocketAddr::new(hosts.ip_b.into(), app.addr.port()), "http"),
            (SocketAddr::new(hosts.ip_b.into(), echo.addr.port()), "tcp"),
        ],
    ));
    let scratch = pair.dir.path().join("body");

    const N: usize = 5;
    for i in 0..N {
        let url = format!("http://{}/hello/{i}", pair.listener);
        let r = curl::get(Some(&hosts.a), &url, Duration::from_secs(10), &scratch)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200);
        let d: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(d["path"], format!("/hello/{i}"));
        assert_eq!(d["client_id"], pair.client_identity.id.as_str());
    }
    let stream = hosts
        .a
        .tcp_connect(pair.listeners[1], Duration::from_secs(5))
        .unwrap();
    let t = echo_transfer(stream, 8 << 20, 11, Duration::from_secs(20));
    t.assert_intact("8 MiB over the fallback");
    let at_app = echo.wait_finished(1, Duration::from_secs(5));
    assert_eq!(at_app[0].sha256, t.sent_sha256);

    // Counted when they end: wait for the last request and the transfer.
    let out_h2 = [("direction", "outbound"), ("transport", "h2")];
    let secs5 = Duration::from_secs(5);
    pair.client
        .metric_reaches("ferry_requests_total", &out_h2, N as f64, secs5);
    pair.client
        .metric_reaches("ferry_tcp_connections_total", &out_h2, 1.0, secs5);
    let m = pair.client.metrics();
    let get =
        |name: &str, labels: &[(&str, &str)]| interop_tests::metrics::metric(&m, name, labels);
    assert!(
        get(
            "ferry_transport_fallbacks_total",
            &[("reason", "quic_head_start_expired")]
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        get(
            "ferry_transport_handshakes_total",
            &[("transport", "h2"), ("side", "client"), ("result", "ok")]
        ),
        1.0,
        "one TLS/TCP connection carried everything"
    );
    assert_eq!(get("ferry_transport_quic_broken_peers", &[]), 1.0);
    let out = |t| [("direction", "outbound"), ("transport", t)];
    assert_eq!(get("ferry_requests_total", &out("h2")), N as f64);
    assert_eq!(get("ferry_requests_total", &out("quic")), 0.0);
    let tcp = get("ferry_tcp_connections_total", &out("h2"));
    assert_eq!(tcp, 1.0, "{m}");
    assert!(blocked.dropped().unwrap() > 0, "QUIC packets were dropped");
    let inbound = pair.server.metric_reaches(
        "ferry_requests_total",
        &[("direction", "inbound"), ("transport", "h2")],
        N as f64,
        secs5,
    );
    assert_eq!(inbound, N as f64);
}
