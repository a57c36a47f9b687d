//! The admin listener: `GET /metrics` (Prometheus text), `/ready` (once
//! identity is loaded and every listener is bound), `/live`, `/config`
//! (effective configuration and current endpoints, JSON) and
//! `POST /shutdown` (accepted only from loopback).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::context::EdgeContext;
use crate::tunnel_body::{full, ProxyBody};

/// State the admin endpoints report.
pub struct AdminState {
    pub ctx: Arc<EdgeContext>,
    pub registry: Registry,
    pub ready: AtomicBool,
    /// The listeners as bound (JSON object).
    pub listeners: serde_json::Value,
    /// Cancelled when the drain is over: the admin port keeps answering
    /// (`/ready` 503) while the edge drains, and closes only then.
    pub stopped: tokio_util::sync::CancellationToken,
}

pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = state.stopped.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, peer, &state)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn route(req: Request<Incoming>, peer: SocketAddr, state: &AdminState) -> Response<ProxyBody> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            ferry_transport::metrics::encode_text(&state.registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n".into(), PLAIN),
        (&Method::GET, "/ready") => {
            if state.ready.load(Ordering::Acquire) && !state.ctx.shutdown.is_cancelled() {
                text(StatusCode::OK, "ready\n".into(), PLAIN)
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into(), PLAIN)
            }
        }
        (&Method::GET, "/config") => {
            let body = serde_json::to_string_pretty(&config_json(state)).unwrap_or_default();
            text(StatusCode::OK, body + "\n", "application/json")
        }
        (&Method::POST, "/shutdown") => {
            if peer.ip().is_loopback() {
                tracing::info!(%peer, "shutdown requested on the admin port");
                state.ctx.shutdown.cancel();
                text(StatusCode::OK, "shutting down\n".into(), PLAIN)
            } else {
                text(
                    StatusCode::FORBIDDEN,
                    "shutdown is accepted only from loopback\n".into(),
                    PLAIN,
                )
            }
        }
        (_, "/metrics" | "/live" | "/ready" | "/config" | "/shutdown") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
            PLAIN,
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), PLAIN),
    }
}

fn config_json(state: &AdminState) -> serde_json::Value {
    let ctx = &state.ctx;
    let snapshot = ctx.discovery.snapshot();
    let mut services: Vec<_> = snapshot
        .services
        .values()
        .map(|s| serde_json::to_value(&**s).unwrap_or_default())
        .collect();
    services.sort_by_key(|v| v["authority"].as_str().unwrap_or_default().to_string());
    let cfg = &ctx.cfg;
    serde_json::json!({
        "name": cfg.name.clone().unwrap_or_else(|| ctx.id().to_string()),
        "identity": {
            "id": ctx.id().to_string(),
            "source": if cfg.identity.is_some() { "files" } else { "control" },
            "cert": cfg.identity.as_ref().map(|i| &i.cert),
            "bundles": cfg.identity.as_ref().map(|i| &i.bundles),
            "not_after_unix": ctx.identity.current().not_after.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
            "reloads": ctx.identity.reload_count(),
        },
        "listeners": state.listeners,
        // The threads running the edge (`ferry edge --threads`).
        "runtime": {
            "threads": tokio::runtime::Handle::current().metrics().num_workers(),
        },
        "outbound": {
            "listeners": cfg.outbound.listeners.iter().map(|l| serde_json::json!({"listen": l.listen, "service": l.service})).collect::<Vec<_>>(),
            "transparent": cfg.outbound.transparent,
            "non_mesh": cfg.outbound.non_mesh,
            "server_first_ports": cfg.outbound.server_first_ports,
            "detect_timeout_ms": cfg.outbound.detect_timeout.as_millis() as u64,
            "request_timeout_ms": cfg.outbound.request_timeout.as_millis() as u64,
        },
        "inbound": {
            "identity_header": cfg.inbound.identity_header,
            "ports": cfg.inbound.ports,
        },
        "tunnel": {
            "head_start_ms": cfg.tunnel.head_start.as_millis() as u64,
            "force_transport": cfg.tunnel.force_transport.map(|t| format!("{t:?}").to_lowercase()),
        },
        "discovery": {
            "mesh_file": cfg.discovery.mesh_file,
            "version": ctx.discovery.version(),
            "services": services,
        },
    })
}
