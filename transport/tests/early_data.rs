//! QUIC 0-RTT between tunnel peers: a new connection to a peer that issued
//! a ticket carries its first requests in early data, which the peer
//! serves; after a restart the peer refuses the early data, and every
//! stream sent in it goes again on a new connection, body and all, served
//! once.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_transport::identity::IdentityStore;
use ferry_transport::metrics::{EarlyDataResult, ResumptionResult};
use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::early_data::REPLAY_BUFFER;
use ferry_transport::tunnel::{
    handler, IncomingStream, PeerKey, TunnelClient, TunnelConfig, TunnelServer,
};
use ferry_transport::TransportKind;
use support::*;

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

/// A server that answers each request with its whole body, counting the
/// requests it served and the identities that sent them.
struct BodyEcho {
    server: TunnelServer,
    tls: Arc<TlsConfigs>,
    served: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl BodyEcho {
    async fn bind(addr: SocketAddr, store: Arc<IdentityStore>) -> std::io::Result<Self> {
        let tls = tls(store);
        let served = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, ids) = (served.clone(), seen.clone());
        let server = TunnelServer::bind(
            addr,
            tls.clone(),
            test_config(),
            handler(move |mut s: IncomingStream| {
                let (n, ids) = (n.clone(), ids.clone());
                async move {
                    let mut got = Vec::new();
                    while let Ok(Some(b)) = s.body.data().await {
                        got.extend_from_slice(&b);
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    ids.lock().unwrap().push(s.peer.id.to_string());
                    let ok = http::Response::builder().status(200).body(()).unwrap();
                    if let Ok(mut send) = s.responder.send_response(ok).await {
                        let _ = send.send_last(Bytes::from(got)).await;
                    }
                }
            }),
        )
        .await?;
        Ok(Self {
            server,
            tls,
            served,
            seen,
        })
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

fn body(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// One request with `payload` as its body, sent while the response is
/// awaited (as an edge forwards one); returns the response body.
async fn round_trip(
    client: &TunnelClient,
    peer: &PeerKey,
    payload: Bytes,
) -> Result<Bytes, String> {
    let req = http::Request::post("http://app.test/echo")
        .body(())
        .unwrap();
    let opened = client
        .open(peer, &req)
        .await
        .map_err(|e| format!("open: {e}"))?;
    let mut send = opened.send;
    let sending = async move {
        for chunk in payload.chunks(16 << 10) {
            send.send_data(Bytes::copy_from_slice(chunk))
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        send.finish().await.map_err(|e| format!("finish: {e}"))
    };
    let receiving = async {
        let (head, mut recv) = opened
            .response
            .response()
            .await
            .map_err(|e| format!("response: {e}"))?;
        if head.status() != 200 {
            return Err(format!("status {}", head.status()));
        }
        let mut got = Vec::new();
        while let Some(b) = recv.data().await.map_err(|e| format!("recv: {e}"))? {
            got.extend_from_slice(&b);
        }
        Ok(Bytes::from(got))
    };
    let within = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::try_join!(sending, receiving)
    });
    match within.await {
        Ok(r) => r.map(|(_, got)| got),
        Err(_) => Err("request timed out".into()),
    }
}

/// A QUIC-only client; `early` sends 0-RTT data.
fn quic_client_with(
    pki: &Pki,
    early: bool,
    handshake_timeout: Duration,
) -> (TunnelClient, Arc<TlsConfigs>) {
    let tls = tls(pki.store(CLIENT_ID, &[]));
    let cfg = TunnelConfig {
        force_transport: Some(TransportKind::Quic),
        early_data: early,
        handshake_timeout,
        ..test_config()
    };
    (TunnelClient::new(tls.clone(), cfg).unwrap(), tls)
}

fn quic_client(pki: &Pki) -> (TunnelClient, Arc<TlsConfigs>) {
    quic_client_with(pki, true, test_config().handshake_timeout)
}

/// 0-RTT dials, whatever became of them.
fn early_dials(tls: &TlsConfigs) -> u64 {
    let m = tls.metrics();
    EarlyDataResult::ALL
        .iter()
        .map(|r| m.early_data_count(*r))
        .sum()
}

/// A small request and one larger than the replay buffer, at once.
async fn two_at_once(client: &TunnelClient, peer: &PeerKey) {
    let small = body(1000, 1);
    let large = body(REPLAY_BUFFER * 3, 2);
    let (a, b) = tokio::join!(
        round_trip(client, peer, small.clone()),
        round_trip(client, peer, large.clone())
    );
    assert_eq!(a.map(|b| b.len()), Ok(small.len()));
    assert_eq!(b.as_ref().map(|b| b.len()), Ok(large.len()));
    assert!(b.unwrap() == large, "the large body came back changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_carries_its_first_requests_in_0rtt() {
    init();
    let pki = Pki::new("test.local");
    let server = BodyEcho::bind(loopback(), pki.store(SERVER_ID, &[]))
        .await
        .unwrap();
    let (client, client_tls) = quic_client(&pki);
    let peer = PeerKey::new(server.server.local_addr(), id(SERVER_ID));
    let m = client_tls.metrics();

    round_trip(&client, &peer, body(10, 0)).await.unwrap();
    assert_eq!(
        early_dials(&client_tls),
        0,
        "a first connection has no ticket for 0-RTT"
    );

    client.forget(&peer);
    two_at_once(&client, &peer).await;
    assert_eq!(m.early_data_count(EarlyDataResult::Accepted), 1);
    assert_eq!(m.early_data_count(EarlyDataResult::Refused), 0);
    assert_eq!(m.early_replay_count(), 0);
    assert_eq!(server.served(), 3, "each request served once");
    let seen = server.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s == CLIENT_ID), "{seen:?}");
    let resumed = server
        .tls
        .metrics()
        .resumption_count(ResumptionResult::Resumed);
    assert_eq!(resumed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_early_data_is_sent_again_once_on_a_new_connection() {
    init();
    let pki = Pki::new("test.local");
    let store = pki.store(SERVER_ID, &[]);
    let first = BodyEcho::bind(loopback(), store.clone()).await.unwrap();
    let addr = first.server.local_addr();
    let (client, client_tls) = quic_client(&pki);
    let peer = PeerKey::new(addr, id(SERVER_ID));
    round_trip(&client, &peer, body(10, 0)).await.unwrap();

    // The peer restarts on the same port: its session cache is empty, so
    // the client's tickets are unknown and its early data refused.
    first.server.shutdown(Duration::from_millis(200)).await;
    drop(first);
    client.forget(&peer);
    let mut again = None;
    for _ in 0..50 {
        match BodyEcho::bind(addr, store.clone()).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let again = again.expect("the port is free again");

    // Larger than the replay buffer: the sender waits for the handshake,
    // then goes on on the new connection.
    let large = body(REPLAY_BUFFER * 3, 2);
    let got = round_trip(&client, &peer, large.clone()).await.unwrap();
    assert!(got == large, "the body came back changed");
    let m = client_tls.metrics();
    assert_eq!(m.early_data_count(EarlyDataResult::Refused), 1);
    assert_eq!(m.early_data_count(EarlyDataResult::Accepted), 0);
    // Sent again, unless the refusal closed the connection before the
    // stream went out on it (the open is then retried on a full dial).
    assert!(m.early_replay_count() <= 1);
    assert_eq!(again.served(), 1, "served once");

    // The new connection's tickets work: the next reconnect's early data
    // is accepted.
    client.forget(&peer);
    round_trip(&client, &peer, body(100, 3)).await.unwrap();
    assert_eq!(m.early_data_count(EarlyDataResult::Accepted), 1);
    assert_eq!(again.served(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_early_data_a_reconnect_resumes_only() {
    init();
    let pki = Pki::new("test.local");
    let server = BodyEcho::bind(loopback(), pki.store(SERVER_ID, &[]))
        .await
        .unwrap();
    let (client, client_tls) = quic_client_with(&pki, false, test_config().handshake_timeout);
    let peer = PeerKey::new(server.server.local_addr(), id(SERVER_ID));
    round_trip(&client, &peer, body(10, 0)).await.unwrap();
    client.forget(&peer);
    round_trip(&client, &peer, body(10, 1)).await.unwrap();
    assert_eq!(early_dials(&client_tls), 0);
    let resumed = server
        .tls
        .metrics()
        .resumption_count(ResumptionResult::Resumed);
    assert_eq!(resumed, 1, "the session still resumes");
}

/// A peer that went away: a 0-RTT dial cannot learn it from the handshake
/// (nothing answers), so its TCP port's refusal after the head start ends
/// the connection; the request fails as on a lost connection, not sent
/// again, long before the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gone_away_fails_early_streams_after_the_head_start() {
    init();
    let pki = Pki::new("test.local");
    let server = BodyEcho::bind(loopback(), pki.store(SERVER_ID, &[]))
        .await
        .unwrap();
    let (client, client_tls) = quic_client_with(&pki, true, Duration::from_secs(60));
    let peer = PeerKey::new(server.server.local_addr(), id(SERVER_ID));
    round_trip(&client, &peer, body(10, 0)).await.unwrap();
    server.server.shutdown(Duration::from_millis(100)).await;
    drop(server);
    client.forget(&peer);

    let started = std::time::Instant::now();
    let r = round_trip(&client, &peer, body(10, 1)).await;
    assert!(
        matches!(&r, Err(e) if e.contains("before its handshake completed")),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed after {:?}, not at the head start",
        started.elapsed()
    );
    let m = client_tls.metrics();
    assert_eq!(m.early_data_count(EarlyDataResult::Failed), 1);
    assert_eq!(m.early_replay_count(), 0, "nothing is sent again");
}
