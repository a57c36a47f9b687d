//! Errors of the tunnel layer.

use std::net::SocketAddr;

/// An error on one stream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The peer reset the stream (or asked us to stop sending).
    #[error("stream reset by peer ({0})")]
    Reset(String),
    /// The connection under the stream failed or closed.
    #[error("connection lost: {0}")]
    Connection(String),
    /// Any other protocol error on the stream.
    #[error("stream error: {0}")]
    Protocol(String),
    /// No data moved in either direction for too long.
    #[error("stream idle for longer than {0:?}")]
    Idle(std::time::Duration),
}

impl StreamError {
    pub fn is_reset(&self) -> bool {
        matches!(self, StreamError::Reset(_))
    }
}

impl From<h3::error::StreamError> for StreamError {
    fn from(e: h3::error::StreamError) -> Self {
        match e {
            h3::error::StreamError::RemoteTerminate { code, .. } => {
                StreamError::Reset(format!("{code:?}"))
            }
            other if other.is_h3_no_error() => StreamError::Protocol(other.to_string()),
            other => {
                let text = other.to_string();
                if text.contains("onnection") {
                    StreamError::Connection(text)
                } else {
                    StreamError::Protocol(text)
                }
            }
        }
    }
}

impl From<h2::Error> for StreamError {
    fn from(e: h2::Error) -> Self {
        if e.is_reset() {
            StreamError::Reset(e.to_string())
        } else if e.is_io() || e.is_go_away() {
            StreamError::Connection(e.to_string())
        } else {
            StreamError::Protocol(e.to_string())
        }
    }
}

/// Why a tunnel connection or stream could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TunnelError {
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout {
        addr: SocketAddr,
        after: std::time::Duration,
    },
    #[error("connecting to {addr} failed: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    /// The TLS handshake failed: the peer is not who we expected, or refused us.
    #[error("handshake with {addr} failed: {detail}")]
    Handshake { addr: SocketAddr, detail: String },
    #[error("peer {addr} did not negotiate ALPN {expected}")]
    Alpn {
        addr: SocketAddr,
        expected: &'static str,
    },
    #[error("opening a stream to {addr} failed: {detail}")]
    Open { addr: SocketAddr, detail: String },
    #[error("peer answered CONNECT with {status}: {detail}")]
    Refused {
        status: http::StatusCode,
        detail: String,
    },
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("the tunnel client is shutting down")]
    Shutdown,
}
