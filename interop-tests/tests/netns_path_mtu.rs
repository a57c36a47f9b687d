//! Datagram size without tuning: two hosts in network namespaces, edges
//! with the default `[tunnel]` (no `max_udp_payload`). Over a jumbo-frame
//! link (MTU 9,000) path-MTU discovery must grow both ends' datagrams to
//! what the link carries (8,972 bytes of UDP payload over IPv4), and over a
//! 1,500-byte link to 1,472, never above: the bound comes from the kernel's
//! route to the peer. A response is intact either way.

use std::time::{Duration, Instant};

use ferry_netem::TwoHosts;
use interop_tests::curl;
use interop_tests::digest::Pattern;
use interop_tests::edge::Edge;
use interop_tests::pair::http_app_behind_hosts;
use interop_tests::prereq::{root, tool};

const SIZE: usize = 2_000_000;
const PATH_MTU: &str = "ferry_transport_quic_path_mtu_bytes";

#[test]
fn jumbo_frames_are_used_without_a_setting() {
    datagrams_fill_the_link("pmtu9k", 9000);
}

#[test]
fn a_1500_byte_link_gets_full_size_ipv4_datagrams_and_no_more() {
    datagrams_fill_the_link("pmtu15", 1500);
}

/// The path MTU an edge reports for its one peer, once it stops growing
/// (unchanged for 1 s) or after 10 s.
fn settled_path_mtu(edge: &Edge, side: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (edge.metric(PATH_MTU, &[("side", side)]), Instant::now());
    while Instant::now() < deadline && last.1.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
        let v = edge.metric(PATH_MTU, &[("side", side)]);
        if v != last.0 {
            last = (v, Instant::now());
        }
    }
    last.0
}

fn datagrams_fill_the_link(tag: &str, mtu: u32) {
    root();
    tool("curl", "curl");
    let hosts = TwoHosts::create(tag).unwrap();
    hosts.set_mtu(mtu).unwrap();
    let (_app, pair) = http_app_behind_hosts(&hosts);
    let scratch = pair.dir.path().join("body");
    let url = format!("http://{}/bytes/{SIZE}?seed=7", pair.listener);
    let r = curl::get(Some(&hosts.a), &url, Duration::from_secs(10), &scratch).unwrap();
    assert_eq!(r.status, 200);
    let mut want = vec![0u8; SIZE];
    Pattern::new(7).fill(&mut want);
    assert!(r.body == want, "the response is intact");
    assert_eq!(
        pair.client.metric_reaches(
            "ferry_requests_total",
            &[("direction", "outbound"), ("transport", "quic")],
            1.0,
            Duration::from_secs(5)
        ),
        1.0,
        "the request went over QUIC"
    );

    // IPv4 (20 bytes) and UDP (8) headers below the link's MTU.
    let link_payload = f64::from(mtu - 28);
    for (edge, side) in [(&pair.client, "client"), (&pair.server, "server")] {
        let got = settled_path_mtu(edge, side);
        assert!(
            got <= link_payload,
            "{side} edge: path MTU {got} is above what the link carries ({link_payload})"
        );
        eprintln!("{side} edge: path MTU {got} (link carries {link_payload})");
        // quinn's search halves the gap and ends less than 20 bytes below
        // its bound when every probe gets through (as here). A fixed bound
        // of 1,452 (the old default) fails this at MTU 1,500 too.
        assert!(
            got > link_payload - 20.0,
            "{side} edge: path MTU {got}, the link carries {link_payload}: {}",
            edge.metrics()
        );
    }
}
