//! 2% random loss and 20 ms delay in each direction between two hosts
//! (network namespaces; the delay is the NFQUEUE delayer of `ferry-netem`):
//! HTTP requests with pseudo-random bodies and a 2 MiB opaque TCP echo
//! through the edges (QUIC) arrive intact. The conditions are checked to be
//! real: connects take at least two delays, and the loss rules dropped
//! packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_netem::{Impairment, TwoHosts};
use interop_tests::apps::{HttpApp, TcpEcho};
use interop_tests::bulk::echo_transfer;
use interop_tests::curl;
use interop_tests::digest::Pattern;
use interop_tests::pair::{EdgePair, PairSpec};
use interop_tests::prereq::{root, tool};

const BULK: u64 = 2 << 20;

#[test]
fn loss_and_delay_everything_arrives_intact() {
    root();
    tool("curl", "curl");
    let hosts = TwoHosts::create("lossy").unwrap();
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
    let impaired = hosts
        .impair(Impairment {
            loss: 0.02,
            delay: Duration::from_millis(20),
        })
        .unwrap();

    // The delay is real: a TCP connect from a to b's tunnel port takes a
    // round trip of at least 2 × 20 ms.
    let t = Instant::now();
    drop(
        hosts
            .a
            .tcp_connect(pair.server.tunnel, Duration::from_secs(5))
            .unwrap(),
    );
    assert!(
        t.elapsed() >= Duration::from_millis(40),
        "RTT {:?}",
        t.elapsed()
    );

    // The bulk transfer runs while the requests go.
    let stream = hosts
        .a
        .tcp_connect(pair.listeners[1], Duration::from_secs(5))
        .unwrap();
    let bulk = std::thread::spawn(move || echo_transfer(stream, BULK, 21, Duration::from_secs(30)));

    let scratch = pair.dir.path().join("body");
    const REQUESTS: u64 = 20;
    for seed in 0..REQUESTS {
        let size = 100_000 + seed as usize * 1000;
        let url = format!("http://{}/bytes/{size}?seed={seed}", pair.listener);
        let r = curl::get(Some(&hosts.a), &url, Duration::from_secs(20), &scratch)
            .unwrap_or_else(|e| panic!("request {seed}: {e}"));
        assert_eq!(r.status, 200, "request {seed}");
        let mut want = vec![0u8; size];
        Pattern::new(seed).fill(&mut want);
        assert!(
            r.body == want,
            "response {seed} ({} bytes) intact",
            r.body.len()
        );
    }
    let t = bulk.join().expect("bulk transfer");
    t.assert_intact("2 MiB echo under loss and delay");
    assert_eq!(t.sent, BULK);
    let at_app = echo.wait_finished(1, Duration::from_secs(5));
    assert_eq!(at_app[0].sha256, t.sent_sha256, "what the app received");
    eprintln!("2 MiB echo under 2% loss / 20 ms: {:?}", t.elapsed);

    let dropped = impaired.dropped().unwrap();
    assert!(dropped > 20, "the loss rules dropped {dropped} packets");
    let quic = [("direction", "outbound"), ("transport", "quic")];
    assert_eq!(
        pair.client.metric_reaches(
            "ferry_requests_total",
            &quic,
            REQUESTS as f64,
            Duration::from_secs(5)
        ),
        REQUESTS as f64,
        "every request over QUIC"
    );
}
