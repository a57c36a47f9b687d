//! Outbound: connections from the local application. Explicit listeners
//! name their service; the transparent listener reads the original
//! destination. Each connection is routed (service, endpoint or not in the
//! mesh), its protocol detected, and carried as HTTP requests or as an
//! opaque TCP tunnel.

pub mod connect_proxy;
pub mod detect;
pub mod first_flight;
pub mod http;
pub mod original_dst;
pub mod route;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::context::EdgeContext;
use crate::discovery::Protocol;
use detect::Detected;
use route::{resolve, Target};

/// Where an accepted connection wants to go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// An explicit listener's service authority.
    Service(String),
    /// The original destination of a redirected connection.
    Original(SocketAddr),
}

/// Accepts connections until shutdown. `dest` is `None` for the
/// transparent listener (read `SO_ORIGINAL_DST`).
pub async fn serve(listener: TcpListener, dest: Option<String>, ctx: Arc<EdgeContext>) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "outbound accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = ctx.shutdown.cancelled() => return,
        };
        let destination = match &dest {
            Some(s) => Destination::Service(s.clone()),
            None => match original_dst::original_dst(&tcp) {
                Ok(a) => Destination::Original(a),
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "no original destination on the transparent listener; closing");
                    continue;
                }
            },
        };
        let c = ctx.clone();
        ctx.tasks.spawn(async move {
            handle(tcp, peer, destination, c).await;
        });
    }
}

async fn handle(mut tcp: TcpStream, client: SocketAddr, dest: Destination, ctx: Arc<EdgeContext>) {
    let _ = tcp.set_nodelay(true);
    let snapshot = ctx.discovery.snapshot();
    let target = resolve(&snapshot, &dest);
    let span = tracing::info_span!("outbound", %client, dst = %target.name());
    let _enter = span.enter();
    let port = target.port();
    let hint = target.protocol();
    let server_first = port.is_some_and(|p| ctx.cfg.outbound.server_first_ports.contains(&p));
    drop(_enter);
    if let Target::NonMesh(addr) = target {
        tcp::forward_non_mesh(tcp, addr, ctx).await;
        return;
    }
    // A service declared HTTP is served as HTTP at any client pace: a
    // client slower than the detection timeout (a loaded node, a connection
    // opened ahead of its first request) would otherwise become an opaque
    // tunnel pinned to one endpoint, past discovery changes and per-request
    // balancing. It gets as long as any request head (`http::HEAD_TIMEOUT`).
    let declared_http = matches!(hint, Protocol::Http | Protocol::Grpc);
    let (detected, prefix) = if server_first || hint == Protocol::Tcp {
        ctx.metrics
            .detected(if server_first { "server_first" } else { "hint" });
        (Detected::Opaque, bytes::Bytes::new())
    } else {
        let wait = match declared_http {
            true => http::HEAD_TIMEOUT,
            false => ctx.cfg.outbound.detect_timeout,
        };
        // A connection still silent when the edge drains is closed at once
        // (the wait may be long), as hyper does with an idle keep-alive one.
        let (d, p) = tokio::select! {
            r = detect::detect(&mut tcp, wait) => r,
            _ = ctx.shutdown.cancelled() => return,
        };
        ctx.metrics.detected(d.label());
        (d, p)
    };
    tracing::debug!(%client, ?detected, "protocol detected");
    match detected {
        Detected::Timeout if declared_http => {
            tracing::debug!(%client, "no request within {:?} on an HTTP service; closed", http::HEAD_TIMEOUT);
        }
        Detected::Http1 | Detected::H2 => {
            http::serve(tcp, prefix, detected, target, ctx).await;
        }
        Detected::Http1Connect => connect_proxy::serve(tcp, prefix, ctx).await,
        Detected::Http1Upgrade | Detected::Opaque | Detected::Timeout => {
            tcp::forward(tcp, prefix, target, ctx).await;
        }
    }
}
