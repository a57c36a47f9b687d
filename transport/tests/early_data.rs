//! QUIC 0-RTT between tunnel peers: a new connection to a peer that issued
//! a ticket carries an idempotent request's head in early data, which the
//! peer serves; after a restart the peer refuses the early data and the
//! stream is opened again on a full dial, served once; a request that is
//! not idempotent waits for the handshake; a peer gone away fails the open
//! at the head start.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_transport::identity::IdentityStore;
use ferry_transport::metrics::{EarlyDataResult, ResumptionResult};
use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::{
    handler, IncomingStream, PeerKey, TunnelClient, TunnelConfig, TunnelServer,
};
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

/// A body larger than a QUIC packet's worth of early data.
const LARGE: usize = 192 << 10;

/// One PUT (idempotent) with `payload` as its body, sent while the
/// response is awaited (as an edge forwards one); returns the response
/// body.
async fn round_trip(
    client: &TunnelClient,
    peer: &PeerKey,
    payload: Bytes,
) -> Result<Bytes, String> {
    round_trip_as(http::Method::PUT, client, peer, payload).await
}

async fn round_trip_as(
    method: http::Method,
    client: &TunnelClient,
    peer: &PeerKey,
    payload: Bytes,
) -> Result<Bytes, String> {
    let req = http::Request::builder()
        .method(method)
        .uri("http://app.test/echo")
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

/// A client dialing QUIC first (TLS/TCP raced after the head start);
/// `early` sends 0-RTT data.
fn client_with(pki: &Pki, early: bool) -> (TunnelClient, Arc<TlsConfigs>) {
    let tls = tls(pki.store(CLIENT_ID, &[]));
    let cfg = TunnelConfig {
        early_data: early,
        ..test_config()
    };
    (TunnelClient::new(tls.clone(), cfg).unwrap(), tls)
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
    let large = body(LARGE, 2);
    let (a, b) = tokio::join!(
        round_trip(client, peer, small.clone()),
        round_trip(client, peer, large.clone())
    );
    assert_eq!(a.map(|b| b.len()), Ok(small.len()));
    assert_eq!(b.as_ref().map(|b| b.len()), Ok(large.len()));
    assert!(b.unwrap() == large, "the large body came back changed");
}

/// A client and a server after one request (a full handshake that left
/// the client tickets), with the client's pool emptied: the next request
/// dials again.
struct Reconnect {
    server: BodyEcho,
    client: TunnelClient,
    client_tls: Arc<TlsConfigs>,
    peer: PeerKey,
}

impl Reconnect {
    async fn new(early: bool) -> Self {
        init();
        let pki = Pki::new("test.local");
        let server = BodyEcho::bind(loopback(), pki.store(SERVER_ID, &[]))
            .await
            .unwrap();
        let (client, client_tls) = client_with(&pki, early);
        let peer = PeerKey::new(server.server.local_addr(), id(SERVER_ID));
        round_trip(&client, &peer, body(10, 0)).await.unwrap();
        assert_eq!(
            early_dials(&client_tls),
            0,
            "a first connection has no ticket for 0-RTT"
        );
        client.forget(&peer);
        Self {
            server,
            client,
            client_tls,
            peer,
        }
    }

    async fn with_early_data() -> Self {
        Self::new(true).await
    }

    fn resumed(&self) -> u64 {
        self.server
            .tls
            .metrics()
            .resumption_count(ResumptionResult::Resumed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_carries_idempotent_requests_in_0rtt() {
    let r = Reconnect::with_early_data().await;
    two_at_once(&r.client, &r.peer).await;
    let m = r.client_tls.metrics();
    assert_eq!(m.early_data_count(EarlyDataResult::Accepted), 1);
    assert_eq!(m.early_data_count(EarlyDataResult::Refused), 0);
    assert_eq!(m.early_replay_count(), 0);
    assert_eq!(r.server.served(), 3, "each request served once");
    let seen = r.server.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s == CLIENT_ID), "{seen:?}");
    assert_eq!(r.resumed(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_early_data_is_opened_again_on_a_full_dial() {
    let r = Reconnect::with_early_data().await;
    // The peer restarts on the same port: its session cache is empty, so
    // the client's tickets are unknown and its early data refused.
    let addr = r.peer.addr;
    let store = r.server.tls.store().clone();
    r.server.server.shutdown(Duration::from_millis(200)).await;
    drop(r.server);
    let mut again = None;
    for _ in 0..50 {
        match BodyEcho::bind(addr, store.clone()).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            // The old sockets close as their tasks end.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let again = again.expect("the port is free again");

    let large = body(LARGE, 2);
    let got = round_trip(&r.client, &r.peer, large.clone()).await.unwrap();
    assert!(got == large, "the body came back changed");
    let m = r.client_tls.metrics();
    assert_eq!(m.early_data_count(EarlyDataResult::Refused), 1);
    assert_eq!(m.early_data_count(EarlyDataResult::Accepted), 0);
    // Opened again, unless the refusal closed the connection before the
    // stream went out on it (the open is then retried on a full dial too).
    assert!(m.early_replay_count() <= 1);
    assert_eq!(again.served(), 1, "served once");

    // The new connection's tickets work: the next reconnect's early data
    // is accepted.
    r.client.forget(&r.peer);
    round_trip(&r.client, &r.peer, body(100, 3)).await.unwrap();
    assert_eq!(m.early_data_count(EarlyDataResult::Accepted), 1);
    assert_eq!(again.served(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_early_data_a_reconnect_resumes_only() {
    let r = Reconnect::new(false).await;
    round_trip(&r.client, &r.peer, body(10, 1)).await.unwrap();
    assert_eq!(early_dials(&r.client_tls), 0);
    assert_eq!(r.resumed(), 1, "the session still resumes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_idempotent_waits_for_the_handshake() {
    let r = Reconnect::with_early_data().await;
    let got = round_trip_as(http::Method::POST, &r.client, &r.peer, body(10, 1)).await;
    assert_eq!(got.map(|b| b.len()), Ok(10));
    assert_eq!(
        early_dials(&r.client_tls),
        0,
        "a POST dials a full handshake"
    );
    assert_eq!(r.resumed(), 1, "which still resumes");
}

/// A peer that went away: nothing answers the 0-RTT dial, which is given
/// up after the head start; the request is opened again on a full dial,
/// whose TLS/TCP race finds the port refused: the open fails (the caller
/// may try another peer) long before the handshake timeout, and QUIC to
/// the peer is remembered broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gone_away_fails_the_open_at_the_head_start() {
    let r = Reconnect::with_early_data().await;
    r.server.server.shutdown(Duration::from_millis(100)).await;
    drop(r.server);

    let started = std::time::Instant::now();
    let got = round_trip(&r.client, &r.peer, body(10, 1)).await;
    assert!(
        matches!(&got, Err(e) if e.starts_with("open:") && e.contains("refused")),
        "{got:?}"
    );
    assert!(
        started.elapsed() < test_config().handshake_timeout,
        "failed after {:?}, not at the head start",
        started.elapsed()
    );
    let m = r.client_tls.metrics();
    assert_eq!(m.early_data_count(EarlyDataResult::Failed), 1);
    assert_eq!(m.early_replay_count(), 1, "opened again on a full dial");
    assert!(r.client.quic_broken(r.peer.addr));
}
