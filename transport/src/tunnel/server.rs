//! The tunnel port: one port number serving QUIC (UDP, ALPN `h3`) and
//! TLS 1.3 over TCP (ALPN `h2`). Every accepted stream, from either
//! transport, reaches the same handler as an [`IncomingStream`]. Shutdown is
//! graceful: stop accepting, GOAWAY to every peer, let in-flight streams
//! finish within a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::body::{RecvBody, RecvInner};
use super::config::TunnelConfig;
use super::dial::quic_peer_chain;
use super::headers;
use super::incoming::{IncomingStream, PeerInfo, Responder, ResponderInner};
use super::quic_endpoint;
use super::stream_allowance::StreamAllowance;
use super::stream_io::stream_io;
use super::tracker::{Reservation, StreamTicket};
use crate::identity::SpiffeId;
use crate::metrics::transport::{HandshakeResult, Side, TransportMetrics};
use crate::tls::{current_peer_id, RejectReason, TlsConfigs, ALPN_H2, ALPN_H3};
use crate::TransportKind;

/// What the server does with each accepted stream.
pub type StreamHandler =
    Arc<dyn Fn(IncomingStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Wraps an async closure as a [`StreamHandler`].
pub fn handler<F, Fut>(f: F) -> StreamHandler
where
    F: Fn(IncomingStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |s| Box::pin(f(s)))
}

struct Shared {
    tls: Arc<TlsConfigs>,
    cfg: TunnelConfig,
    /// What each QUIC connection is accepted with, before its path-MTU
    /// bound is set for the peer's route.
    quic_base: quinn::ServerConfig,
    handler: StreamHandler,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    conn_limit: Arc<Semaphore>,
}

/// A running tunnel port.
pub struct TunnelServer {
    local_addr: SocketAddr,
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
}

impl TunnelServer {
    /// Binds UDP and TCP on the same port (`addr`'s port may be 0: one free
    /// port is picked for both) and starts serving.
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<TlsConfigs>,
        cfg: TunnelConfig,
        handler: StreamHandler,
    ) -> std::io::Result<Self> {
        let quic_base = quic_endpoint::server_config(tls.server(ALPN_H3), &cfg)?;
        let (tcp, endpoint) = bind_pair(addr, &quic_base, &cfg).await?;
        let local_addr = tcp.local_addr()?;
        let shared = Arc::new(Shared {
            conn_limit: Arc::new(Semaphore::new(cfg.max_connections.max(1))),
            quic_base,
            tls,
            cfg,
            handler,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        tokio::spawn(accept_tcp(tcp, shared.clone()));
        tokio::spawn(accept_quic(endpoint.clone(), shared.clone()));
        tracing::info!(%local_addr, "tunnel port listening (quic + h2)");
        Ok(Self {
            local_addr,
            endpoint,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, sends GOAWAY on every connection and waits up to
    /// `grace` for in-flight streams; then closes whatever is left.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.shutdown.cancel();
        // New QUIC handshakes are refused at once (not left unanswered), so
        // callers move on to another endpoint without waiting.
        self.endpoint.set_server_config(None);
        self.shared.tasks.close();
        if tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "grace period over; closing remaining tunnel connections"
            );
        }
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
    }

    /// Number of connections and stream tasks still running.
    pub fn active_tasks(&self) -> usize {
        self.shared.tasks.len()
    }
}

impl Drop for TunnelServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.endpoint.close(quinn::VarInt::from_u32(0), b"closed");
    }
}

async fn bind_pair(
    addr: SocketAddr,
    quic: &quinn::ServerConfig,
    cfg: &TunnelConfig,
) -> std::io::Result<(TcpListener, quinn::Endpoint)> {
    let mut last_err = None;
    for _ in 0..16 {
        let tcp = crate::listener::bind(addr)?;
        let mut udp_addr = addr;
        udp_addr.set_port(tcp.local_addr()?.port());
        match quic_endpoint::server_endpoint_with(udp_addr, quic.clone(), cfg) {
            Ok(ep) => return Ok((tcp, ep)),
            // With port 0 the UDP twin of the TCP port may be taken: try again.
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("could not bind a UDP+TCP port pair")))
}

async fn accept_quic(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => return },
            _ = shared.shutdown.cancelled() => return,
        };
        let Ok(permit) = shared.conn_limit.clone().try_acquire_owned() else {
            tracing::warn!(peer = %incoming.remote_address(), "connection limit reached; refusing QUIC connection");
            incoming.refuse();
            continue;
        };
        let s = shared.clone();
        shared.tasks.spawn(async move {
            let _permit = permit;
            serve_quic_conn(incoming, s).await;
        });
    }
}

async fn serve_quic_conn(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let metrics = shared.tls.metrics().clone();
    let config = quic_endpoint::server_config_for(&shared.quic_base, &shared.cfg, remote);
    let conn = match tokio::time::timeout(
        shared.cfg.handshake_timeout,
        accept_quic_handshake(incoming, config),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let no_certificate = matches!(
                &e,
                quinn::ConnectionError::TransportError(t)
                    if t.code == quinn::TransportErrorCode::crypto(
                        u8::from(rustls::AlertDescription::CertificateRequired)
                    )
            );
            handshake_failed(&metrics, TransportKind::Quic, remote, no_certificate);
            tracing::debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => {
            metrics.handshake(TransportKind::Quic, Side::Server, HandshakeResult::Timeout);
            tracing::debug!(%remote, "QUIC handshake timed out");
            return;
        }
    };
    let chain = quic_peer_chain(&conn);
    let id = match current_peer_id(Some(chain.as_slice()).filter(|c| !c.is_empty())) {
        Ok(id) => id,
        Err(r) => {
            refused_after_handshake(&metrics, TransportKind::Quic, remote, &r);
            conn.close(quinn::VarInt::from_u32(0x100), b"peer identity refused");
            return;
        }
    };
    metrics.handshake(TransportKind::Quic, Side::Server, HandshakeResult::Ok);
    let _open = metrics.quic_connection_opened(&conn, Side::Server, &id);
    let peer = PeerInfo {
        id,
        addr: remote,
        transport: TransportKind::Quic,
        via: None,
    };
    let span = tracing::info_span!("tunnel_conn", peer.id = %peer.id, peer.addr = %remote, transport = "quic");
    async move {
        let built = h3::server::builder()
            .max_field_section_size(u64::from(shared.cfg.max_header_bytes))
            .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
            .await;
        let mut h3conn = match built {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/3 setup failed");
                return;
            }
        };
        let mut draining = false;
        // This connection's streams. HTTP/3 `accept` ends only when the
        // client goes away, and clients keep an idle connection after our
        // GOAWAY: once draining and idle, the server closes it itself, after
        // a linger for requests sent before the GOAWAY arrived.
        let streams = TaskTracker::new();
        let mut allowance = StreamAllowance::new(shared.cfg.max_concurrent_streams);
        let mut linger: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                r = h3conn.accept() => match r {
                    Ok(Some(resolver)) => {
                        linger = None;
                        let s = shared.clone();
                        let peer = peer.clone();
                        // Boxed once here: the wrappers (span, trackers,
                        // the task cell) then move a pointer, not the
                        // stream's whole state machine.
                        shared.tasks.spawn(streams.track_future(Box::pin(async move {
                            let header_timeout = s.cfg.request_header_timeout;
                            match tokio::time::timeout(header_timeout, resolver.resolve_request()).await {
                                Ok(Ok((req, stream))) => {
                                    let metric = s.tls.metrics().stream_opened(TransportKind::Quic, Side::Server);
                                    let ticket = StreamTicket::new(Reservation::none(), metric);
                                    let (send, recv) = stream.split();
                                    let incoming = IncomingStream {
                                        request: req,
                                        peer,
                                        body: RecvBody::new(RecvInner::QuicServer(recv), ticket.clone()),
                                        responder: Responder::new(ResponderInner::Quic(Box::new(send)), ticket),
                                    };
                                    dispatch(s, incoming).await;
                                }
                                Ok(Err(e)) => tracing::debug!(error = %e, "bad HTTP/3 request refused"),
                                Err(_) => tracing::debug!("HTTP/3 request headers timed out"),
                            }
                        }.in_current_span())));
                        if allowance.growing() {
                            let window = conn.rtt() * 2 + shared.cfg.ack_delay;
                            let now = std::time::Instant::now();
                            if let Some(n) = allowance.on_stream(now, window, streams.len()) {
                                conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(n));
                                tracing::debug!(allowance = n, "stream allowance raised");
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTP/3 connection ended");
                        break;
                    }
                },
                _ = shared.shutdown.cancelled(), if !draining => {
                    draining = true;
                    let _ = h3conn.shutdown(100).await;
                    streams.close();
                }
                _ = streams.wait(), if draining && linger.is_none() => {
                    let wait = (conn.rtt() * 3).max(Duration::from_millis(100));
                    linger = Some(Box::pin(tokio::time::sleep(wait)));
                }
                _ = async { linger.as_mut().expect("guarded").await }, if linger.is_some() => {
                    if streams.is_empty() {
                        conn.close(quinn::VarInt::from_u32(0x100), b"shutdown");
                        break;
                    }
                    linger = None;
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// A QUIC connection (accepted with `config`) whose client is known: a
/// resumed session (its ticket names the client's chain) is served from
/// the client's first flight, so requests it sent in 0-RTT data are
/// answered a round trip sooner; a full handshake is served once it
/// completes (the client's certificate arrives last). 1-RTT streams are
/// never read before the handshake completes (RFC 9001 §5.7), and 0-RTT
/// data is only accepted with a single-use ticket, so what is served early
/// comes from the ticket's client, once.
async fn accept_quic_handshake(
    incoming: quinn::Incoming,
    config: Arc<quinn::ServerConfig>,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut connecting = incoming.accept_with(config)?;
    // The whole ClientHello (it may span several packets) has been read
    // once the handshake data is ready: a resumed session's client is
    // known from then on.
    if connecting.handshake_data().await.is_err() {
        return connecting.await;
    }
    let (conn, done) = match connecting.into_0rtt() {
        Ok(pair) => pair,
        // Never for an accepting endpoint; handled all the same.
        Err(connecting) => return connecting.await,
    };
    if !quic_peer_chain(&conn).is_empty() {
        return Ok(conn);
    }
    done.await;
    match conn.close_reason() {
        Some(e) => Err(e),
        None => Ok(conn),
    }
}

/// Counts a failed server-side handshake. A client that sent no certificate
/// never reaches the verifier (rustls refuses it with a
/// `certificate_required` alert first), so that refusal is counted here.
fn handshake_failed(
    metrics: &TransportMetrics,
    kind: TransportKind,
    remote: SocketAddr,
    no_certificate: bool,
) {
    if no_certificate {
        tracing::warn!(%remote, reason = %RejectReason::NoCertificate, "refused client without a certificate");
        metrics.tls_rejected(Side::Server, RejectReason::NoCertificate);
        metrics.handshake(kind, Side::Server, HandshakeResult::Rejected);
    } else {
        metrics.handshake(kind, Side::Server, HandshakeResult::Error);
    }
}

/// A handshake that completed with a peer whose chain does not hold now
/// (a resumed session whose certificate has expired since): refused like a
/// certificate the verifier turned down.
fn refused_after_handshake(
    metrics: &TransportMetrics,
    kind: TransportKind,
    remote: SocketAddr,
    r: &crate::tls::Rejection,
) {
    tracing::warn!(%remote, reason = %r.reason, detail = %r.detail, "refused client certificate");
    metrics.tls_rejected(Side::Server, r.reason);
    metrics.handshake(kind, Side::Server, HandshakeResult::Rejected);
}

async fn accept_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed on the tunnel TCP port");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
        };
        let Ok(permit) = shared.conn_limit.clone().try_acquire_owned() else {
            tracing::warn!(peer = %remote, "connection limit reached; refusing TCP connection");
            continue;
        };
        let s = shared.clone();
        shared.tasks.spawn(async move {
            let _permit = permit;
            serve_tcp_conn(tcp, remote, s).await;
        });
    }
}

async fn serve_tcp_conn(tcp: TcpStream, remote: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    serve_tls_conn(tcp, remote, None, TransportKind::H2, shared).await;
}

/// Hands a stream to the handler, or, for an inner session on a port that
/// terminates them, serves the session.
fn dispatch(
    shared: Arc<Shared>,
    stream: IncomingStream,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let inner = stream
        .request
        .headers()
        .get(headers::FERRY_INNER)
        .is_some_and(|v| v == headers::INNER_H2);
    if !(inner && shared.cfg.inner_sessions) {
        // The handler's own box: no second one around it per stream.
        return (shared.handler)(stream);
    }
    // Boxed as `dyn Send`: an inner session serves streams through here.
    Box::pin(async move {
        if stream.peer.via.is_some() {
            let _ = stream
                .responder
                .send_simple(
                    http::StatusCode::BAD_REQUEST,
                    Some("malformed"),
                    "an inner session inside an inner session\n",
                )
                .await;
            return;
        }
        let ok = http::Response::builder()
            .status(http::StatusCode::OK)
            .body(())
            .expect("static response");
        let gateway = stream.peer.clone();
        let carrier = gateway.transport;
        let Ok(send) = stream.responder.send_response(ok).await else {
            return;
        };
        let io = stream_io(send, stream.body);
        tracing::debug!(gateway = %gateway.id, "inner session relayed by a gateway");
        serve_tls_conn(io, gateway.addr, Some(gateway.id), carrier, shared).await;
    })
}

/// TLS then HTTP/2 on `io`: a TCP connection to the tunnel port, or (with
/// `via`, the relaying gateway) an inner session inside a tunnel stream.
/// `wire` is the transport the peer's bytes arrive on (for an inner
/// session, that of the stream from the gateway): what streams report.
async fn serve_tls_conn<IO>(
    io: IO,
    remote: SocketAddr,
    via: Option<SpiffeId>,
    wire: TransportKind,
    shared: Arc<Shared>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let metrics = shared.tls.metrics().clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.server(ALPN_H2));
    let tls = match tokio::time::timeout(shared.cfg.handshake_timeout, acceptor.accept(io)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let no_certificate = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| matches!(e, rustls::Error::NoCertificatesPresented));
            handshake_failed(&metrics, TransportKind::H2, remote, no_certificate);
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics.handshake(TransportKind::H2, Side::Server, HandshakeResult::Timeout);
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ALPN_H2) {
        metrics.handshake(TransportKind::H2, Side::Server, HandshakeResult::Rejected);
        tracing::debug!(%remote, "TLS client did not negotiate ALPN h2; closing");
        return;
    }
    let id = match current_peer_id(session.peer_certificates()) {
        Ok(id) => id,
        Err(r) => {
            refused_after_handshake(&metrics, TransportKind::H2, remote, &r);
            return;
        }
    };
    metrics.handshake(TransportKind::H2, Side::Server, HandshakeResult::Ok);
    let _open = metrics.connection_opened(TransportKind::H2, Side::Server);
    let span = tracing::info_span!("tunnel_conn", peer.id = %id, peer.addr = %remote, transport = wire.as_str(), via = ?via.as_ref().map(|v| v.to_string()));
    let peer = PeerInfo {
        id,
        addr: remote,
        transport: wire,
        via,
    };
    async move {
        let cfg = &shared.cfg;
        let mut conn = match h2::server::Builder::new()
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .initial_window_size(cfg.stream_window)
            .initial_connection_window_size(cfg.connection_window)
            .max_frame_size(256 << 10)
            .max_header_list_size(cfg.max_header_bytes)
            .max_send_buffer_size(256 << 10)
            .handshake::<_, Bytes>(tls)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/2 preface failed");
                return;
            }
        };
        let mut draining = false;
        loop {
            tokio::select! {
                r = conn.accept() => match r {
                    Some(Ok((req, respond))) => {
                        let s = shared.clone();
                        let peer = peer.clone();
                        shared.tasks.spawn(Box::pin(async move {
                            let metric = s.tls.metrics().stream_opened(TransportKind::H2, Side::Server);
                            let ticket = StreamTicket::new(Reservation::none(), metric);
                            let (parts, body) = req.into_parts();
                            let incoming = IncomingStream {
                                request: http::Request::from_parts(parts, ()),
                                peer,
                                body: RecvBody::new(RecvInner::H2(body), ticket.clone()),
                                responder: Responder::new(ResponderInner::H2(respond), ticket),
                            };
                            dispatch(s, incoming).await;
                        }.in_current_span()));
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "HTTP/2 stream or connection error");
                        if e.is_io() || e.is_go_away() { break; }
                        if !e.is_reset() { break; }
                    }
                    None => break,
                },
                _ = shared.shutdown.cancelled(), if !draining => {
                    draining = true;
                    conn.graceful_shutdown();
                }
            }
        }
    }
    .instrument(span)
    .await;
}
