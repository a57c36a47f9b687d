//! The client side of the tunnel: a pool of connections keyed by (peer
//! address, expected identity), QUIC first with a TLS/TCP race after a head
//! start, the broken-QUIC memory, and opening streams. Callers get the same
//! [`OpenedStream`] whichever transport carried it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use super::broken::{BrokenQuic, QuicStatus};
use super::config::TunnelConfig;
use super::connection::{OpenedStream, PeerConnection};
use super::dial::{dial_h2, dial_quic, establish_h2, QuicFailure};
use super::early_data::{settled, Early};
use super::error::TunnelError;
use super::headers;
use super::liveness::Retire;
use super::quic_endpoint;
use super::stream_io::stream_io;
use super::tcp_tunnel::TcpTunnel;
use crate::identity::SpiffeId;
use crate::metrics::transport::FallbackReason;
use crate::tls::TlsConfigs;
use crate::TransportKind;

/// Where a stream goes: the peer proxy's tunnel address and the identity it
/// must prove, and for a remote endpoint the gateway that relays to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub addr: SocketAddr,
    pub id: SpiffeId,
    pub via: Option<Via>,
}

/// A gateway in front of a remote peer: its tunnel address and identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Via {
    pub addr: SocketAddr,
    pub id: SpiffeId,
}

impl PeerKey {
    pub fn new(addr: SocketAddr, id: SpiffeId) -> Self {
        Self {
            addr,
            id,
            via: None,
        }
    }

    /// A peer reached through a gateway: the connection to it is an inner
    /// session (end-to-end TLS with `id`) inside a stream to the gateway.
    pub fn via(addr: SocketAddr, id: SpiffeId, gateway: Via) -> Self {
        Self {
            addr,
            id,
            via: Some(gateway),
        }
    }
}

#[derive(Default)]
struct Entry {
    conns: Mutex<Vec<PeerConnection>>,
    dialing: tokio::sync::Mutex<()>,
}

struct Inner {
    tls: Arc<TlsConfigs>,
    cfg: TunnelConfig,
    endpoint: quinn::Endpoint,
    pool: DashMap<PeerKey, Arc<Entry>>,
    broken: BrokenQuic,
    shutdown: CancellationToken,
}

impl Inner {
    async fn dial_quic(&self, peer: &PeerKey, early: bool) -> Result<PeerConnection, QuicFailure> {
        dial_quic(
            &self.endpoint,
            &self.tls,
            &self.cfg,
            peer.addr,
            &peer.id,
            early,
        )
        .await
    }
}

/// Opens tunnel streams to peer proxies. Cheap to clone.
#[derive(Clone)]
pub struct TunnelClient {
    inner: Arc<Inner>,
}

impl TunnelClient {
    /// Creates the client and its QUIC endpoint (an ephemeral UDP port).
    pub fn new(tls: Arc<TlsConfigs>, cfg: TunnelConfig) -> std::io::Result<Self> {
        let endpoint = quic_endpoint::client_endpoint("0.0.0.0:0".parse().expect("addr"), &cfg)?;
        let inner = Arc::new(Inner {
            broken: BrokenQuic::new(cfg.quic_broken_base, cfg.quic_broken_max),
            tls,
            cfg,
            endpoint,
            pool: DashMap::new(),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(evict_loop(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    pub fn config(&self) -> &TunnelConfig {
        &self.inner.cfg
    }

    /// Opens a request stream to `peer`. Reuses a pooled connection with a
    /// free stream slot (QUIC preferred), else dials (one dial per peer at a
    /// time). A stream refused because the connection went away (GOAWAY,
    /// close) is retried once on a new connection. `req` is borrowed: each
    /// attempt sends a copy, so a caller can try another peer with it.
    ///
    /// On a QUIC connection still in its 0-RTT handshake, an idempotent
    /// request's head goes out at once (early data) and the stream is
    /// returned once the peer accepted it; otherwise it is opened again on
    /// a full dial (with the TLS/TCP race). Other requests wait for the
    /// handshake before sending.
    pub async fn open(
        &self,
        peer: &PeerKey,
        req: &http::Request<()>,
    ) -> Result<OpenedStream, TunnelError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(TunnelError::Shutdown);
        }
        // A request may travel in 0-RTT data only if its method is
        // idempotent (RFC 9110 §9.2.2): should the connection fail before
        // its handshake completes, the peer may have read it and the caller
        // may send it elsewhere.
        let mut early = self.inner.cfg.early_data && req.method().is_idempotent();
        let mut last = None;
        for _ in 0..2 {
            let (conn, slot) = self.checkout(peer, early).await?;
            let pending = conn.early_unsettled().cloned();
            if let (Some(mut rx), false) = (pending.clone(), early) {
                // Nothing goes out on it before the peer has answered.
                if settled(&mut rx).await != Early::Accepted {
                    last = Some(early_failed(peer));
                    continue;
                }
            }
            match conn.open(clone_request(req), slot).await {
                Ok(s) => match pending.filter(|_| early) {
                    None => return Ok(s),
                    Some(mut rx) => match settled(&mut rx).await {
                        Early::Accepted => return Ok(s),
                        // Opened again on a full dial: refused, the peer
                        // read none of it; otherwise it may have, and the
                        // request is idempotent. Unanswered, QUIC is
                        // remembered broken as when TLS/TCP wins a race.
                        outcome => {
                            if outcome == Early::Unanswered {
                                self.note_broken(peer, &early_failed(peer));
                            }
                            self.inner.tls.metrics().early_replay();
                            tracing::debug!(peer = %peer.id, addr = %peer.addr, ?outcome, "early data not taken; opening the stream again on a full dial");
                            last = Some(early_failed(peer));
                            early = false;
                        }
                    },
                },
                // The request itself was refused (the connection is not
                // marked closed): closing the connection would kill its
                // other streams, and a retry would fail the same way.
                Err(e) if !conn.is_closed() => return Err(e),
                // The connection is going away (GOAWAY) or gone: it is
                // marked closed, so no new stream uses it. Not closed here:
                // streams already on it finish (QUIC: the connection closes
                // when its last stream ends).
                Err(e) => {
                    tracing::debug!(peer = %peer.id, addr = %peer.addr, error = %e, "stream open failed; retrying on a new connection");
                    last = Some(e);
                    // A 0-RTT connection refused before this stream went
                    // out: the retry dials a full handshake.
                    early = false;
                }
            }
        }
        Err(last.unwrap_or(TunnelError::Shutdown))
    }

    /// The connections currently pooled for a peer (for tests and `/config`).
    pub fn pooled(&self, peer: &PeerKey) -> Vec<PeerConnection> {
        self.inner
            .pool
            .get(peer)
            .map(|e| e.conns.lock().expect("pool lock").clone())
            .unwrap_or_default()
    }

    /// Whether QUIC to this address is currently remembered as broken.
    pub fn quic_broken(&self, addr: SocketAddr) -> bool {
        self.inner.broken.status_peek(addr)
    }

    /// Closes every pooled connection and refuses new streams.
    pub fn close(&self) {
        self.inner.shutdown.cancel();
        for e in self.inner.pool.iter() {
            for c in e.conns.lock().expect("pool lock").iter() {
                c.close();
            }
        }
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"client closed");
    }

    /// Drops every pooled connection to `peer` (tests: force a new dial).
    pub fn forget(&self, peer: &PeerKey) {
        if let Some((_, e)) = self.inner.pool.remove(peer) {
            for c in e.conns.lock().expect("pool lock").iter() {
                c.close();
            }
        }
    }

    /// The pool's entry for `peer`, made if missing: a read lock and no
    /// key copy when the peer is pooled already (every request).
    fn pool_entry(&self, peer: &PeerKey) -> Arc<Entry> {
        if let Some(e) = self.inner.pool.get(peer) {
            return e.clone();
        }
        self.inner.pool.entry(peer.clone()).or_default().clone()
    }

    async fn checkout(
        &self,
        peer: &PeerKey,
        early: bool,
    ) -> Result<(PeerConnection, super::tracker::Reservation), TunnelError> {
        let limit = self.inner.cfg.max_concurrent_streams as usize;
        let entry = self.pool_entry(peer);
        if let Some(x) = pick(&entry, limit) {
            return Ok(x);
        }
        let _dial = entry.dialing.lock().await;
        if let Some(x) = pick(&entry, limit) {
            return Ok(x);
        }
        // Boxed: dialing is rare, and its (large) state machine inline would
        // make every `open` future, built and moved per request, that big.
        let conn = Box::pin(self.connect(peer, early)).await?;
        self.watch_quic(peer, &conn);
        let slot = conn
            .state
            .try_reserve(limit)
            .expect("a fresh connection has free slots");
        entry.conns.lock().expect("pool lock").push(conn.clone());
        Ok((conn, slot))
    }

    /// Dials `peer`: QUIC first, TLS/TCP raced after the head start, or
    /// TLS/TCP directly while QUIC is remembered broken. With `early` and a
    /// session ticket for the peer, QUIC is handed out at once, its first
    /// streams in 0-RTT data (so no race: the peer answered QUIC when it
    /// issued the ticket).
    async fn connect(&self, peer: &PeerKey, early: bool) -> Result<PeerConnection, TunnelError> {
        if let Some(via) = &peer.via {
            return self.dial_inner(peer, via).await;
        }
        let inner = &self.inner;
        let metrics = inner.tls.metrics();
        match inner.cfg.force_transport {
            Some(TransportKind::H2) => {
                return dial_h2(&inner.tls, &inner.cfg, peer.addr, &peer.id).await
            }
            Some(TransportKind::Quic) => {
                return inner
                    .dial_quic(peer, early)
                    .await
                    .map_err(|(QuicFailure::Refused(e) | QuicFailure::Unreachable(e))| e)
            }
            None => {}
        }
        match inner.broken.status(peer.addr) {
            QuicStatus::Usable => {}
            status => {
                metrics.fallback(FallbackReason::KnownBroken);
                if status == QuicStatus::ProbeDue {
                    self.spawn_probe(peer.clone());
                }
                return dial_h2(&inner.tls, &inner.cfg, peer.addr, &peer.id).await;
            }
        }
        let quic = {
            let inner = inner.clone();
            let peer = peer.clone();
            Box::pin(async move { inner.dial_quic(&peer, early).await })
        };
        let mut quic = quic;
        tokio::select! {
            r = &mut quic => return self.after_quic_alone(peer, r).await,
            _ = tokio::time::sleep(inner.cfg.head_start) => {}
        }
        metrics.fallback(FallbackReason::HeadStartExpired);
        tracing::debug!(peer = %peer.id, addr = %peer.addr, "QUIC head start expired; racing TLS/TCP");
        let tcp = dial_h2(&inner.tls, &inner.cfg, peer.addr, &peer.id);
        tokio::pin!(tcp);
        tokio::select! {
            r = &mut quic => match r {
                Ok(c) => {
                    inner.broken.mark_working(peer.addr);
                    Ok(c)
                }
                Err(QuicFailure::Refused(e)) => Err(e),
                Err(QuicFailure::Unreachable(e)) => {
                    self.note_broken(peer, &e);
                    tcp.await
                }
            },
            r = &mut tcp => match r {
                Ok(c) => {
                    // TCP won. Remember QUIC as broken, but let the QUIC
                    // attempt finish: if it succeeds, new streams move to it.
                    self.note_broken(peer, &TunnelError::ConnectTimeout { addr: peer.addr, after: inner.cfg.head_start });
                    let me = self.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        if let Ok(q) = quic.await {
                            me.adopt_quic(&peer, q);
                        }
                    });
                    Ok(c)
                }
                // The peer's TCP port refused us: the proxy is down, not
                // UDP blocked. Fail now so the caller can try another
                // endpoint, instead of waiting out the QUIC handshake.
                Err(tcp_err @ TunnelError::Connect { .. }) if is_refused(&tcp_err) => Err(tcp_err),
                Err(tcp_err) => match quic.await {
                    Ok(c) => {
                        inner.broken.mark_working(peer.addr);
                        Ok(c)
                    }
                    Err(QuicFailure::Refused(e)) => Err(e),
                    Err(QuicFailure::Unreachable(_)) => Err(tcp_err),
                },
            },
        }
    }

    /// An inner session to `peer` through the gateway `via`: a `CONNECT`
    /// stream to the gateway (pooled like any stream: one outer connection
    /// carries many inner sessions), then TLS with `peer`'s identity and
    /// HTTP/2 inside it. The gateway sees only ciphertext.
    fn dial_inner<'a>(
        &'a self,
        peer: &'a PeerKey,
        via: &'a Via,
    ) -> Pin<Box<dyn Future<Output = Result<PeerConnection, TunnelError>> + Send + 'a>> {
        Box::pin(async move {
            let gateway = PeerKey::new(via.addr, via.id.clone());
            let carrier = std::sync::OnceLock::new();
            let stream = async {
                let tunnel = self.open_inner(&gateway, peer.addr).await?;
                let _ = carrier.set(tunnel.transport);
                Ok(stream_io(tunnel.send, tunnel.recv))
            };
            let conn = establish_h2(
                stream,
                &self.inner.tls,
                &self.inner.cfg,
                peer.addr,
                &peer.id,
            )
            .await?;
            if let Some(c) = carrier.get() {
                let _ = conn.carrier.set(*c);
            }
            Ok(conn)
        })
    }

    /// Opens a `CONNECT` with `ferry-inner: h2` to `target` through
    /// `through` and waits for its 200: to a gateway (an edge reaching a
    /// remote endpoint), or to the destination edge itself (a gateway
    /// relaying). The stream then carries the end-to-end TLS session.
    pub async fn open_inner(
        &self,
        through: &PeerKey,
        target: SocketAddr,
    ) -> Result<TcpTunnel, TunnelError> {
        let req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(target.to_string())
            .header(headers::FERRY_INNER, headers::INNER_H2)
            .body(())
            .map_err(|e| TunnelError::Open {
                addr: through.addr,
                detail: e.to_string(),
            })?;
        self.begin_connect(through, req).await?.established().await
    }

    async fn after_quic_alone(
        &self,
        peer: &PeerKey,
        r: Result<PeerConnection, QuicFailure>,
    ) -> Result<PeerConnection, TunnelError> {
        match r {
            Ok(c) => {
                self.inner.broken.mark_working(peer.addr);
                Ok(c)
            }
            Err(QuicFailure::Refused(e)) => Err(e),
            Err(QuicFailure::Unreachable(e)) => {
                self.inner
                    .tls
                    .metrics()
                    .fallback(FallbackReason::QuicFailed);
                self.note_broken(peer, &e);
                dial_h2(&self.inner.tls, &self.inner.cfg, peer.addr, &peer.id).await
            }
        }
    }

    fn note_broken(&self, peer: &PeerKey, why: &TunnelError) {
        let backoff = self.inner.broken.mark_broken(peer.addr);
        self.inner
            .tls
            .metrics()
            .set_quic_broken_peers(self.inner.broken.len() as i64);
        tracing::info!(peer = %peer.id, addr = %peer.addr, reason = %why, ?backoff, "QUIC to peer marked broken; using TLS/TCP");
    }

    fn spawn_probe(&self, peer: PeerKey) {
        let me = self.clone();
        tokio::spawn(async move {
            let inner = &me.inner;
            // No 0-RTT: the probe must see the handshake complete.
            match inner.dial_quic(&peer, false).await {
                Ok(c) => {
                    tracing::info!(peer = %peer.id, addr = %peer.addr, "QUIC probe succeeded; new streams move back to QUIC");
                    me.adopt_quic(&peer, c);
                }
                Err(QuicFailure::Refused(e)) | Err(QuicFailure::Unreachable(e)) => {
                    me.note_broken(&peer, &e);
                }
            }
        });
    }

    /// Watches a pooled QUIC connection's path: once it stops answering,
    /// the connection gets no new streams (those on it carry on), so the
    /// next stream dials again: QUIC with its head start, then TLS/TCP
    /// raced (and QUIC remembered broken if TCP wins). A peer that was only
    /// paused gets a new QUIC connection.
    fn watch_quic(&self, peer: &PeerKey, conn: &PeerConnection) {
        let Some(quic) = conn.quic.clone() else {
            return;
        };
        let me = std::sync::Arc::downgrade(&self.inner);
        let (peer, conn) = (peer.clone(), conn.clone());
        let cfg = &self.inner.cfg;
        super::liveness::watch(
            quic,
            conn.state.clone(),
            cfg.quic_unanswered,
            cfg.quic_rtt_rise_hold,
            move |why| {
                let Some(inner) = me.upgrade() else { return };
                if conn.is_closed() {
                    return;
                }
                // Streams already on it carry on; new ones dial again.
                conn.state.mark_closed();
                match why {
                    Retire::Unanswered => {
                        inner.tls.metrics().fallback(FallbackReason::Unanswered);
                        tracing::info!(peer = %peer.id, addr = %peer.addr, "QUIC connection stopped getting answers; new streams dial again");
                    }
                    Retire::RttRose { min, rtt } => {
                        inner.tls.metrics().quic_rtt_replaced();
                        tracing::info!(
                            peer = %peer.id,
                            addr = %peer.addr,
                            min_rtt_ms = min.as_secs_f64() * 1e3,
                            rtt_ms = rtt.as_secs_f64() * 1e3,
                            "QUIC connection's round-trip time rose for good; new streams go to a new connection"
                        );
                    }
                }
            },
        );
    }

    /// Adds a working QUIC connection to the pool; new streams prefer it.
    fn adopt_quic(&self, peer: &PeerKey, conn: PeerConnection) {
        self.watch_quic(peer, &conn);
        self.inner.broken.mark_working(peer.addr);
        self.inner
            .tls
            .metrics()
            .set_quic_broken_peers(self.inner.broken.len() as i64);
        let entry = self.pool_entry(peer);
        entry.conns.lock().expect("pool lock").push(conn);
    }
}

/// A stream whose 0-RTT connection did not complete its handshake with
/// the early data accepted.
fn early_failed(peer: &PeerKey) -> TunnelError {
    TunnelError::Open {
        addr: peer.addr,
        detail: "the 0-RTT connection did not complete its handshake with the early data taken"
            .into(),
    }
}

fn is_refused(e: &TunnelError) -> bool {
    matches!(e, TunnelError::Connect { detail, .. } if detail.contains("refused"))
}

/// Picks a live connection with a free slot, QUIC first; prunes dead ones.
fn pick(entry: &Entry, limit: usize) -> Option<(PeerConnection, super::tracker::Reservation)> {
    let mut conns = entry.conns.lock().expect("pool lock");
    conns.retain(|c| !c.is_closed());
    for kind in [TransportKind::Quic, TransportKind::H2] {
        for c in conns.iter().filter(|c| c.kind == kind) {
            if let Some(slot) = c.state.try_reserve(limit) {
                return Some((c.clone(), slot));
            }
        }
    }
    None
}

fn clone_request(req: &http::Request<()>) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .version(req.version());
    if let Some(h) = b.headers_mut() {
        *h = req.headers().clone();
    }
    b.body(()).expect("parts of a valid request")
}

/// How often the pool looks for idle connections: once a second, or twice
/// per idle timeout when that is shorter, so a connection outlives its
/// timeout by at most half of it.
fn evict_interval(idle: Duration) -> Duration {
    (idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Closes connections that are dead or idle past the pool idle timeout; a
/// QUIC connection that is idle while TLS/TCP ones coexist is kept, since
/// new streams prefer it.
async fn evict_loop(inner: std::sync::Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(i) => evict_interval(i.cfg.pool_idle_timeout),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let idle = inner.cfg.pool_idle_timeout;
        inner.pool.retain(|_, entry| {
            let mut conns = entry.conns.lock().expect("pool lock");
            let has_quic = conns
                .iter()
                .any(|c| c.kind == TransportKind::Quic && !c.is_closed());
            conns.retain(|c| {
                if c.is_closed() {
                    return false;
                }
                let unused = c.in_flight() == 0;
                // TLS/TCP connections drain away once QUIC is back.
                if unused
                    && (c.state.idle_for() > idle || (has_quic && c.kind == TransportKind::H2))
                {
                    c.close();
                    return false;
                }
                true
            });
            // Keep entries someone is using (dialing or holding a clone):
            // removing one would orphan the connection being dialed.
            !conns.is_empty() || std::sync::Arc::strong_count(entry) > 1
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_looks_twice_per_short_idle_timeout_and_once_a_second_otherwise() {
        assert_eq!(
            evict_interval(Duration::from_secs(90)),
            Duration::from_secs(1)
        );
        assert_eq!(
            evict_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            evict_interval(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
        assert_eq!(
            evict_interval(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }
}
