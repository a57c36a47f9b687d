//! Protocol detection on outbound connections: read the client's first
//! bytes (without stalling: a client that sends nothing within the
//! detection timeout is opaque TCP) and classify them as an HTTP/1.x request
//! line, the HTTP/2 preface, or anything else (opaque). HTTP/1 requests that
//! ask for an `Upgrade` (WebSocket) are carried as a tunnel.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The most we read while looking for the end of the first request head.
const MAX_PEEK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    H2,
    /// An HTTP/1 request with `Upgrade:` (WebSocket and friends).
    Http1Upgrade,
    /// An HTTP/1 `CONNECT`: the application uses us as its proxy.
    Http1Connect,
    Opaque,
    /// Nothing arrived in time.
    Timeout,
}

impl Detected {
    pub fn label(self) -> &'static str {
        match self {
            Detected::Http1 => "http1",
            Detected::H2 => "h2",
            Detected::Http1Upgrade | Detected::Opaque => "opaque",
            Detected::Http1Connect => "connect",
            Detected::Timeout => "timeout",
        }
    }
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// What the bytes so far say; `None` means "need more".
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    if H2_PREFACE.starts_with(buf) {
        return if buf.len() >= H2_PREFACE.len() {
            Some(Detected::H2)
        } else {
            None
        };
    }
    if buf.starts_with(H2_PREFACE) {
        return Some(Detected::H2);
    }
    let method_prefix = METHODS
        .iter()
        .any(|m| m.starts_with(buf) || buf.starts_with(m));
    if !method_prefix {
        return Some(Detected::Opaque);
    }
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= MAX_PEEK {
            Some(Detected::Opaque)
        } else {
            None
        };
    };
    let line = &buf[..line_end];
    if !(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")) {
        return Some(Detected::Opaque);
    }
    // The rest needs the whole head.
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_PEEK {
            Some(Detected::Http1)
        } else {
            None
        };
    };
    if line.starts_with(b"CONNECT ") {
        return Some(Detected::Http1Connect);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if head.lines().skip(1).any(|l| l.starts_with("upgrade:")) {
        return Some(Detected::Http1Upgrade);
    }
    Some(Detected::Http1)
}

/// Reads until the protocol is known or `timeout` passes. Returns what was
/// read (to be replayed) with the verdict.
pub async fn detect(tcp: &mut TcpStream, timeout: Duration) -> (Detected, Bytes) {
    let mut buf = BytesMut::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)).await;
        match read {
            Err(_) => {
                let verdict = if buf.is_empty() {
                    Detected::Timeout
                } else {
                    // Partial head that never completed: treat as opaque.
                    classify(&buf).unwrap_or(Detected::Opaque)
                };
                return (verdict, buf.freeze());
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                let verdict = classify(&buf).unwrap_or(Detected::Opaque);
                return (verdict, buf.freeze());
            }
            Ok(Ok(_)) => {
                if let Some(v) = classify(&buf) {
                    return (v, buf.freeze());
                }
                if buf.len() >= MAX_PEEK {
                    return (Detected::Opaque, buf.freeze());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Detected::Http1)
        );
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(
            classify(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
            ),
            Some(Detected::Http1Upgrade)
        );
        assert_eq!(classify(b"CONNECT a:1 HTTP/1.1\r\n"), None);
        assert_eq!(
            classify(b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n"),
            Some(Detected::Http1Connect)
        );
        assert_eq!(classify(H2_PREFACE), Some(Detected::H2));
        assert_eq!(classify(&H2_PREFACE[..10]), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(
            classify(b"\x16\x03\x01"),
            Some(Detected::Opaque),
            "TLS ClientHello"
        );
        assert_eq!(classify(b"SSH-2.0-OpenSSH\r\n"), Some(Detected::Opaque));
        assert_eq!(classify(b"GET / SMTP\r\n"), Some(Detected::Opaque));
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Some(Detected::Opaque));
    }
}
