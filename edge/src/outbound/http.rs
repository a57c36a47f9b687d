//! HTTP from the application (HTTP/1.1 with keep-alive, chunked bodies and
//! `Expect: 100-continue`; h2c; gRPC over h2c): every request is balanced
//! on its own and sent as its own tunnel request (HTTP/3, or HTTP/2 on the
//! fallback), bodies and trailers streamed both ways. The application's
//! protocol travels in `ferry-protocol` (absent for HTTP/1.1) so the
//! inbound edge speaks it back.
//! Failures are answered: 503 no endpoints, 502 connect/handshake failure,
//! 504 timeout, each with a `ferry-error` header.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_transport::tunnel::headers::{FERRY_ERROR, FERRY_PROTOCOL};
use ferry_transport::tunnel::{StreamError, TunnelError};
use http::uri::{Authority, InvalidUri};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::detect::Detected;
use super::route::Target;
use crate::context::EdgeContext;
use crate::prefixed_io::PrefixedIo;
use crate::tunnel_body::{empty, full, pump_body, recv_to_body, ProxyBody};
use crate::wire::{strip_hop_by_hop, AppProtocol, FERRY_TARGET};

/// The largest request head accepted from the application (the tunnel's
/// own limit is 64 KiB of header block).
const MAX_APP_HEAD: usize = 64 * 1024;
/// How long an application has to send a request head, the first one
/// included (HTTP/1; on a service declared HTTP also the wait for the
/// connection's first bytes).
pub const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves one application connection as HTTP.
pub async fn serve(
    tcp: TcpStream,
    prefix: Bytes,
    detected: Detected,
    target: Target,
    ctx: Arc<EdgeContext>,
) {
    let io = TokioIo::new(PrefixedIo::new(prefix, tcp));
    let h2 = detected == Detected::H2;
    let svc = {
        let ctx = ctx.clone();
        let target = target.clone();
        service_fn(move |req: Request<Incoming>| {
            let ctx = ctx.clone();
            // Each request is balanced over the endpoints discovery knows
            // now, not when this (keep-alive) connection was accepted.
            let target = target.refresh(&ctx.discovery.snapshot());
            // Boxed: hyper keeps the service's future in its dispatcher, and
            // moving this (large) state machine there was a memcpy of
            // kilobytes per request.
            Box::pin(async move { Ok::<_, Infallible>(forward(req, h2, &target, &ctx).await) })
        })
    };
    let shutdown = ctx.shutdown.clone();
    let result = if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .max_concurrent_streams(1024)
            .max_header_list_size(MAX_APP_HEAD as u32)
            .serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            // Heads the tunnel would refuse get 431 here, from the edge.
            .max_buf_size(MAX_APP_HEAD)
            .header_read_timeout(HEAD_TIMEOUT)
            .timer(hyper_util::rt::TokioTimer::new())
            .serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "application HTTP connection ended with an error");
    }
}

fn error_response(status: StatusCode, code: &'static str, detail: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(format!("ferry: {detail}\n")));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(FERRY_ERROR, HeaderValue::from_static(code));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `addr` as a header value, formatted in place (no growing `String`).
fn addr_value(addr: SocketAddr) -> Option<HeaderValue> {
    use std::io::Write;
    // The longest form, `[<v6 with a v4 tail>%<scope>]:<port>`, is 64 bytes.
    let mut buf = [0u8; 80];
    let mut rest = &mut buf[..];
    write!(rest, "{addr}").ok()?;
    let len = 80 - rest.len();
    HeaderValue::from_bytes(&buf[..len]).ok()
}

/// The authority the application addressed (the URI's, else the Host
/// header's, else the target's name), parsed once for the tunnel request.
fn app_authority(req: &Request<Incoming>, target: &Target) -> Result<Authority, InvalidUri> {
    if let Some(a) = req.uri().authority() {
        return Ok(a.clone());
    }
    match req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        Some(host) => Authority::try_from(host),
        None => Authority::try_from(target.name()),
    }
}

/// Forwards one request; never fails (errors become responses).
pub async fn forward(
    req: Request<Incoming>,
    h2: bool,
    target: &Target,
    ctx: &EdgeContext,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let protocol = AppProtocol::of(h2, req.headers());
    let method = req.method().clone();
    // For the access log (a reference-counted copy, not a new string).
    let uri = req.uri().clone();
    let resp = forward_inner(req, protocol, target, ctx, start).await;
    let (resp, peer, transport) = match resp {
        Ok(x) => x,
        Err(r) => (r, None, None),
    };
    let transport_label = transport.map(|t| t.as_str()).unwrap_or("none");
    let elapsed = start.elapsed();
    ctx.metrics.request(
        "outbound",
        transport_label,
        resp.status().as_u16(),
        elapsed.as_secs_f64(),
    );
    tracing::info!(
        target: "access",
        direction = "outbound",
        src = %ctx.id(),
        dst = %target.name(),
        peer = peer.as_ref().map(|p: &ferry_transport::identity::SpiffeId| p.to_string()).unwrap_or_default(),
        transport = transport_label,
        protocol = protocol.as_str(),
        method = %method,
        path = uri.path(),
        status = resp.status().as_u16(),
        duration_us = elapsed.as_micros() as u64,
        error = resp.headers().get(FERRY_ERROR).and_then(|v| v.to_str().ok()).unwrap_or(""),
        "request"
    );
    resp
}

type Forwarded = (
    Response<ProxyBody>,
    Option<ferry_transport::identity::SpiffeId>,
    Option<ferry_transport::TransportKind>,
);

async fn forward_inner(
    req: Request<Incoming>,
    protocol: AppProtocol,
    target: &Target,
    ctx: &EdgeContext,
    start: Instant,
) -> Result<Forwarded, Response<ProxyBody>> {
    let endpoints = target.endpoints();
    if endpoints.is_empty() {
        return Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_endpoints",
            format!("no endpoints for {}", target.name()),
        ));
    }
    let bad_target = |e: &dyn std::fmt::Display| {
        error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("bad request target: {e}"),
        )
    };
    let authority = app_authority(&req, target).map_err(|e| bad_target(&e))?;
    let (parts, body) = req.into_parts();
    // A request with no body (most GETs) is finished inline, and says so,
    // so the far edge need not wait for the end of the stream.
    let empty_body = http_body::Body::is_end_stream(&body);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    // Built from parts: the path is the application's, already parsed.
    let uri: Uri = Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        )
        .build()
        .map_err(|e| bad_target(&e))?;
    let mut headers: HeaderMap = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(http::header::HOST);
    // HTTP/1.1, what the far edge assumes without the field, is not sent:
    // one field less to QPACK-code on both edges for most requests. An
    // application's own `ferry-protocol` never travels.
    if protocol == AppProtocol::Http1 {
        headers.remove(FERRY_PROTOCOL);
    } else {
        headers.insert(FERRY_PROTOCOL, HeaderValue::from_static(protocol.as_str()));
    }
    if empty_body && !headers.contains_key(http::header::CONTENT_LENGTH) {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    // No `ferry-source`/`ferry-destination` (informational on `CONNECT`):
    // the far edge knows the caller from mTLS and needs only the target,
    // and every header field costs QPACK (Huffman) coding on both edges.
    // The far edge removes any `ferry-*` field the application sent.
    // hyper's head limit is soft (a head may overshoot it by one read), and
    // the peer refuses a header block over its limit before anything is
    // sent: answer 431 here rather than a 502 that blames the endpoint.
    // Sizes as HTTP/3 and HTTP/2 count them: name + value + 32 per field,
    // pseudo-headers and the per-endpoint `ferry-target` (at most 64) included.
    let field = |n: usize, v: usize| n + v + 32;
    let head_size = headers
        .iter()
        .map(|(n, v)| field(n.as_str().len(), v.len()))
        .sum::<usize>()
        + field(7, parts.method.as_str().len())
        + field(7, 4)
        + field(10, authority.as_str().len())
        + field(5, path.len())
        + field(FERRY_TARGET.len(), 64);
    if head_size > ctx.client.config().max_header_bytes as usize {
        return Err(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request head ({head_size} bytes) is over the tunnel's limit"),
        ));
    }
    let deadline = ctx.cfg.outbound.request_timeout;
    // Try up to two endpoints while nothing of the request has been sent.
    let mut last_err: Option<TunnelError> = None;
    let mut candidates = endpoints;
    let mut body = Some(body);
    // Built once; each attempt names its endpoint in `ferry-target`.
    let mut tunnel_req = Request::new(());
    *tunnel_req.method_mut() = parts.method;
    *tunnel_req.uri_mut() = uri;
    *tunnel_req.headers_mut() = headers;
    for attempt in 0..2 {
        let Some((endpoint, mut lease)) = ctx.balancer.pick(&candidates) else {
            break;
        };
        // A retry goes to another endpoint when there is one.
        if candidates.len() > 1 {
            candidates.retain(|e| e != &endpoint);
        }
        if let Some(v) = addr_value(endpoint.address) {
            tunnel_req.headers_mut().insert(FERRY_TARGET, v);
        }
        let peer = endpoint.peer_key();
        let opened = match tokio::time::timeout(
            ctx.cfg.outbound.connect_timeout,
            Box::pin(ctx.client.open(&peer, &tunnel_req)),
        )
        .await
        {
            Ok(Ok(o)) => {
                lease.since(std::time::Instant::now());
                o
            }
            Ok(Err(e)) => {
                lease.done(false);
                tracing::debug!(peer = %endpoint.id, error = %e, "opening the tunnel request failed");
                last_err = Some(e);
                continue;
            }
            Err(_) => {
                lease.done(false);
                return Err(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "connect_timeout",
                    format!("connecting to {} timed out", endpoint.id),
                ));
            }
        };
        let transport = opened.transport;
        if empty_body {
            let mut send = opened.send;
            if let Err(e) = send.finish().await {
                tracing::debug!(error = %e, "finishing an empty request failed");
            }
        } else {
            // Stream the request body in the background; the response can start first.
            let body = body.take().expect("a body is sent once: no retry after it");
            tokio::spawn(async move {
                let end = pump_body(body, opened.send).await;
                tracing::trace!(?end, "request body done");
            });
        }
        let remaining = deadline.saturating_sub(start.elapsed());
        let response = if deadline.is_zero() {
            Ok(opened.response.response().await)
        } else {
            tokio::time::timeout(remaining, opened.response.response()).await
        };
        match response {
            Ok(Ok((head, recv))) => {
                lease.done(head.status().as_u16() < 500);
                let (mut parts, ()) = head.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // The tunnel's version (HTTP/3 or 2) is not the application's.
                parts.version = http::Version::default();
                // A gRPC "Trailers-Only" response (the status in the head:
                // an immediate error, no messages) must reach the
                // application as one HEADERS frame that ends the stream;
                // grpc-core clients reject HEADERS then an empty DATA frame
                // ("Stream removed") and lose the status.
                let body = if parts.headers.contains_key("grpc-status") {
                    empty()
                } else {
                    recv_to_body(recv)
                };
                return Ok((
                    Response::from_parts(parts, body),
                    Some(endpoint.id.clone()),
                    Some(transport),
                ));
            }
            Ok(Err(e)) => {
                lease.done(false);
                // The connection went away under the stream before any
                // answer (an HTTP/2 GOAWAY from a draining peer can refuse a
                // stream that crossed it on the wire; the peer never saw
                // it). A request without a body and with an idempotent
                // method is sent again, to another endpoint if there is one.
                if attempt == 0
                    && empty_body
                    && tunnel_req.method().is_idempotent()
                    && matches!(e, StreamError::Connection(_))
                {
                    tracing::debug!(peer = %endpoint.id, error = %e, "the connection went away under the request; retrying");
                    last_err = Some(TunnelError::Stream(e));
                    continue;
                }
                return Err(error_response(
                    StatusCode::BAD_GATEWAY,
                    "stream_failed",
                    format!("the request to {} failed: {e}", endpoint.id),
                ));
            }
            Err(_) => {
                lease.done(false);
                return Err(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!("no response within {deadline:?}"),
                ));
            }
        }
    }
    let stream_failed = matches!(last_err, Some(TunnelError::Stream(_)));
    let detail = last_err
        .map(|e| e.to_string())
        .unwrap_or_else(|| "no endpoint".into());
    let code = if stream_failed {
        "stream_failed"
    } else if detail.contains("handshake") {
        "handshake_failed"
    } else {
        "connect_failed"
    };
    Err(error_response(StatusCode::BAD_GATEWAY, code, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_header_values() {
        for a in [
            "10.0.0.1:8080",
            "[::1]:443",
            "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(addr_value(addr).unwrap(), addr.to_string().as_str(), "{a}");
        }
    }
}
