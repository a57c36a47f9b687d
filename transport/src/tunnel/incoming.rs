//! One stream accepted on the tunnel port, whichever transport carried it:
//! the request head, the authenticated peer, the request body and a
//! responder that sends the response head and returns the response body.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::body::{RecvBody, SendBody, SendInner};
use super::error::StreamError;
use super::tracker::StreamTicket;
use crate::identity::SpiffeId;
use crate::TransportKind;

/// Who is on the other end of a connection, as authenticated by mTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: SpiffeId,
    pub addr: SocketAddr,
    /// The transport on the wire; for an inner session, that of the
    /// stream from the gateway carrying it.
    pub transport: TransportKind,
    /// For a stream of an inner session: the gateway that relayed it (`id`
    /// is then the end-to-end caller, authenticated by the inner TLS).
    pub via: Option<SpiffeId>,
}

pub(crate) enum ResponderInner {
    Quic(Box<h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>>),
    H2(h2::server::SendResponse<Bytes>),
}

/// Sends the response head of an accepted stream.
pub struct Responder {
    inner: ResponderInner,
    ticket: Arc<StreamTicket>,
}

impl Responder {
    pub(crate) fn new(inner: ResponderInner, ticket: Arc<StreamTicket>) -> Self {
        Self { inner, ticket }
    }

    /// Sends the response head; returns the response body to write.
    pub async fn send_response(
        self,
        response: http::Response<()>,
    ) -> Result<SendBody, StreamError> {
        match self.inner {
            ResponderInner::Quic(mut s) => {
                s.send_response(response).await?;
                Ok(SendBody::new(SendInner::QuicServer(*s), self.ticket))
            }
            ResponderInner::H2(mut s) => {
                let stream = s.send_response(response, false)?;
                Ok(SendBody::new(SendInner::H2(stream), self.ticket))
            }
        }
    }

    /// Sends a complete response with a short text body (errors, refusals).
    pub async fn send_simple(
        self,
        status: http::StatusCode,
        error: Option<&str>,
        body: &str,
    ) -> Result<(), StreamError> {
        let mut resp = http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(e) = error {
            resp = resp.header(super::headers::FERRY_ERROR, e);
        }
        let resp = resp
            .body(())
            .map_err(|e| StreamError::Protocol(e.to_string()))?;
        let mut send = self.send_response(resp).await?;
        send.send_last(Bytes::from(body.to_string())).await
    }

    /// Aborts the stream without a response.
    pub fn reset(self) {
        match self.inner {
            ResponderInner::Quic(mut s) => s.stop_stream(h3::error::Code::H3_REQUEST_REJECTED),
            ResponderInner::H2(mut s) => s.send_reset(h2::Reason::REFUSED_STREAM),
        }
    }
}

/// A stream accepted on the tunnel port.
pub struct IncomingStream {
    pub request: http::Request<()>,
    pub peer: PeerInfo,
    pub body: RecvBody,
    pub responder: Responder,
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("method", self.request.method())
            .field("uri", self.request.uri())
            .field("peer", &self.peer)
            .finish()
    }
}
