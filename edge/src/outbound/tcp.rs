//! Opaque TCP from the application: pick an endpoint (per connection), open
//! a CONNECT tunnel to it, send the application's first bytes with it
//! ([`super::first_flight`]) and splice. Failures close the application's
//! connection promptly with a reset.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_transport::tunnel::splice::reset_tcp_stream;
use ferry_transport::tunnel::{splice, ConnectMeta, TunnelError};
use tokio::net::TcpStream;

use super::first_flight;
use super::route::Target;
use crate::config::NonMeshPolicy;
use crate::context::EdgeContext;

pub async fn forward(tcp: TcpStream, prefix: Bytes, target: Target, ctx: Arc<EdgeContext>) {
    let start = Instant::now();
    let endpoints = target.endpoints();
    let name = target.name();
    let meta = ConnectMeta {
        destination: Some(name.clone()),
        source: Some(ctx.id().to_string()),
        traceparent: None,
    };
    // Up to two endpoints while nothing of the connection has been sent:
    // a stream that could not be opened. Once open, the prefix and the
    // first flight are on it, and its failure ends the connection.
    let mut candidates = endpoints.clone();
    let mut opened = None;
    let mut early = 0u64;
    for _attempt in 0..2 {
        let Some((endpoint, lease)) = ctx.balancer.pick(&candidates) else {
            break;
        };
        if candidates.len() > 1 {
            candidates.retain(|e| e != &endpoint);
        }
        let peer = endpoint.peer_key();
        let attempt = tokio::time::timeout(ctx.cfg.outbound.connect_timeout, async {
            let mut pending = ctx.client.begin_tcp(&peer, endpoint.address, &meta).await?;
            if !prefix.is_empty() {
                pending.send.send_data(prefix.clone()).await?;
            }
            let (r, n) = first_flight::forward_until_answered(&tcp, pending).await;
            early = n;
            r
        })
        .await;
        match attempt {
            Ok(Ok(t)) => {
                opened = Some((t, endpoint, lease));
                break;
            }
            Ok(Err(e)) => {
                // The peer proxy answered (refusal, reset by policy): it is healthy.
                let answered = matches!(e, TunnelError::Refused { .. } | TunnelError::Stream(_));
                lease.done(answered);
                tracing::info!(target: "access", direction = "outbound", dst = %name, peer = %endpoint.id, error = %e, "tcp connect failed");
                // Retry only failures to reach the peer proxy; an answer
                // from it (a refusal, a reset by policy) would not change,
                // and the application's bytes already sent are gone.
                if answered || early > 0 {
                    break;
                }
            }
            Err(_) => {
                lease.done(false);
                tracing::info!(target: "access", direction = "outbound", dst = %name, peer = %endpoint.id, "tcp connect timed out");
                break;
            }
        }
    }
    let Some((tunnel, endpoint, mut lease)) = opened else {
        if endpoints.is_empty() {
            tracing::info!(target: "access", direction = "outbound", dst = %name, result = "no_endpoints", "tcp refused");
        }
        reset_tcp_stream(tcp);
        return;
    };
    lease.since(tunnel.opened_at);
    lease.done(true);
    let transport = tunnel.transport;
    let prefix_len = prefix.len() as u64 + early;
    let result = splice(
        tcp,
        tunnel.send,
        tunnel.recv,
        ctx.client.config().tcp_idle_timeout,
    )
    .await;
    let (sent, received, outcome) = match &result {
        Ok(s) => (
            s.tcp_to_stream + prefix_len,
            s.stream_to_tcp,
            if s.reset { "reset" } else { "closed" },
        ),
        Err(_) => (prefix_len, 0, "idle_timeout"),
    };
    ctx.metrics
        .tcp("outbound", transport.as_str(), sent, received);
    tracing::info!(
        target: "access",
        direction = "outbound",
        src = %ctx.id(),
        dst = %name,
        peer = %endpoint.id,
        transport = %transport,
        bytes_sent = sent,
        bytes_received = received,
        duration_ms = start.elapsed().as_millis() as u64,
        outcome,
        "tcp"
    );
}

/// A destination outside the mesh: connect directly, or refuse.
pub async fn forward_non_mesh(tcp: TcpStream, addr: std::net::SocketAddr, ctx: Arc<EdgeContext>) {
    if ctx.cfg.outbound.non_mesh == NonMeshPolicy::Refuse {
        tracing::info!(target: "access", direction = "outbound", dst = %addr, result = "refused_non_mesh", "tcp refused");
        reset_tcp_stream(tcp);
        return;
    }
    let upstream = match tokio::time::timeout(
        ctx.cfg.outbound.connect_timeout,
        TcpStream::connect(addr),
    )
    .await
    {
        Ok(Ok(u)) => u,
        _ => {
            reset_tcp_stream(tcp);
            return;
        }
    };
    let mut a = tcp;
    let mut b = upstream;
    let r = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    let (sent, received) = r.unwrap_or((0, 0));
    ctx.metrics.tcp("outbound", "direct", sent, received);
    tracing::info!(target: "access", direction = "outbound", dst = %addr, transport = "direct", bytes_sent = sent, bytes_received = received, "tcp");
}
