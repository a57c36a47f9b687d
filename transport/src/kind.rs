//! Which transport carries a connection or stream: QUIC (HTTP/3) or the
//! HTTP/2-over-TLS fallback. Code above this crate never branches on it; it
//! only reports it in metrics and logs.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    /// QUIC v1 with HTTP/3 (ALPN `h3`).
    Quic,
    /// TLS 1.3 over TCP with HTTP/2 (ALPN `h2`).
    H2,
}

impl TransportKind {
    /// The value used for the `transport` metric label and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Quic => "quic",
            TransportKind::H2 => "h2",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
