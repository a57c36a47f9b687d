//! The edge's additions to the tunnel wire protocol (docs/wire.md): which
//! application protocol a request came in, the target address, and the
//! hop-by-hop headers that never cross a proxy.

use http::header::{HeaderMap, HeaderName};

/// On HTTP requests: the endpoint address (`ip:port`) the request is for;
/// the inbound edge forwards to its application at that port.
pub const FERRY_TARGET: &str = "ferry-target";

/// The protocol the application spoke to its outbound edge, which the
/// inbound edge speaks to its application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    Http1,
    H2c,
    Grpc,
}

impl AppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Http1 => "http1",
            AppProtocol::H2c => "h2c",
            AppProtocol::Grpc => "grpc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http1" => Some(AppProtocol::Http1),
            "h2c" => Some(AppProtocol::H2c),
            "grpc" => Some(AppProtocol::Grpc),
            _ => None,
        }
    }

    /// Classifies a request the application sent.
    pub fn of(h2: bool, headers: &HeaderMap) -> Self {
        let grpc = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/grpc"));
        match (h2, grpc) {
            (true, true) => AppProtocol::Grpc,
            (true, false) => AppProtocol::H2c,
            (false, _) => AppProtocol::Http1,
        }
    }

    /// Whether the application side uses HTTP/2.
    pub fn is_h2(self) -> bool {
        !matches!(self, AppProtocol::Http1)
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) besides `TE` and those a
/// `Connection` header names. Constants: no name is parsed per request.
const HOP_BY_HOP: [HeaderName; 7] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any named by
/// `Connection`. `te: trailers` survives (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most heads carry none of these: one pass over their few names (equal
    // names compare as enums or short strings) instead of eight hashed
    // removals, on each of the four heads a request crosses.
    let present = headers
        .keys()
        .any(|k| k == http::header::TE || HOP_BY_HOP.contains(k));
    if !present {
        return;
    }
    // Empty (no allocation) when there is no `Connection` header.
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    let Some(te) = headers.get(http::header::TE) else {
        return;
    };
    let te_trailers = te.to_str().ok().is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("trailers"))
    });
    headers.remove(http::header::TE);
    if te_trailers {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_but_keeps_te_trailers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("x-app", "kept".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-private").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("x-app").unwrap(), "kept");
    }

    #[test]
    fn each_hop_by_hop_field_alone_is_stripped() {
        for name in HOP_BY_HOP.iter().chain([&http::header::TE]) {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), "x".parse().unwrap());
            h.insert("x-app", "kept".parse().unwrap());
            strip_hop_by_hop(&mut h);
            assert!(h.get(name).is_none(), "{name} kept");
            assert_eq!(h.len(), 1, "{name}: {h:?}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-app", "kept".parse().unwrap());
        h.insert(http::header::CONTENT_LENGTH, "0".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn grpc_is_recognised() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/grpc+proto".parse().unwrap());
        assert_eq!(AppProtocol::of(true, &h), AppProtocol::Grpc);
        assert_eq!(AppProtocol::of(false, &h), AppProtocol::Http1);
        assert_eq!(AppProtocol::of(true, &HeaderMap::new()), AppProtocol::H2c);
    }
}
