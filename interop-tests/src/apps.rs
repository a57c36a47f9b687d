//! Small in-process applications behind the edges, on the shared runtime:
//! a TCP echo that records a digest of every connection, and an HTTP/1.1 +
//! h2c application that describes each request it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::digest::{Pattern, Tally};
use crate::runtime::rt;

/// What the echo application received on one connection (recorded when the
/// client finished sending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub bytes: u64,
    pub sha256: String,
}

/// A TCP echo application: echoes every byte, half-closes after the
/// client's FIN, and records what each connection carried.
pub struct TcpEcho {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    /// Serves on `listener` (bound anywhere, e.g. inside a namespace).
    pub fn start(listener: std::net::TcpListener) -> TcpEcho {
        let addr = listener.local_addr().expect("local_addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let task = rt().spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) => break,
                            Ok(n) => {
                                tally.update(&buf[..n]);
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                    let _ = s.shutdown().await;
                    rec.lock().unwrap().push(Received {
                        bytes: tally.bytes,
                        sha256: tally.hex(),
                    });
                });
            }
        });
        TcpEcho {
            addr,
            received,
            task,
        }
    }

    /// On 127.0.0.1, port 0.
    pub fn loopback() -> TcpEcho {
        TcpEcho::start(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    /// Waits (at most `timeout`) until `n` connections have finished; all
    /// finished connections so far.
    pub fn wait_finished(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connections finished so far.
    pub fn finished(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/1.1 + h2c application (prior knowledge or HTTP/1.1). Paths:
/// - `/status/<code>`: answers `<code>` with body `status <code>`;
/// - `/bytes/<n>?seed=<s>`: `n` bytes of [`Pattern`] `s` (default 1);
/// - anything else: 200 with a JSON description of the request (method,
///   path, HTTP version, the caller identity header, `x-test`, the body's
///   length and SHA-256).
pub struct HttpApp {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

async fn answer(req: hyper::Request<Incoming>) -> hyper::Response<Body> {
    let path = req.uri().path().to_string();
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(400);
        let mut r = hyper::Response::new(full(format!("status {code}")));
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_REQUEST);
        return r;
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        let seed = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("seed="))
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let mut data = vec![0u8; n];
        Pattern::new(seed).fill(&mut data);
        return hyper::Response::new(full(data));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut desc = serde_json::json!({
        "method": req.method().as_str(),
        "path": path,
        "query": req.uri().query().unwrap_or(""),
        "version": format!("{:?}", req.version()),
        "client_id": header("x-ferry-client-id"),
        "x_test": header("x-test"),
    });
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut t = Tally::default();
    t.update(&body);
    desc["body_len"] = t.bytes.into();
    desc["body_sha256"] = t.hex().into();
    let mut r = hyper::Response::new(full(desc.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl HttpApp {
    /// Serves on `listener`.
    pub fn start(listener: std::net::TcpListener) -> HttpApp {
        let addr = listener.local_addr().expect("local_addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let task = rt().spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|req| async move {
                        Ok::<_, std::convert::Infallible>(answer(req).await)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        HttpApp { addr, task }
    }

    /// On 127.0.0.1, port 0.
    pub fn loopback() -> HttpApp {
        HttpApp::start(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
    }
}

impl Drop for HttpApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
