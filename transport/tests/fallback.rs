//! QUIC → HTTP/2 fallback over a simulated path whose UDP can be black-holed
//! (no root needed): TCP to the path's port is always forwarded to the
//! tunnel server, UDP to the same port is relayed or silently dropped.
//!
//! Covers the head-start race, the broken-QUIC memory, QUIC coming back
//! after the back-off (background probe), and UDP dying under a live QUIC
//! connection.

mod support;

use std::time::{Duration, Instant};

use ferry_transport::tunnel::{PeerKey, TunnelClient, TunnelConfig, TunnelServer};
use ferry_transport::TransportKind;
use prometheus_client::registry::Registry;
use support::*;

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

const HEAD_START: Duration = Duration::from_millis(300);

struct Setup {
    _server: TunnelServer,
    path: UdpPath,
    client: TunnelClient,
    peer: PeerKey,
    metrics: Registry,
    echo: std::net::SocketAddr,
}

fn client_config() -> TunnelConfig {
    TunnelConfig {
        head_start: HEAD_START,
        handshake_timeout: Duration::from_secs(2),
        quic_broken_base: Duration::from_millis(500),
        ..TunnelConfig::default()
    }
}

async fn setup(relay: bool, cfg: TunnelConfig) -> Setup {
    init();
    let pki = Pki::new("test.local");
    let (server, _seen) = connect_server(tls(pki.store(SERVER_ID, &[])), test_config()).await;
    let path = UdpPath::new(server.local_addr(), relay).await;
    let (ctls, metrics) = tls_with_registry(pki.store(CLIENT_ID, &[]));
    let client = TunnelClient::new(ctls, cfg).unwrap();
    let peer = PeerKey::new(path.addr, id(SERVER_ID));
    Setup {
        _server: server,
        path,
        client,
        peer,
        metrics,
        echo: echo_server().await,
    }
}

fn msg(i: usize) -> Vec<u8> {
    let mut m = vec![0u8; 1024 + i * 37];
    Xorshift::new(i as u64 + 1).fill(&mut m);
    m
}

/// Step 1: with UDP black-holed, the first stream waits out the head start,
/// then goes over TLS/TCP. Returns the setup for the later steps.
async fn first_stream_falls_back(cfg: TunnelConfig) -> Setup {
    let s = setup(false, cfg).await;
    let t0 = Instant::now();
    let kind = echo_once(&s.client, &s.peer, s.echo, &msg(0))
        .await
        .expect("echo over the fallback");
    let elapsed = t0.elapsed();
    assert_eq!(kind, TransportKind::H2, "stream carried over HTTP/2");
    let pooled = s.client.pooled(&s.peer);
    assert_eq!(pooled.len(), 1, "{pooled:?}");
    assert_eq!(pooled[0].transport(), TransportKind::H2);
    assert!(
        elapsed >= HEAD_START,
        "the head start was paid before TCP was tried ({elapsed:?})"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "fallback took {elapsed:?}"
    );
    assert_eq!(fallbacks(&s.metrics, "quic_head_start_expired"), 1);
    assert!(s.client.quic_broken(s.peer.addr), "QUIC remembered broken");
    assert!(s.path.dropped() > 0, "QUIC was really tried (and dropped)");
    assert_eq!(s.path.relayed(), 0);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blackholed_falls_back_to_h2_after_head_start() {
    first_stream_falls_back(client_config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_quic_is_remembered_for_new_connections() {
    // A long back-off: the second dial must go straight to TLS/TCP, not
    // probe.
    let s = first_stream_falls_back(TunnelConfig {
        quic_broken_base: Duration::from_secs(60),
        ..client_config()
    })
    .await;
    s.client.forget(&s.peer);
    assert!(s.client.pooled(&s.peer).is_empty());

    let t0 = Instant::now();
    let kind = echo_once(&s.client, &s.peer, s.echo, &msg(1))
        .await
        .expect("echo on the second connection");
    let elapsed = t0.elapsed();
    assert_eq!(kind, TransportKind::H2);
    assert!(
        elapsed < Duration::from_millis(250),
        "a peer known broken skips the head start ({elapsed:?})"
    );
    assert_eq!(fallbacks(&s.metrics, "quic_known_broken"), 1);
    assert_eq!(fallbacks(&s.metrics, "quic_head_start_expired"), 1);
    let pooled = s.client.pooled(&s.peer);
    assert_eq!(pooled.len(), 1, "{pooled:?}");
    assert_eq!(pooled[0].transport(), TransportKind::H2);
    assert_eq!(handshakes(&s.metrics, "quic", "client", "ok"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_comes_back_after_backoff() {
    let s = first_stream_falls_back(client_config()).await;
    // Let the QUIC attempt that lost the race run out (handshake timeout),
    // so that recovery below comes from the back-off probe alone.
    assert!(
        wait_until(Duration::from_secs(4), || handshakes(
            &s.metrics, "quic", "client", "timeout"
        ) == 1)
        .await,
        "the raced QUIC attempt timed out"
    );
    assert!(s.client.quic_broken(s.peer.addr));
    s.path.set_relay(true);
    // The back-off (500 ms) started when TCP won; it is over by now.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A new dial: TLS/TCP at once, and a QUIC probe in the background.
    s.client.forget(&s.peer);
    let kind = echo_once(&s.client, &s.peer, s.echo, &msg(2))
        .await
        .expect("echo while probing");
    assert_eq!(kind, TransportKind::H2, "the probe runs in the background");
    assert_eq!(fallbacks(&s.metrics, "quic_known_broken"), 1);

    let t0 = Instant::now();
    let mut i = 3;
    let back = loop {
        let kind = echo_once(&s.client, &s.peer, s.echo, &msg(i))
            .await
            .expect("data stays intact while QUIC comes back");
        i += 1;
        if kind == TransportKind::Quic {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "QUIC did not come back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("QUIC back after {back:?} ({} streams)", i - 3);
    assert!(!s.client.quic_broken(s.peer.addr), "QUIC no longer broken");
    assert_eq!(handshakes(&s.metrics, "quic", "client", "ok"), 1);
    assert!(s.path.relayed() > 0);
    let pooled = s.client.pooled(&s.peer);
    assert!(
        pooled.iter().any(|c| c.transport() == TransportKind::Quic),
        "{pooled:?}"
    );
    // Further streams stay on QUIC.
    for j in 0..5 {
        let kind = echo_once(&s.client, &s.peer, s.echo, &msg(100 + j))
            .await
            .unwrap();
        assert_eq!(kind, TransportKind::Quic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_dropped_mid_run_recovers_over_h2() {
    let s = setup(
        true,
        TunnelConfig {
            idle_timeout: Duration::from_secs(1),
            keep_alive: Duration::from_millis(300),
            ..client_config()
        },
    )
    .await;
    for i in 0..5 {
        let kind = echo_once(&s.client, &s.peer, s.echo, &msg(i))
            .await
            .expect("echo over QUIC");
        assert_eq!(kind, TransportKind::Quic);
    }
    assert_eq!(fallbacks(&s.metrics, "quic_head_start_expired"), 0);

    s.path.set_relay(false);
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut i = 10;
    let recovered = loop {
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            echo_once(&s.client, &s.peer, s.echo, &msg(i)),
        )
        .await;
        i += 1;
        match r {
            Ok(Ok(TransportKind::H2)) => break t0.elapsed(),
            // Streams already on the way when the path broke may still
            // finish over QUIC.
            Ok(Ok(TransportKind::Quic)) => {}
            Ok(Err(e)) => {
                assert!(!e.contains("corrupted"), "{e}");
                failures.push(format!("{:?}: {e}", t0.elapsed()));
            }
            Err(_) => failures.push(format!("{:?}: stream hung for 3 s", t0.elapsed())),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "no recovery over HTTP/2 within 6 s; failures: {failures:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("recovered over H2 after {recovered:?}; failed streams: {failures:#?}");
    assert!(
        recovered < Duration::from_secs(4),
        "recovery took {recovered:?}; failures: {failures:#?}"
    );
    assert!(s.path.dropped() > 0);
    // Everything after recovery is over HTTP/2 and intact.
    for j in 0..5 {
        let kind = echo_once(&s.client, &s.peer, s.echo, &msg(200 + j))
            .await
            .unwrap();
        assert_eq!(kind, TransportKind::H2);
    }
    let pooled = s.client.pooled(&s.peer);
    assert!(
        pooled
            .iter()
            .all(|c| c.transport() == TransportKind::H2 || c.is_closed()),
        "{pooled:?}"
    );
}
