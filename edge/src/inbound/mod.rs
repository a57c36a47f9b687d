//! Inbound: streams arriving on the tunnel port. `CONNECT` streams are
//! opaque TCP to the application's port; anything else is an HTTP request.
//! Both are authorized by the caller's SPIFFE ID first: denied HTTP gets
//! 403, denied TCP a stream reset; each denial is logged and counted.

pub mod app_client;
pub mod authz;
pub mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use ::http::{Method, StatusCode};
use ferry_transport::tunnel::{parse_target, refuse, serve_connect, IncomingStream, PeerInfo};

use tracing::Instrument;

use crate::context::EdgeContext;
use authz::Authorizer;

/// Handles one stream from the tunnel port: the tunnel server's
/// [`StreamHandler`](ferry_transport::tunnel::StreamHandler). Returns the
/// stream's one boxed future: each box is a copy of a state machine of
/// kilobytes, made per stream.
pub fn handle(
    stream: IncomingStream,
    ctx: Arc<EdgeContext>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    // The policy of the moment (the control plane may replace it).
    let authz = ctx.authz.load_full();
    let span = tracing::info_span!("inbound", client = %stream.peer.id, transport = %stream.peer.transport);
    if stream.request.method() == Method::CONNECT {
        Box::pin(async move { tcp(stream, ctx, &authz).await }.instrument(span))
    } else {
        Box::pin(async move { http::serve(stream, ctx, &authz).await }.instrument(span))
    }
}

/// The port's policy allows the caller, and a caller from another cluster
/// (its stream relayed by a gateway) reaches only exported services.
pub(crate) fn permitted(ctx: &EdgeContext, authz: &Authorizer, peer: &PeerInfo, port: u16) -> bool {
    if !authz.allows(&peer.id, port) {
        return false;
    }
    match &peer.via {
        None => true,
        Some(gateway) => {
            let ok = ctx.discovery.snapshot().exports(&ctx.id(), port);
            if !ok {
                tracing::warn!(client = %peer.id, %gateway, port, "port serves no exported service; refused to a caller from another cluster");
            }
            ok
        }
    }
}

async fn tcp(stream: IncomingStream, ctx: Arc<EdgeContext>, authz: &Authorizer) {
    let start = Instant::now();
    let peer = stream.peer.clone();
    let target = match parse_target(&stream.request) {
        Ok(t) => t,
        Err(e) => {
            refuse(stream, StatusCode::BAD_REQUEST, "malformed", &e).await;
            return;
        }
    };
    if !permitted(&ctx, authz, &peer, target.port()) {
        ctx.metrics.denied("tcp");
        tracing::warn!(client = %peer.id, port = target.port(), "TCP stream denied by policy");
        stream.responder.reset();
        return;
    }
    let local = SocketAddr::new(ctx.cfg.inbound.app_host, target.port());
    let r = serve_connect(
        stream,
        local,
        ctx.client.config().target_connect_timeout,
        ctx.client.config().tcp_idle_timeout,
    )
    .await;
    let (sent, received, outcome) = match &r {
        Ok(s) => (
            s.stream_to_tcp,
            s.tcp_to_stream,
            if s.reset {
                "reset".to_string()
            } else {
                "closed".to_string()
            },
        ),
        Err(e) => (0, 0, e.clone()),
    };
    ctx.metrics
        .tcp("inbound", peer.transport.as_str(), received, sent);
    tracing::info!(
        target: "access",
        direction = "inbound",
        src = %peer.id,
        dst = %ctx.id(),
        transport = %peer.transport,
        port = target.port(),
        bytes_to_app = sent,
        bytes_from_app = received,
        duration_ms = start.elapsed().as_millis() as u64,
        outcome = %outcome,
        "tcp"
    );
}
