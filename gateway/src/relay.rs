//! One stream at the gateway: it must be an inner session (`CONNECT` with
//! `ferry-inner: h2`) from a linked cluster's identity, to the tunnel port
//! of an edge serving an exported service. The gateway opens its own hop
//! to that edge (mTLS with the gateway's identity, the edge's identity
//! checked) and copies the inner session's bytes both ways: ciphertext it
//! has no key for. Refusals get a status and a `ferry-error`, and count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_transport::tunnel::headers::{FERRY_INNER, INNER_H2};
use ferry_transport::tunnel::{parse_target, refuse, relay, IncomingStream, PeerKey};
use http::{Method, StatusCode};
use tokio::sync::Semaphore;

use crate::context::GatewayContext;

/// Relays open per caller identity.
#[derive(Debug, Default)]
pub struct PerCaller {
    open: Mutex<HashMap<String, usize>>,
}

/// Holds one of a caller's relay slots.
pub struct CallerSlot {
    table: Arc<PerCaller>,
    caller: String,
}

impl PerCaller {
    pub fn acquire(self: &Arc<Self>, caller: &str, limit: usize) -> Option<CallerSlot> {
        let mut open = self.open.lock().expect("caller table");
        let n = open.entry(caller.to_string()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(CallerSlot {
            table: self.clone(),
            caller: caller.to_string(),
        })
    }
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().expect("caller table");
        if let Some(n) = open.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

pub async fn handle(stream: IncomingStream, ctx: Arc<GatewayContext>, total: Arc<Semaphore>) {
    let caller = stream.peer.id.clone();
    let inner = stream
        .request
        .headers()
        .get(FERRY_INNER)
        .is_some_and(|v| v == INNER_H2);
    if stream.request.method() != Method::CONNECT || !inner {
        ctx.metrics.refused("not_inner");
        tracing::warn!(%caller, method = %stream.request.method(), "not an inner session; refused");
        return refuse(
            stream,
            StatusCode::BAD_REQUEST,
            "not_inner",
            "the gateway relays inner sessions only (CONNECT with ferry-inner: h2)",
        )
        .await;
    }
    let target = match parse_target(&stream.request) {
        Ok(t) => t,
        Err(e) => {
            ctx.metrics.refused("malformed");
            return refuse(stream, StatusCode::BAD_REQUEST, "malformed", &e).await;
        }
    };
    let routes = ctx.routes.load_full();
    if !routes.admits(&caller) {
        ctx.metrics.refused("not_linked");
        tracing::warn!(%caller, %target, "caller's trust domain is not linked; refused");
        return refuse(
            stream,
            StatusCode::FORBIDDEN,
            "not_linked",
            &format!(
                "trust domain {} is not linked to this cluster",
                caller.trust_domain()
            ),
        )
        .await;
    }
    let Some(target_id) = routes.target(target).cloned() else {
        ctx.metrics.refused("not_exported");
        tracing::warn!(%caller, %target, "target is not an endpoint of an exported service; refused");
        return refuse(
            stream,
            StatusCode::FORBIDDEN,
            "not_exported",
            &format!("{target} is not an endpoint of an exported service"),
        )
        .await;
    };
    let limits = &ctx.cfg.limits;
    let (Some(_slot), Ok(_permit)) = (
        ctx.per_caller
            .acquire(&caller.to_string(), limits.relays_per_caller),
        total.try_acquire_owned(),
    ) else {
        ctx.metrics.refused("limit");
        tracing::warn!(%caller, "relay limit reached; refused");
        return refuse(
            stream,
            StatusCode::SERVICE_UNAVAILABLE,
            "limit",
            "too many relays open",
        )
        .await;
    };
    let peer = PeerKey::new(target, target_id.clone());
    let upstream = match ctx.client.open_inner(&peer, target).await {
        Ok(t) => t,
        Err(e) => {
            ctx.metrics.refused("upstream_failed");
            tracing::warn!(%caller, %target, error = %e, "could not reach the destination edge");
            return refuse(
                stream,
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                &e.to_string(),
            )
            .await;
        }
    };
    let ok = http::Response::builder()
        .status(StatusCode::OK)
        .body(())
        .expect("static response");
    let Ok(send) = stream.responder.send_response(ok).await else {
        return;
    };
    ctx.metrics.open_relays.inc();
    tracing::debug!(%caller, %target, to = %target_id, "relaying an inner session");
    let stats = relay(
        (send, stream.body),
        (upstream.send, upstream.recv),
        limits.idle_timeout,
    )
    .await;
    ctx.metrics.open_relays.dec();
    ctx.metrics.relays.inc();
    let bytes = |direction| {
        ctx.metrics
            .bytes
            .get_or_create(&crate::metrics::DirectionLabels { direction })
    };
    bytes("to_destination").inc_by(stats.a_to_b);
    bytes("to_caller").inc_by(stats.b_to_a);
    tracing::debug!(%caller, %target, to_destination = stats.a_to_b, to_caller = stats.b_to_a, reset = stats.reset, "relay ended");
}
