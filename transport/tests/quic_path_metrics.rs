//! The QUIC path statistics (`ferry_transport_quic_*`, docs/metrics.md) of
//! real connections over a simulated path whose UDP can be dropped: traffic
//! shows in the datagram, byte and packet counters of both sides; the
//! peer's round-trip time and path MTU are exposed while a connection to it
//! is open and gone after; a closed connection's counts stay in the totals;
//! datagrams dropped on the way show up as lost packets and a congestion
//! event.

mod support;

use std::time::Duration;

use ferry_transport::tunnel::{PeerKey, TunnelClient, TunnelServer};
use ferry_transport::TransportKind;
use prometheus_client::registry::Registry;
use support::*;

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

struct Setup {
    _server: TunnelServer,
    server_metrics: Registry,
    path: UdpPath,
    client: TunnelClient,
    client_metrics: Registry,
    peer: PeerKey,
    echo: std::net::SocketAddr,
}

async fn setup() -> Setup {
    init();
    let pki = Pki::new("test.local");
    let (stls, server_metrics) = tls_with_registry(pki.store(SERVER_ID, &[]));
    let (server, _seen) = connect_server(stls, test_config()).await;
    let path = UdpPath::new(server.local_addr(), true).await;
    let (ctls, client_metrics) = tls_with_registry(pki.store(CLIENT_ID, &[]));
    let client = TunnelClient::new(ctls, test_config()).unwrap();
    let peer = PeerKey::new(path.addr, id(SERVER_ID));
    Setup {
        _server: server,
        server_metrics,
        path,
        client,
        client_metrics,
        peer,
        echo: echo_server().await,
    }
}

/// The value of one series exactly as exposed, `None` when absent.
fn value(registry: &Registry, series: &str) -> Option<f64> {
    ferry_transport::metrics::encode_text(registry)
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

fn counter(registry: &Registry, name: &str, labels: &str) -> u64 {
    let series = format!("ferry_transport_quic_{name}_total{{{labels}}}");
    value(registry, &series).unwrap_or_else(|| panic!("{series} not exposed")) as u64
}

fn peer_gauge(registry: &Registry, name: &str, side: &str, peer: &str) -> Option<f64> {
    value(
        registry,
        &format!("ferry_transport_quic_{name}{{side=\"{side}\",peer=\"{peer}\"}}"),
    )
}

/// Every counter of one side, in a fixed order.
fn counters(registry: &Registry, side: &str) -> Vec<u64> {
    let mut all = Vec::new();
    for name in ["datagrams", "udp_bytes"] {
        for dir in ["sent", "received"] {
            all.push(counter(
                registry,
                name,
                &format!("side=\"{side}\",direction=\"{dir}\""),
            ));
        }
    }
    for name in [
        "packets_sent",
        "packets_lost",
        "congestion_events",
        "mtu_black_holes",
    ] {
        all.push(counter(registry, name, &format!("side=\"{side}\"")));
    }
    all
}

fn payload(len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    Xorshift::new(7).fill(&mut m);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_shows_on_both_sides_and_outlives_the_connection() {
    let s = setup().await;
    let msg = payload(256 * 1024);
    let kind = echo_once(&s.client, &s.peer, s.echo, &msg).await.unwrap();
    assert_eq!(kind, TransportKind::Quic);

    let c = counters(&s.client_metrics, "client");
    let (c_dg_sent, c_dg_recv, c_bytes_sent, c_bytes_recv, c_pkts) = (c[0], c[1], c[2], c[3], c[4]);
    assert!(c_dg_sent > 0 && c_dg_recv > 0, "client datagrams: {c:?}");
    assert!(
        c_bytes_sent > msg.len() as u64 && c_bytes_recv > msg.len() as u64,
        "the echoed payload and its overhead went both ways: {c:?}"
    );
    assert!(
        c_pkts >= c_dg_sent,
        "a datagram holds one or more packets: {c:?}"
    );
    let sv = counters(&s.server_metrics, "server");
    assert!(
        sv[2] > msg.len() as u64 && sv[3] > msg.len() as u64,
        "server: {sv:?}"
    );
    // Nothing is counted on the side each proxy is not.
    assert!(counters(&s.client_metrics, "server")
        .iter()
        .all(|&v| v == 0));
    assert!(counters(&s.server_metrics, "client")
        .iter()
        .all(|&v| v == 0));

    let rtt = peer_gauge(&s.client_metrics, "rtt_seconds", "client", SERVER_ID)
        .expect("the client exposes its peer's RTT");
    assert!(rtt > 0.0 && rtt < 1.0, "rtt {rtt}");
    let mtu = peer_gauge(&s.client_metrics, "path_mtu_bytes", "client", SERVER_ID)
        .expect("the client exposes its peer's path MTU");
    assert!(mtu >= 1200.0, "mtu {mtu}");
    assert!(peer_gauge(&s.server_metrics, "rtt_seconds", "server", CLIENT_ID).is_some());
    assert!(peer_gauge(&s.server_metrics, "path_mtu_bytes", "server", CLIENT_ID).is_some());

    // Closing the connection removes the peer's gauges, and its counts stay.
    let before = counters(&s.client_metrics, "client");
    let server_before = counters(&s.server_metrics, "server");
    s.client.close();
    assert!(
        wait_until(Duration::from_secs(5), || {
            peer_gauge(&s.client_metrics, "rtt_seconds", "client", SERVER_ID).is_none()
                && peer_gauge(&s.server_metrics, "rtt_seconds", "server", CLIENT_ID).is_none()
        })
        .await,
        "peer gauges still exposed after the connection closed"
    );
    let after = counters(&s.client_metrics, "client");
    let server_after = counters(&s.server_metrics, "server");
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a >= b,
            "client counter {i} went back: {before:?} -> {after:?}"
        );
    }
    for (i, (b, a)) in server_before.iter().zip(&server_after).enumerate() {
        assert!(
            a >= b,
            "server counter {i} went back: {server_before:?} -> {server_after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_datagrams_show_as_lost_packets() {
    let s = setup().await;
    // Connect first, so the drops below hit an established connection.
    echo_once(&s.client, &s.peer, s.echo, b"hello")
        .await
        .unwrap();
    assert_eq!(
        counter(&s.client_metrics, "packets_lost", "side=\"client\""),
        0
    );

    s.path.set_relay(false);
    let (client, peer, echo) = (s.client.clone(), s.peer.clone(), s.echo);
    let msg = payload(64 * 1024);
    let m2 = msg.clone();
    let run = tokio::spawn(async move { echo_once(&client, &peer, echo, &m2).await });
    assert!(
        wait_until(Duration::from_secs(5), || s.path.dropped() >= 8).await,
        "the echo's datagrams were dropped"
    );
    s.path.set_relay(true);
    let kind = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the echo finishes once the path is back")
        .unwrap()
        .unwrap();
    assert_eq!(kind, TransportKind::Quic);

    assert!(
        wait_until(Duration::from_secs(5), || {
            counter(&s.client_metrics, "packets_lost", "side=\"client\"") > 0
                && counter(&s.client_metrics, "congestion_events", "side=\"client\"") > 0
        })
        .await,
        "drops not counted: {:?} (dropped {})",
        counters(&s.client_metrics, "client"),
        s.path.dropped()
    );
    let lost = counter(&s.client_metrics, "packets_lost", "side=\"client\"");
    let sent = counter(&s.client_metrics, "packets_sent", "side=\"client\"");
    assert!(lost < sent, "lost {lost} of {sent}");
}
