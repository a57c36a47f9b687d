//! TLS session resumption between tunnel peers, over each transport: a
//! reconnect between running proxies resumes (and the server still sees
//! the client's identity); a replaced identity on either side ends the
//! sessions; a resumed session whose certificate has expired since is
//! refused.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry_transport::identity::IdentityStore;
use ferry_transport::metrics::ResumptionResult;
use ferry_transport::tls::{RejectReason, TlsConfigs};
use ferry_transport::tunnel::{PeerKey, TunnelClient, TunnelConfig, TunnelServer};
use ferry_transport::TransportKind;
use support::*;

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

struct Setup {
    pki: Pki,
    server_store: Arc<IdentityStore>,
    server_tls: Arc<TlsConfigs>,
    registry: prometheus_client::registry::Registry,
    _server: TunnelServer,
    seen: Seen,
    client_store: Arc<IdentityStore>,
    client: TunnelClient,
    peer: PeerKey,
    echo: std::net::SocketAddr,
}

async fn setup(kind: TransportKind, client_leaf_ttl: Duration) -> Setup {
    init();
    let pki = Pki::new("test.local");
    let server_store = pki.store(SERVER_ID, &[]);
    let (server_tls, registry) = tls_with_registry(server_store.clone());
    let cfg = TunnelConfig {
        force_transport: Some(kind),
        ..test_config()
    };
    let (server, seen) = connect_server(server_tls.clone(), cfg.clone()).await;
    let client_store = IdentityStore::new(pki.material_for(CLIENT_ID, &[], client_leaf_ttl));
    let client = TunnelClient::new(tls(client_store.clone()), cfg).unwrap();
    let peer = PeerKey::new(server.local_addr(), id(SERVER_ID));
    Setup {
        pki,
        server_store,
        server_tls,
        registry,
        _server: server,
        seen,
        client_store,
        client,
        peer,
        echo: echo_server().await,
    }
}

impl Setup {
    /// One echo over a new tunnel connection (the pooled one is dropped).
    async fn reconnect(&self) -> Result<TransportKind, String> {
        self.client.forget(&self.peer);
        echo_once(&self.client, &self.peer, self.echo, b"again").await
    }

    fn resumed(&self) -> u64 {
        self.server_tls
            .metrics()
            .resumption_count(ResumptionResult::Resumed)
    }

    fn count(&self, r: ResumptionResult) -> u64 {
        self.server_tls.metrics().resumption_count(r)
    }
}

async fn reconnects_resume(kind: TransportKind) {
    let s = setup(kind, Duration::from_secs(3600)).await;
    assert_eq!(
        echo_once(&s.client, &s.peer, s.echo, b"first").await,
        Ok(kind)
    );
    assert_eq!(s.resumed(), 0, "a first connection has nothing to resume");
    for n in 1..=3 {
        assert_eq!(s.reconnect().await, Ok(kind));
        assert_eq!(s.resumed(), n, "reconnect {n} over {kind:?} resumed");
    }
    // Every connection, resumed or not, carried the client's identity.
    let ids = s.seen.ids();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|i| i.to_string() == CLIENT_ID), "{ids:?}");
    let exposed = metric(
        &s.registry,
        "ferry_tls_resumptions_total{result=\"resumed\"}",
    );
    assert_eq!(exposed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resume_over_quic() {
    reconnects_resume(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resume_over_tls_tcp() {
    reconnects_resume(TransportKind::H2).await;
}

/// The server's identity material is replaced (rotation, or new trust
/// bundles): tickets issued before are refused, the reconnect is a full
/// handshake, and the one after it resumes again.
async fn server_rotation_ends_sessions(kind: TransportKind) {
    let s = setup(kind, Duration::from_secs(3600)).await;
    echo_once(&s.client, &s.peer, s.echo, b"first")
        .await
        .unwrap();
    s.server_store.set(s.pki.material(SERVER_ID, &[]));
    assert_eq!(s.reconnect().await, Ok(kind));
    assert_eq!(s.count(ResumptionResult::Stale), 1);
    assert_eq!(s.resumed(), 0);
    assert_eq!(s.reconnect().await, Ok(kind));
    assert_eq!(s.resumed(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rotation_ends_sessions_over_quic() {
    server_rotation_ends_sessions(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rotation_ends_sessions_over_tls_tcp() {
    server_rotation_ends_sessions(TransportKind::H2).await;
}

/// The client's identity material is replaced: it drops its sessions and
/// offers no ticket (the server sees none), then resumes the new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rotation_drops_its_sessions() {
    for kind in [TransportKind::Quic, TransportKind::H2] {
        let s = setup(kind, Duration::from_secs(3600)).await;
        echo_once(&s.client, &s.peer, s.echo, b"first")
            .await
            .unwrap();
        s.client_store.set(s.pki.material(CLIENT_ID, &[]));
        assert_eq!(s.reconnect().await, Ok(kind));
        let offered: u64 = ResumptionResult::ALL.iter().map(|r| s.count(*r)).sum();
        assert_eq!(offered, 0, "{kind:?}: the rotated client offered a ticket");
        assert_eq!(s.reconnect().await, Ok(kind));
        assert_eq!(s.resumed(), 1, "{kind:?}");
    }
}

/// A session begun while the client's certificate was valid is refused
/// once that certificate has expired, although its ticket is redeemed.
async fn expired_client_is_refused_on_resumption(kind: TransportKind) {
    let s = setup(kind, Duration::from_secs(2)).await;
    echo_once(&s.client, &s.peer, s.echo, b"first")
        .await
        .unwrap();
    // Certificate times have one-second resolution.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let r = s.reconnect().await;
    assert!(r.is_err(), "{kind:?}: an expired client got through: {r:?}");
    // The client may try a second new connection (with its second
    // ticket): over TLS/TCP its side of a resumed handshake and the HTTP/2
    // preface complete before the server's refusal arrives, and a stream
    // refused because its connection closed is retried once. Either way
    // every redeemed ticket ends in a refusal.
    let resumed = s.resumed();
    assert!(
        (1..=2).contains(&resumed),
        "{kind:?}: {resumed} tickets redeemed"
    );
    let refused = metric(
        &s.registry,
        &format!(
            "ferry_tls_rejections_total{{side=\"server\",reason=\"{}\"}}",
            RejectReason::Expired
        ),
    );
    assert_eq!(refused, resumed, "{kind:?}: each resumption refused");
    assert_eq!(
        s.seen.ids().len(),
        1,
        "{kind:?}: no stream after the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_is_refused_on_resumption_over_quic() {
    expired_client_is_refused_on_resumption(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_is_refused_on_resumption_over_tls_tcp() {
    expired_client_is_refused_on_resumption(TransportKind::H2).await;
}

/// Two peers with one identity behind one IP (two edges on one host), each
/// with its own ticket cache: each is offered only its own tickets, and
/// reconnects to both resume.
async fn peers_on_one_address_keep_their_own_tickets(kind: TransportKind) {
    let a = setup(kind, Duration::from_secs(3600)).await;
    let (b_tls, _) = tls_with_registry(a.pki.store(SERVER_ID, &[]));
    let cfg = TunnelConfig {
        force_transport: Some(kind),
        ..test_config()
    };
    let (b_server, _) = connect_server(b_tls.clone(), cfg).await;
    let b_peer = PeerKey::new(b_server.local_addr(), id(SERVER_ID));
    assert_eq!(a.peer.addr.ip(), b_peer.addr.ip());
    echo_once(&a.client, &a.peer, a.echo, b"to a")
        .await
        .unwrap();
    echo_once(&a.client, &b_peer, a.echo, b"to b")
        .await
        .unwrap();
    let b_count = |r| b_tls.metrics().resumption_count(r);
    assert_eq!(
        b_count(ResumptionResult::Unknown),
        0,
        "b was offered a's ticket"
    );
    assert_eq!(a.reconnect().await, Ok(kind));
    assert_eq!(a.resumed(), 1);
    a.client.forget(&b_peer);
    assert_eq!(
        echo_once(&a.client, &b_peer, a.echo, b"b again").await,
        Ok(kind)
    );
    assert_eq!(b_count(ResumptionResult::Resumed), 1);
    assert_eq!(a.count(ResumptionResult::Unknown), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_one_address_keep_their_own_tickets_over_quic() {
    peers_on_one_address_keep_their_own_tickets(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_one_address_keep_their_own_tickets_over_tls_tcp() {
    peers_on_one_address_keep_their_own_tickets(TransportKind::H2).await;
}
