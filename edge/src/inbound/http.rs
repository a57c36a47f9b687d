//! An HTTP request arriving through the tunnel: authorize the caller for
//! the target port, strip any identity header that came from outside, add
//! the authenticated one, and forward to the local application in the
//! protocol the client's application spoke (HTTP/1.1, h2c, gRPC).
//! Response bodies and trailers stream back.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferry_transport::tunnel::headers::{
    FERRY_DESTINATION, FERRY_ERROR, FERRY_PROTOCOL, FERRY_SOURCE,
};
use ferry_transport::tunnel::{refuse, IncomingStream};
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, StatusCode, Uri};

use crate::context::EdgeContext;
use crate::tunnel_body::{pump_body, recv_to_body, PumpEnd};
use crate::wire::{strip_hop_by_hop, AppProtocol, FERRY_TARGET};

pub async fn serve(
    stream: IncomingStream,
    ctx: Arc<EdgeContext>,
    authz: &super::authz::Authorizer,
) {
    let start = Instant::now();
    let peer = stream.peer.clone();
    let headers = stream.request.headers();
    let target: Option<SocketAddr> = headers
        .get(FERRY_TARGET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let protocol = headers
        .get(FERRY_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(AppProtocol::parse)
        .unwrap_or(AppProtocol::Http1);
    let method = stream.request.method().clone();
    // For the access log (a reference-counted copy, not a new string).
    let uri = stream.request.uri().clone();
    let log = |status: u16, error: &str| {
        ctx.metrics.request(
            "inbound",
            peer.transport.as_str(),
            status,
            start.elapsed().as_secs_f64(),
        );
        tracing::info!(
            target: "access",
            direction = "inbound",
            src = %peer.id,
            dst = %ctx.id(),
            transport = %peer.transport,
            protocol = protocol.as_str(),
            method = %method,
            path = uri.path(),
            status,
            duration_us = start.elapsed().as_micros() as u64,
            error,
            "request"
        );
    };
    let Some(target) = target else {
        refuse(
            stream,
            StatusCode::BAD_REQUEST,
            "malformed",
            "missing or invalid ferry-target header",
        )
        .await;
        log(400, "malformed");
        return;
    };
    if !super::permitted(&ctx, authz, &peer, target.port()) {
        ctx.metrics.denied("http");
        tracing::warn!(client = %peer.id, port = target.port(), "request denied by policy");
        refuse(
            stream,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{} may not call port {}", peer.id, target.port()),
        )
        .await;
        log(403, "forbidden");
        return;
    }
    let IncomingStream {
        request,
        body,
        responder,
        ..
    } = stream;
    let (parts, ()) = request.into_parts();
    let authority: Cow<'_, str> = match parts.uri.authority() {
        Some(a) => Cow::Borrowed(a.as_str()),
        None => Cow::Owned(target.to_string()),
    };
    // HTTP/1.1 goes out in origin form with a Host header (the path as
    // parsed, not parsed again); h2c needs the scheme and authority for its
    // pseudo-headers.
    let uri = if protocol.is_h2() {
        let path_q = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = authority.rsplit_once(':').map_or(&*authority, |(h, _)| h);
        Uri::try_from(format!("http://{host}:{}{path_q}", target.port())).map_err(http::Error::from)
    } else {
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(origin).map_err(http::Error::from)
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    for h in [
        FERRY_TARGET,
        FERRY_PROTOCOL,
        FERRY_DESTINATION,
        FERRY_SOURCE,
    ] {
        headers.remove(h);
    }
    // Never trust an identity header from outside; set the authenticated one.
    headers.remove(&ctx.identity_header);
    if let Ok(v) = HeaderValue::from_str(peer.id.as_str()) {
        headers.insert(ctx.identity_header.clone(), v);
    }
    if !protocol.is_h2() {
        if let Ok(v) = HeaderValue::from_str(&authority) {
            headers.insert(http::header::HOST, v);
        }
    }
    // A declared empty body goes to the app as such (no chunked GET); the
    // tunnel's receive half is kept until the exchange ends.
    let declared_empty = headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    let (app_body, _held_recv) = if declared_empty {
        (crate::tunnel_body::empty(), Some(body))
    } else {
        (recv_to_body(body), None)
    };
    let mut req = match uri.and_then(|uri| {
        Request::builder()
            .method(parts.method)
            .uri(uri)
            .body(app_body)
    }) {
        Ok(r) => r,
        Err(e) => {
            let _ = responder
                .send_simple(
                    StatusCode::BAD_REQUEST,
                    Some("malformed"),
                    &format!("{e}\n"),
                )
                .await;
            log(400, "malformed");
            return;
        }
    };
    *req.headers_mut() = headers;
    let (resp, lease) = match ctx
        .app_clients
        .request(target.port(), protocol.is_h2(), req)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let code = if e.is_connect() {
                "app_unreachable"
            } else {
                "app_error"
            };
            tracing::debug!(error = %e, port = target.port(), "local application request failed");
            let _ = responder
                .send_simple(
                    StatusCode::BAD_GATEWAY,
                    Some(code),
                    &format!("application at port {}: {e}\n", target.port()),
                )
                .await;
            log(StatusCode::BAD_GATEWAY.as_u16(), code);
            return;
        }
    };
    let status = resp.status().as_u16();
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(FERRY_ERROR);
    let head = http::Response::from_parts(parts, ());
    let send = match responder.send_response(head).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "sending the response head failed");
            log(status, "stream_failed");
            return;
        }
    };
    log(status, "");
    let end = pump_body(body, send).await;
    tracing::trace!(?end, "response body done");
    // Read to its end, the application connection can take another request.
    if matches!(end, PumpEnd::Complete(_)) {
        lease.release().await;
    }
}
