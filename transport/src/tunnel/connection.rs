//! One client connection to a peer proxy, over either transport, and
//! opening request streams on it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::body::{RecvBody, RecvInner, SendBody, SendInner};
use super::early_data::Early;
use super::error::{StreamError, TunnelError};
use super::tracker::{ConnState, Reservation, StreamTicket};
use crate::identity::SpiffeId;
use crate::metrics::transport::{Side, TransportMetrics};
use crate::TransportKind;

#[derive(Clone)]
pub(crate) enum Sender {
    Quic {
        send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    },
    H2(h2::client::SendRequest<Bytes>),
}

/// A pooled connection to a peer. Cheap to clone: one reference count
/// (a request takes one from the pool and drops it once its stream is open).
#[derive(Clone)]
pub struct PeerConnection(Arc<ConnParts>);

/// What a [`PeerConnection`] shares between its clones (its fields are
/// the crate's own).
pub struct ConnParts {
    pub(crate) sender: Sender,
    pub(crate) state: Arc<ConnState>,
    pub(crate) kind: TransportKind,
    /// For an inner session (a peer reached through a gateway): the
    /// transport of the stream to the gateway that carries it, which is
    /// what the wire shows and what streams on it are labelled with. Set
    /// once the session is established.
    pub(crate) carrier: std::sync::OnceLock<TransportKind>,
    pub(crate) addr: SocketAddr,
    pub(crate) peer_id: SpiffeId,
    pub(crate) metrics: TransportMetrics,
    pub(crate) quic: Option<quinn::Connection>,
    /// The certificate chain the peer presented over TLS/TCP (QUIC keeps
    /// its own, see [`PeerConnection::peer_chain`]).
    pub(crate) peer_chain: Arc<Vec<rustls_pki_types::CertificateDer<'static>>>,
    /// For a QUIC connection dialed with 0-RTT data: what became of it.
    pub(crate) early: Option<tokio::sync::watch::Receiver<Early>>,
}

impl std::ops::Deref for PeerConnection {
    type Target = ConnParts;
    fn deref(&self) -> &ConnParts {
        &self.0
    }
}

impl From<ConnParts> for PeerConnection {
    fn from(parts: ConnParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection")
            .field("transport", &self.kind)
            .field("addr", &self.addr)
            .field("peer", &self.peer_id.to_string())
            .field("in_flight", &self.state.in_flight())
            .finish()
    }
}

/// The response to a request, once it arrives.
pub enum ResponseFuture {
    Quic(
        h3::client::RequestStream<h3_quinn::RecvStream, Bytes>,
        Arc<StreamTicket>,
    ),
    H2(h2::client::ResponseFuture, Arc<StreamTicket>),
}

impl ResponseFuture {
    /// Waits for the response head; returns it with the response body.
    pub async fn response(self) -> Result<(http::Response<()>, RecvBody), StreamError> {
        match self {
            ResponseFuture::Quic(mut recv, ticket) => {
                let resp = recv.recv_response().await?;
                Ok((resp, RecvBody::new(RecvInner::QuicClient(recv), ticket)))
            }
            ResponseFuture::H2(fut, ticket) => {
                let resp = fut.await?;
                let (parts, body) = resp.into_parts();
                Ok((
                    http::Response::from_parts(parts, ()),
                    RecvBody::new(RecvInner::H2(body), ticket),
                ))
            }
        }
    }
}

/// An opened request stream: the request body to write and the response to await.
pub struct OpenedStream {
    pub send: SendBody,
    pub response: ResponseFuture,
    pub transport: TransportKind,
}

impl PeerConnection {
    /// The transport on the wire: this connection's own, or for an inner
    /// session the transport of the hop to the gateway.
    pub fn transport(&self) -> TransportKind {
        self.carrier.get().copied().unwrap_or(self.kind)
    }

    pub fn peer_id(&self) -> &SpiffeId {
        &self.peer_id
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate chain the peer presented (leaf first): QUIC keeps
    /// it on the connection (empty while a 0-RTT dial's handshake is
    /// pending), TLS/TCP here.
    pub fn peer_chain(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        match &self.quic {
            Some(q) => super::dial::quic_peer_chain(q),
            None => self.peer_chain.to_vec(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight()
    }

    pub fn is_closed(&self) -> bool {
        if self.state.is_closed() {
            return true;
        }
        if let Some(q) = &self.quic {
            if q.close_reason().is_some() {
                self.state.mark_closed();
                return true;
            }
        }
        false
    }

    /// For a connection dialed with 0-RTT data whose peer has not (yet)
    /// accepted it: the outcome to watch. A stream sent on it now is early
    /// data.
    pub(crate) fn early_unsettled(&self) -> Option<&tokio::sync::watch::Receiver<Early>> {
        self.early
            .as_ref()
            .filter(|rx| *rx.borrow() != Early::Accepted)
    }

    /// The QUIC round-trip estimate (None for TLS/TCP).
    pub fn rtt(&self) -> Option<std::time::Duration> {
        self.quic.as_ref().map(|q| q.rtt())
    }

    /// Opens a request stream on this connection with a reserved slot.
    pub(crate) async fn open(
        &self,
        req: http::Request<()>,
        slot: Reservation,
    ) -> Result<OpenedStream, TunnelError> {
        let metric = self.metrics.stream_opened(self.kind, Side::Client);
        // h3 closes the whole connection when its last `SendRequest` is
        // dropped, in-flight streams and all: each QUIC stream keeps the
        // connection (and its `SendRequest`), so a connection that has left
        // the pool (after a GOAWAY) stays open until its last stream ends.
        let keep: Option<Box<dyn std::any::Any + Send>> = match &self.sender {
            Sender::Quic { .. } => Some(Box::new(self.clone())),
            Sender::H2(_) => None,
        };
        let ticket = StreamTicket::keeping(slot, metric, keep);
        let open_err = |detail: String| TunnelError::Open {
            addr: self.addr,
            detail,
        };
        match &self.sender {
            Sender::Quic { send, .. } => {
                // h3 closes the whole connection on a request it cannot
                // encode (no authority, or a Host contradicting it): refuse
                // such a request here and keep the connection.
                match (req.uri().authority(), req.headers().get(http::header::HOST)) {
                    (None, None) => return Err(open_err("request without :authority".into())),
                    (Some(a), Some(h)) if h != a.as_str() => {
                        return Err(open_err("Host header contradicts :authority".into()))
                    }
                    _ => {}
                }
                let mut send = send.clone();
                let stream = send.send_request(req).await.map_err(|e| {
                    // Headers over the peer's limit are refused before
                    // anything is sent: the request is bad, the connection fine.
                    if !matches!(e, h3::error::StreamError::HeaderTooBig { .. }) {
                        self.state.mark_closed();
                    }
                    open_err(e.to_string())
                })?;
                let (s, r) = stream.split();
                Ok(OpenedStream {
                    send: SendBody::new(SendInner::QuicClient(s), ticket.clone()),
                    response: ResponseFuture::Quic(r, ticket),
                    transport: self.transport(),
                })
            }
            Sender::H2(send) => {
                let mut send = send.clone().ready().await.map_err(|e| {
                    self.state.mark_closed();
                    open_err(e.to_string())
                })?;
                let (fut, stream) = send.send_request(req, false).map_err(|e| {
                    self.state.mark_closed();
                    open_err(e.to_string())
                })?;
                Ok(OpenedStream {
                    send: SendBody::new(SendInner::H2(stream), ticket.clone()),
                    response: ResponseFuture::H2(fut, ticket),
                    transport: self.transport(),
                })
            }
        }
    }

    /// Closes the connection (idle eviction, shutdown).
    pub fn close(&self) {
        self.state.mark_closed();
        if let Some(q) = &self.quic {
            q.close(quinn::VarInt::from_u32(0x100), b"idle");
        }
    }
}
