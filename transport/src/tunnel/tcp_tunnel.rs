//! Opaque TCP over the tunnel: the client opens a `CONNECT` stream whose
//! `:authority` is the target `ip:port` and splices its TCP connection into
//! it; the server checks the authority, dials the target and splices back.
//! Status codes: 200 connected, 400 malformed, 403 not authorized, 502
//! refused, 503 unreachable, 504 timed out.
//!
//! The client may write before the answer ([`PendingTunnel`]): the peer
//! reads the stream only once it has connected to the target, so bytes
//! sent early wait in the stream's flow-control window, and are discarded
//! with the stream if the answer is a refusal.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tokio::net::TcpStream;

use super::body::{RecvBody, SendBody};
use super::client::{PeerKey, TunnelClient};
use super::connection::ResponseFuture;
use super::error::TunnelError;
use super::headers;
use super::incoming::IncomingStream;
use super::splice::{reset_tcp_stream, splice, SpliceStats};
use crate::TransportKind;

/// Metadata sent with a CONNECT (docs/wire.md).
#[derive(Debug, Clone, Default)]
pub struct ConnectMeta {
    /// Logical destination, e.g. `db.default:5432`.
    pub destination: Option<String>,
    /// Self-description of the source workload (informational).
    pub source: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
}

/// An established CONNECT tunnel, ready to splice.
pub struct TcpTunnel {
    pub send: SendBody,
    pub recv: RecvBody,
    pub transport: TransportKind,
    /// When the stream was opened on a ready connection (after any dial):
    /// from here to the 200 is the peer's answer time.
    pub opened_at: Instant,
}

/// A CONNECT stream opened and not answered yet. What is written to
/// `send` now reaches the target once the peer has connected to it.
pub struct PendingTunnel {
    pub send: SendBody,
    pub transport: TransportKind,
    /// When the stream was opened on a ready connection (after any dial).
    pub opened_at: Instant,
    /// The peer's answer: the response body on 200, any other status
    /// [`TunnelError::Refused`] with its `ferry-error`.
    pub answer: Pin<Box<dyn Future<Output = Result<RecvBody, TunnelError>> + Send>>,
}

impl PendingTunnel {
    /// Waits for the answer.
    pub async fn established(self) -> Result<TcpTunnel, TunnelError> {
        let recv = self.answer.await?;
        Ok(TcpTunnel {
            send: self.send,
            recv,
            transport: self.transport,
            opened_at: self.opened_at,
        })
    }
}

/// The response body of a 200; any other status is a refusal.
async fn answer(response: ResponseFuture) -> Result<RecvBody, TunnelError> {
    let (resp, mut recv) = response.response().await?;
    if resp.status() == StatusCode::OK {
        return Ok(recv);
    }
    let why = resp
        .headers()
        .get(headers::FERRY_ERROR)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    recv.stop();
    Err(TunnelError::Refused {
        status: resp.status(),
        detail: why,
    })
}

impl TunnelClient {
    /// Opens a CONNECT stream to `target` through `peer` and waits for 200.
    pub async fn connect_tcp(
        &self,
        peer: &PeerKey,
        target: SocketAddr,
        meta: &ConnectMeta,
    ) -> Result<TcpTunnel, TunnelError> {
        self.begin_tcp(peer, target, meta)
            .await?
            .established()
            .await
    }

    /// Opens a CONNECT stream to `target` through `peer` without waiting
    /// for the answer, so the caller can send its first bytes at once.
    pub async fn begin_tcp(
        &self,
        peer: &PeerKey,
        target: SocketAddr,
        meta: &ConnectMeta,
    ) -> Result<PendingTunnel, TunnelError> {
        let mut req = http::Request::builder()
            .method(Method::CONNECT)
            .uri(target.to_string());
        for (name, value) in [
            (headers::FERRY_DESTINATION, &meta.destination),
            (headers::FERRY_SOURCE, &meta.source),
            (headers::TRACEPARENT, &meta.traceparent),
        ] {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        let req = req.body(()).map_err(|e| TunnelError::Open {
            addr: peer.addr,
            detail: format!("bad CONNECT metadata: {e}"),
        })?;
        self.begin_connect(peer, req).await
    }

    /// Opens a `CONNECT` stream through `peer`; its answer is awaited by
    /// the caller ([`PendingTunnel`]).
    pub(crate) async fn begin_connect(
        &self,
        peer: &PeerKey,
        req: http::Request<()>,
    ) -> Result<PendingTunnel, TunnelError> {
        let opened = self.open(peer, &req).await?;
        Ok(PendingTunnel {
            send: opened.send,
            transport: opened.transport,
            opened_at: Instant::now(),
            answer: Box::pin(answer(opened.response)),
        })
    }
}

/// Parses a CONNECT authority as `ip:port`.
pub fn parse_target(req: &http::Request<()>) -> Result<SocketAddr, String> {
    if req.method() != Method::CONNECT {
        return Err(format!("expected CONNECT, got {}", req.method()));
    }
    let auth = req
        .uri()
        .authority()
        .ok_or_else(|| "CONNECT without :authority".to_string())?;
    auth.as_str()
        .parse::<SocketAddr>()
        .map_err(|_| format!("CONNECT :authority {:?} is not ip:port", auth.as_str()))
}

/// Answers a CONNECT by dialing `target` and splicing; errors get their
/// documented status. Returns the splice statistics when it ran.
pub async fn serve_connect(
    stream: IncomingStream,
    target: SocketAddr,
    connect_timeout: Duration,
    idle: Duration,
) -> Result<SpliceStats, String> {
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let (status, code) = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    (StatusCode::BAD_GATEWAY, "upstream_refused")
                }
                _ => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unreachable"),
            };
            let _ = stream
                .responder
                .send_simple(
                    status,
                    Some(code),
                    &format!("connecting to {target}: {e}\n"),
                )
                .await;
            return Err(format!("{code}: {e}"));
        }
        Err(_) => {
            let _ = stream
                .responder
                .send_simple(
                    StatusCode::GATEWAY_TIMEOUT,
                    Some("upstream_timeout"),
                    "connect timed out\n",
                )
                .await;
            return Err("upstream_timeout".into());
        }
    };
    let _ = tcp.set_nodelay(true);
    let ok = http::Response::builder()
        .status(StatusCode::OK)
        .body(())
        .expect("static response");
    let send = match stream.responder.send_response(ok).await {
        Ok(s) => s,
        Err(e) => {
            reset_tcp_stream(tcp);
            return Err(e.to_string());
        }
    };
    splice(tcp, send, stream.body, idle)
        .await
        .map_err(|e| e.to_string())
}

/// Refuses a stream with a status and an error token.
pub async fn refuse(stream: IncomingStream, status: StatusCode, code: &str, detail: &str) {
    let _ = stream
        .responder
        .send_simple(status, Some(code), &format!("{detail}\n"))
        .await;
}
