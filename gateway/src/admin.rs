//! The gateway's admin port: `GET /ready` (the health endpoint linked
//! control planes probe: 200 once the gateway has its identity and its map,
//! 503 while draining), `/live`, `/metrics` and `/routes` (JSON summary).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferry_control::admin::{metrics_response, respond};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;

use crate::context::GatewayContext;

pub struct AdminState {
    pub ctx: Arc<GatewayContext>,
    pub registry: Registry,
    pub ready: AtomicBool,
}

pub fn route(req: &Request<Incoming>, admin: &AdminState) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/ready" if admin.ready.load(Ordering::Acquire) => {
            respond(StatusCode::OK, "text/plain", "ready\n".into())
        }
        "/ready" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        "/live" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" => metrics_response(&admin.registry),
        "/routes" => {
            let routes = admin.ctx.routes.load();
            let (targets, admitted) = routes.summary();
            let body = format!(
                "{{\"version\":{},\"targets\":{targets},\"admitted_trust_domains\":{admitted:?}}}\n",
                routes.version
            );
            respond(StatusCode::OK, "application/json", body)
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
