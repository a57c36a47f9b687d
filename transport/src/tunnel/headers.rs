//! Header names and values of Ferry's wire protocol (docs/wire.md).

/// Logical destination the client asked for (for example `web.default:8080`).
pub const FERRY_DESTINATION: &str = "ferry-destination";
/// The source workload's own description of itself (informational; the
/// authenticated identity comes from mTLS, never from a header).
pub const FERRY_SOURCE: &str = "ferry-source";
/// The application protocol the client edge received (`http1`, `h2c`, `grpc`).
pub const FERRY_PROTOCOL: &str = "ferry-protocol";
/// On an error response: a short token naming the cause.
pub const FERRY_ERROR: &str = "ferry-error";
/// W3C trace context, propagated unchanged.
pub const TRACEPARENT: &str = "traceparent";
/// On a `CONNECT`: the stream carries an end-to-end TLS session (ALPN `h2`)
/// with the edge at the `:authority`, relayed by a gateway (docs/wire.md).
pub const FERRY_INNER: &str = "ferry-inner";
/// The one value of [`FERRY_INNER`] defined today.
pub const INNER_H2: &str = "h2";
