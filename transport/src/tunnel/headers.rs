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
