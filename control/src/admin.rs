//! The control plane's admin listener: `GET /ready`, `/live`, `/metrics`
//! (Prometheus text) and `/mesh` (the served version and counts, JSON).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::StateHandle;

pub struct AdminState {
    pub registry: Registry,
    pub state: StateHandle,
}

pub async fn serve(listener: TcpListener, admin: Arc<AdminState>, stop: CancellationToken) {
    serve_http(listener, move |req| route(req, &admin), stop).await
}

/// A small HTTP/1.1 admin server: `route` answers each request; every
/// connection is bounded (10 s for the head, 60 s in all). Ends at `stop`.
pub async fn serve_http<F>(listener: TcpListener, route: F, stop: CancellationToken)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let route = Arc::new(route);
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let route = route.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let route = route.clone();
                async move { Ok::<_, Infallible>(route(&req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

/// `/metrics` in Prometheus text.
pub fn metrics_response(registry: &Registry) -> Response<Full<Bytes>> {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, registry) {
        Ok(()) => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            out,
        ),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

pub fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static parts")
}

fn route(req: &Request<Incoming>, admin: &AdminState) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/ready" | "/live" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" => metrics_response(&admin.registry),
        "/mesh" => {
            let s = admin.state.current();
            let body = format!(
                "{{\"version\":{},\"trust_domain\":\"{}\",\"workloads\":{},\"services\":{}}}\n",
                s.version,
                s.mesh.trust_domain,
                s.mesh.workloads.len(),
                s.services.len()
            );
            respond(StatusCode::OK, "application/json", body)
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
