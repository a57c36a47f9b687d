//! Dialing a peer proxy: a QUIC + HTTP/3 connection, or TLS 1.3 over TCP +
//! HTTP/2. Both verify the peer's SPIFFE ID and time out.

use std::net::SocketAddr;

use bytes::Bytes;

use super::config::TunnelConfig;
use super::connection::{ConnParts, PeerConnection, Sender};
use super::early_data::{self, Early};
use super::error::TunnelError;
use super::quic_endpoint;
use super::tracker::ConnState;
use crate::identity::SpiffeId;
use crate::metrics::transport::{HandshakeResult, Side, TransportMetrics};
use crate::tls::{check_chain_current, TlsConfigs, ALPN_H2, ALPN_H3};
use crate::TransportKind;

/// Does this QUIC failure mean "UDP does not get through" (fall back to TCP)
/// rather than "the peer refused us" (TCP would fail the same way)?
#[derive(Debug, Clone)]
pub(crate) enum QuicFailure {
    Unreachable(TunnelError),
    Refused(TunnelError),
}

/// Dials QUIC. With `early`, and a session ticket for this peer, the
/// connection is handed out at once and its first streams travel in 0-RTT
/// data ([`super::early_data`]); otherwise once the handshake completes.
pub(crate) async fn dial_quic(
    endpoint: &quinn::Endpoint,
    tls: &TlsConfigs,
    cfg: &TunnelConfig,
    addr: SocketAddr,
    id: &SpiffeId,
    early: bool,
) -> Result<PeerConnection, QuicFailure> {
    let metrics = tls.metrics().clone();
    let client_cfg = quic_endpoint::client_config_to(tls.client(id, ALPN_H3), cfg, addr)
        .map_err(|e| QuicFailure::Refused(TunnelError::Connect { addr, detail: e }))?;
    let server_name = crate::tls::session_name(addr);
    let connecting = endpoint
        .connect_with(client_cfg, addr, &server_name)
        .map_err(|e| {
            QuicFailure::Unreachable(TunnelError::Connect {
                addr,
                detail: e.to_string(),
            })
        })?;
    let connecting = match early {
        true => match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                let state = ConnState::new();
                let judge = judge_early(metrics.clone(), addr);
                let watch = early_data::watch_handshake(
                    conn.clone(),
                    accepted,
                    cfg.head_start,
                    state.clone(),
                    metrics.clone(),
                    judge,
                );
                let early = quic_peer(conn.clone(), state, Some(watch), metrics, cfg, addr, id);
                return match early.await {
                    Ok(c) => Ok(c),
                    // HTTP/3 could not be set up before the peer refused
                    // the early data (its control stream went with it):
                    // a full dial instead.
                    Err(_) => {
                        conn.close(quinn::VarInt::from_u32(0x100), b"early data refused");
                        Box::pin(dial_quic(endpoint, tls, cfg, addr, id, false)).await
                    }
                };
            }
            // No ticket for this peer: a full handshake.
            Err(connecting) => connecting,
        },
        false => connecting,
    };
    let conn = match tokio::time::timeout(cfg.handshake_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let refused = is_refusal(&e);
            let err = TunnelError::Handshake {
                addr,
                detail: e.to_string(),
            };
            if refused {
                metrics.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Rejected);
                return Err(QuicFailure::Refused(err));
            }
            metrics.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Error);
            return Err(QuicFailure::Unreachable(err));
        }
        Err(_) => {
            metrics.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Timeout);
            return Err(QuicFailure::Unreachable(TunnelError::ConnectTimeout {
                addr,
                after: cfg.handshake_timeout,
            }));
        }
    };
    if let Err(e) = current_chain(&metrics, addr, &quic_peer_chain(&conn)) {
        metrics.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Rejected);
        conn.close(quinn::VarInt::from_u32(0x100), b"peer certificate refused");
        return Err(QuicFailure::Refused(e));
    }
    let state = ConnState::new();
    quic_peer(conn, state, None, metrics, cfg, addr, id).await
}

/// The chain a QUIC peer presented (or its resumed session carries).
pub(crate) fn quic_peer_chain(
    conn: &quinn::Connection,
) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    conn.peer_identity()
        .and_then(|b| {
            b.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .map(|b| *b)
        .unwrap_or_default()
}

/// What a 0-RTT dial's handshake came to, counted like a full dial's.
fn judge_early(
    metrics: TransportMetrics,
    addr: SocketAddr,
) -> impl FnOnce(&quinn::Connection, Option<bool>) -> Early + Send + 'static {
    move |conn, waited| {
        let count = |r| metrics.handshake(TransportKind::Quic, Side::Client, r);
        let Some(accepted) = waited else {
            count(HandshakeResult::Timeout);
            return Early::Unanswered;
        };
        match (conn.close_reason(), accepted) {
            // HTTP/3 closes the connection itself once the peer refused the
            // early data (its control stream was discarded with it).
            (Some(quinn::ConnectionError::LocallyClosed), false) => {
                count(HandshakeResult::Ok);
                return Early::Refused;
            }
            (None, _) => {}
            (Some(reason), _) => {
                count(match is_refusal(&reason) {
                    true => HandshakeResult::Rejected,
                    false => HandshakeResult::Error,
                });
                return Early::Failed;
            }
        }
        if current_chain(&metrics, addr, &quic_peer_chain(conn)).is_err() {
            count(HandshakeResult::Rejected);
            conn.close(quinn::VarInt::from_u32(0x100), b"peer certificate refused");
            return Early::Failed;
        }
        count(HandshakeResult::Ok);
        match accepted {
            true => Early::Accepted,
            false => Early::Refused,
        }
    }
}

/// HTTP/3 on a QUIC connection (established, or still in its handshake
/// with `early` set), and the pool's handle on it.
async fn quic_peer(
    conn: quinn::Connection,
    state: std::sync::Arc<ConnState>,
    early: Option<tokio::sync::watch::Receiver<Early>>,
    metrics: TransportMetrics,
    cfg: &TunnelConfig,
    addr: SocketAddr,
    id: &SpiffeId,
) -> Result<PeerConnection, QuicFailure> {
    let early_dial = early.is_some();
    let (mut driver, send) = h3::client::builder()
        .max_field_section_size(u64::from(cfg.max_header_bytes))
        .build::<_, _, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| {
            let err = TunnelError::Handshake {
                addr,
                detail: e.to_string(),
            };
            // A 0-RTT dial's handshake is counted by its watcher.
            if early_dial {
                return QuicFailure::Unreachable(err);
            }
            // TLS 1.3: the server checks our certificate after our side of
            // the handshake is done, so its refusal can arrive only now.
            if conn.close_reason().is_some_and(|r| is_refusal(&r)) {
                metrics.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Rejected);
                return QuicFailure::Refused(err);
            }
            metrics.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Error);
            QuicFailure::Unreachable(err)
        })?;
    if early.is_none() {
        metrics.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Ok);
    }
    let guard = metrics.quic_connection_opened(&conn, Side::Client, id);
    let st = state.clone();
    let peer = id.to_string();
    tokio::spawn(async move {
        let _guard = guard;
        let e = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        st.mark_closed();
        tracing::debug!(%addr, %peer, reason = %e, "QUIC tunnel connection closed");
    });
    Ok(PeerConnection::from(ConnParts {
        sender: Sender::Quic { send },
        state,
        kind: TransportKind::Quic,
        carrier: std::sync::OnceLock::new(),
        addr,
        peer_id: id.clone(),
        metrics,
        // QUIC keeps the peer's chain on the connection.
        peer_chain: std::sync::Arc::new(Vec::new()),
        quic: Some(conn),
        early,
    }))
}

/// Refuses a server whose chain does not hold now: a resumed session
/// carries the chain of the handshake that began it, which may have
/// expired since (after a full handshake this passes trivially).
fn current_chain(
    metrics: &TransportMetrics,
    addr: SocketAddr,
    chain: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<(), TunnelError> {
    check_chain_current(chain).map_err(|r| {
        tracing::warn!(%addr, reason = %r.reason, detail = %r.detail, "refused server certificate");
        metrics.tls_rejected(Side::Client, r.reason);
        TunnelError::Handshake {
            addr,
            detail: r.to_string(),
        }
    })
}

/// TLS alerts travel as QUIC CRYPTO_ERROR codes 0x100..=0x1ff.
fn is_crypto(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}

/// Did the connection end with a TLS alert, ours or the peer's (a refused
/// certificate), rather than for a network reason?
fn is_refusal(e: &quinn::ConnectionError) -> bool {
    matches!(
        e,
        quinn::ConnectionError::TransportError(t) if is_crypto(u64::from(t.code))
    ) || matches!(
        e,
        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(u64::from(c.error_code))
    )
}

pub(crate) async fn dial_h2(
    tls: &TlsConfigs,
    cfg: &TunnelConfig,
    addr: SocketAddr,
    id: &SpiffeId,
) -> Result<PeerConnection, TunnelError> {
    let tcp = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| TunnelError::Connect {
                addr,
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let sock = socket2::SockRef::from(&tcp);
        let _ = sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(cfg.keep_alive)
                .with_interval(cfg.keep_alive),
        );
        Ok(tcp)
    };
    establish_h2(tcp, tls, cfg, addr, id).await
}

/// An HTTP/2 connection over TLS over whatever `io` yields (a TCP
/// connection, or a tunnel stream relayed by a gateway), all of it within
/// the handshake timeout; counted in the handshake metrics.
pub(crate) async fn establish_h2<IO>(
    io: impl std::future::Future<Output = Result<IO, TunnelError>>,
    tls: &TlsConfigs,
    cfg: &TunnelConfig,
    addr: SocketAddr,
    id: &SpiffeId,
) -> Result<PeerConnection, TunnelError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let metrics = tls.metrics().clone();
    let attempt = async {
        let io = io.await?;
        let connector = tokio_rustls::TlsConnector::from(tls.client(id, ALPN_H2));
        let tls_stream = connector
            .connect(crate::tls::session_server_name(addr), io)
            .await
            .map_err(|e| TunnelError::Handshake {
                addr,
                detail: e.to_string(),
            })?;
        if tls_stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            return Err(TunnelError::Alpn {
                addr,
                expected: "h2",
            });
        }
        let chain = tls_stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        current_chain(&metrics, addr, &chain)?;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(cfg.stream_window)
            .initial_connection_window_size(cfg.connection_window)
            .max_frame_size(256 << 10)
            .max_header_list_size(cfg.max_header_bytes)
            .max_send_buffer_size(256 << 10)
            .max_concurrent_reset_streams(1024)
            .handshake::<_, Bytes>(tls_stream)
            .await
            .map_err(|e| TunnelError::Handshake {
                addr,
                detail: e.to_string(),
            })?;
        Ok((send, conn, chain))
    };
    let (send, conn, chain) = match tokio::time::timeout(cfg.handshake_timeout, attempt).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let result = match e {
                TunnelError::Handshake { .. } | TunnelError::Alpn { .. } => {
                    HandshakeResult::Rejected
                }
                _ => HandshakeResult::Error,
            };
            metrics.handshake(TransportKind::H2, Side::Client, result);
            return Err(e);
        }
        Err(_) => {
            metrics.handshake(TransportKind::H2, Side::Client, HandshakeResult::Timeout);
            return Err(TunnelError::ConnectTimeout {
                addr,
                after: cfg.handshake_timeout,
            });
        }
    };
    metrics.handshake(TransportKind::H2, Side::Client, HandshakeResult::Ok);
    let state = ConnState::new();
    let guard = metrics.connection_opened(TransportKind::H2, Side::Client);
    let st = state.clone();
    let peer = id.to_string();
    tokio::spawn(async move {
        let _guard = guard;
        if let Err(e) = conn.await {
            tracing::debug!(%addr, %peer, error = %e, "HTTP/2 tunnel connection ended");
        }
        st.mark_closed();
    });
    Ok(PeerConnection::from(ConnParts {
        sender: Sender::H2(send),
        state,
        kind: TransportKind::H2,
        carrier: std::sync::OnceLock::new(),
        addr,
        peer_id: id.clone(),
        metrics,
        quic: None,
        peer_chain: std::sync::Arc::new(chain),
        early: None,
    }))
}
