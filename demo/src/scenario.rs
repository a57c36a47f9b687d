//! The demo's traffic: one scenario is one protocol (HTTP/1.1, gRPC or
//! opaque TCP) sent by a cluster's `web` edge to a cluster's `api`
//! (its own, or the other through that cluster's gateway). Every answer is
//! checked (the right cluster answered, the caller's identity arrived,
//! echoed bytes are intact) and timed; the transport is read from the
//! proxies' own metrics, not assumed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

use crate::apps::{health_service, http_answer};
use crate::layout::workload_id;
use crate::scrape;

/// Requests (or connections) in flight at once in every scenario.
const CONCURRENCY: usize = 4;
/// Bytes each TCP connection sends and expects echoed.
const TCP_PAYLOAD: usize = 256 << 10;
/// The most any one request or connection may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Http, Protocol::Grpc, Protocol::Tcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }

    /// The service a `web` edge listener forwards to: the local one, or
    /// the other cluster's (`<name>.<ns>.svc.<cluster>`).
    pub fn service(self, remote: Option<&str>) -> String {
        let (name, port) = match self {
            Protocol::Http => ("api", 80),
            Protocol::Grpc => ("grpc", 50051),
            Protocol::Tcp => ("echo", 7),
        };
        match remote {
            None => format!("{name}.default:{port}"),
            Some(cluster) => format!("{name}.default.svc.{cluster}:{port}"),
        }
    }

    /// Requests (HTTP, gRPC) or connections (TCP) per scenario.
    pub fn count(self) -> usize {
        match self {
            Protocol::Http | Protocol::Grpc => 200,
            Protocol::Tcp => 16,
        }
    }
}

/// One row of the results table, before it runs.
pub struct Scenario {
    pub source: &'static str,
    pub dest: &'static str,
    pub protocol: Protocol,
    /// The source `web` edge's outbound listener for this service.
    pub listener: SocketAddr,
    /// The source `web` edge's admin (its metrics).
    pub source_admin: SocketAddr,
    /// For a cross-cluster scenario, the destination gateway's admin.
    pub gateway_admin: Option<SocketAddr>,
}

/// What a scenario did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub path: String,
    pub transport: String,
    pub passed: bool,
    pub error: Option<String>,
    pub requests: usize,
    pub succeeded: usize,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub bytes: u64,
}

/// One request's result: its latency and payload bytes, or why it failed.
type Sample = Result<(Duration, u64), String>;

impl Scenario {
    pub fn name(&self) -> String {
        format!("{} {} → {}", self.protocol.as_str(), self.source, self.dest)
    }

    pub fn path(&self) -> String {
        let (s, d) = (self.source, self.dest);
        if self.gateway_admin.is_some() {
            format!("{s}/web → {d}/gateway → {d}/api")
        } else {
            format!("{s}/web → {d}/api")
        }
    }

    /// One request or connection, to wait until the path works.
    pub async fn probe(&self) -> Result<(), String> {
        self.samples(1).await.remove(0).map(|_| ())
    }

    pub async fn run(&self) -> Outcome {
        let n = self.protocol.count();
        let before = self.transports().await;
        let samples = self.samples(n).await;
        let succeeded = samples.iter().filter(|s| s.is_ok()).count();
        let mut error = samples.iter().find_map(|s| s.clone().err());
        if self.protocol == Protocol::Tcp {
            // TCP connections are counted when the edge sees them end,
            // a moment after the client does.
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let grown: f64 = self.growth(&before).await.iter().map(|(_, d)| d).sum();
                if grown >= n as f64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let hop1 = self.growth(&before).await;
        let mut transport = label_list(&hop1);
        if hop1.iter().any(|(l, _)| l == "none") && error.is_none() {
            error = Some("the edge opened no tunnel stream for some requests".into());
        }
        if let Some(gateway) = self.gateway_admin {
            let hop2 = match scrape::metrics(gateway).await {
                Ok(text) => open_client_transports(&text),
                Err(e) => e,
            };
            transport = format!("{transport} → {hop2}");
        }
        let mut latencies: Vec<Duration> = samples.iter().flatten().map(|(d, _)| *d).collect();
        latencies.sort();
        let bytes = samples.iter().flatten().map(|(_, b)| b).sum();
        Outcome {
            name: self.name(),
            path: self.path(),
            transport,
            passed: succeeded == n && error.is_none(),
            error,
            requests: n,
            succeeded,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            bytes,
        }
    }

    /// The source edge's outbound requests (HTTP, gRPC) or TCP
    /// connections so far, by transport.
    async fn transports(&self) -> BTreeMap<String, f64> {
        let Ok(text) = scrape::metrics(self.source_admin).await else {
            return BTreeMap::new();
        };
        let metric = match self.protocol {
            Protocol::Tcp => "ferry_tcp_connections_total",
            _ => "ferry_requests_total",
        };
        scrape::sum_by(&text, metric, &[("direction", "outbound")], "transport")
    }

    async fn growth(&self, before: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
        scrape::grown(before, &self.transports().await)
    }

    async fn samples(&self, n: usize) -> Vec<Sample> {
        match self.protocol {
            Protocol::Http => self.http(n).await,
            Protocol::Grpc => self.grpc(n).await,
            Protocol::Tcp => self.tcp(n).await,
        }
    }

    /// GETs over keep-alive connections; the body names the cluster that
    /// answered and the caller identity its edge saw.
    async fn http(&self, n: usize) -> Vec<Sample> {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(CONCURRENCY)
            .build_http();
        let expected = Arc::new(http_answer(self.dest, &workload_id(self.source, "web")));
        let listener = self.listener;
        concurrently(n, move |i| {
            let client = client.clone();
            let expected = expected.clone();
            async move {
                let uri: http::Uri = format!("http://{listener}/demo/{i}")
                    .parse()
                    .map_err(|e| format!("{e}"))?;
                let resp = client.get(uri).await.map_err(|e| format!("HTTP: {e}"))?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("HTTP body: {e}"))?
                    .to_bytes();
                let text = String::from_utf8_lossy(&body);
                if status != http::StatusCode::OK || text != *expected {
                    return Err(format!(
                        "HTTP {status} {:?}, expected 200 {:?}",
                        text.trim_end(),
                        expected.trim_end()
                    ));
                }
                Ok(body.len() as u64)
            }
        })
        .await
    }

    /// `grpc.health.v1.Health/Check` on one channel: only the intended
    /// cluster's application reports `demo.<cluster>` as serving.
    async fn grpc(&self, n: usize) -> Vec<Sample> {
        let endpoint =
            match tonic::transport::Endpoint::from_shared(format!("http://{}", self.listener)) {
                Ok(e) => e.connect_timeout(REQUEST_TIMEOUT).timeout(REQUEST_TIMEOUT),
                Err(e) => return vec![Err(format!("gRPC endpoint: {e}")); n],
            };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return vec![Err(format!("gRPC connect: {e}")); n],
        };
        let client = HealthClient::new(channel);
        let service = health_service(self.dest);
        concurrently(n, move |_| {
            let mut client = client.clone();
            let req = HealthCheckRequest {
                service: service.clone(),
            };
            async move {
                let sent = req.encoded_len() as u64;
                let resp = client
                    .check(req)
                    .await
                    .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))?
                    .into_inner();
                if resp.status != ServingStatus::Serving as i32 {
                    return Err(format!("gRPC health status {}", resp.status));
                }
                Ok(sent + resp.encoded_len() as u64)
            }
        })
        .await
    }

    /// Connections that each send [`TCP_PAYLOAD`] bytes, half-close, and
    /// must read exactly those bytes back.
    async fn tcp(&self, n: usize) -> Vec<Sample> {
        let listener = self.listener;
        concurrently(n, move |i| async move {
            let payload: Vec<u8> = (0..TCP_PAYLOAD).map(|j| (j * 31 + i * 7) as u8).collect();
            let tcp = TcpStream::connect(listener)
                .await
                .map_err(|e| format!("TCP connect: {e}"))?;
            let (mut rd, mut wr) = tcp.into_split();
            let sent = payload.clone();
            let writer = tokio::spawn(async move {
                wr.write_all(&sent).await?;
                wr.shutdown().await
            });
            let mut back = Vec::with_capacity(TCP_PAYLOAD);
            (&mut rd)
                .take(TCP_PAYLOAD as u64 + 1)
                .read_to_end(&mut back)
                .await
                .map_err(|e| format!("TCP read: {e}"))?;
            writer
                .await
                .map_err(|e| format!("TCP write: {e}"))?
                .map_err(|e| format!("TCP write: {e}"))?;
            if back != payload {
                return Err(format!(
                    "TCP echo returned {} bytes that differ from the {} sent",
                    back.len(),
                    payload.len()
                ));
            }
            Ok(2 * TCP_PAYLOAD as u64)
        })
        .await
    }
}

/// Runs `one(i)` for `i` in `0..n`, [`CONCURRENCY`] at a time, each timed
/// and bounded by [`REQUEST_TIMEOUT`].
async fn concurrently<F, Fut>(n: usize, one: F) -> Vec<Sample>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, String>> + Send,
{
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY.min(n) {
        let one = one.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..n).step_by(CONCURRENCY) {
                let start = Instant::now();
                let r = match tokio::time::timeout(REQUEST_TIMEOUT, one(i)).await {
                    Ok(r) => r.map(|bytes| (start.elapsed(), bytes)),
                    Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
                };
                out.push(r);
            }
            out
        }));
    }
    let mut all = Vec::with_capacity(n);
    for w in workers {
        match w.await {
            Ok(samples) => all.extend(samples),
            Err(e) => all.push(Err(format!("client task failed: {e}"))),
        }
    }
    all
}

/// Labels joined with `+` (normally just one).
fn label_list(grown: &[(String, f64)]) -> String {
    if grown.is_empty() {
        return "?".into();
    }
    grown
        .iter()
        .map(|(l, _)| l.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// The transports of a gateway's open connections towards its own
/// cluster's edges (its client side).
fn open_client_transports(text: &str) -> String {
    let open = scrape::sum_by(
        text,
        "ferry_transport_open_connections",
        &[("side", "client")],
        "transport",
    );
    let live: Vec<(String, f64)> = open.into_iter().filter(|(_, v)| *v > 0.0).collect();
    label_list(&live)
}

/// The `q` quantile of sorted latencies (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 0.50), Some(ms(50)));
        assert_eq!(percentile(&sorted, 0.99), Some(ms(99)));
        assert_eq!(percentile(&[ms(7)], 0.99), Some(ms(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn services_name_the_local_or_remote_cluster() {
        assert_eq!(Protocol::Http.service(None), "api.default:80");
        assert_eq!(
            Protocol::Tcp.service(Some("west")),
            "echo.default.svc.west:7"
        );
    }

    #[test]
    fn a_gateway_reports_the_transports_it_holds_open() {
        let text = "ferry_transport_open_connections{transport=\"h2\",side=\"client\"} 1\n\
                    ferry_transport_open_connections{transport=\"quic\",side=\"client\"} 0\n\
                    ferry_transport_open_connections{transport=\"quic\",side=\"server\"} 3\n";
        assert_eq!(open_client_transports(text), "h2");
    }
}
