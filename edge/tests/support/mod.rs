//! Edge test harness: a throw-away PKI, edges started in-process on
//! 127.0.0.1 with port 0 (real listeners), small applications (HTTP/1.1
//! echo, h2c with trailers, TCP echo, banner), and a raw HTTP/1.1 client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ferry_edge::config::EdgeConfig;
use ferry_edge::RunningEdge;
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{SpiffeId, TrustDomain};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TD: &str = "edge.test";

pub fn init() {
    ferry_transport::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A temporary mesh: a CA and a directory for files.
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
}

impl Mesh {
    pub fn new() -> Self {
        init();
        let ca = CertificateAuthority::generate(
            &TrustDomain::new(TD).unwrap(),
            Duration::from_secs(86400),
        )
        .unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues identity files for `sa` into `<dir>/<sa>/`.
    pub fn identity(&self, sa: &str) -> (SpiffeId, PathBuf) {
        let id = SpiffeId::parse(&format!("spiffe://{TD}/ns/default/sa/{sa}")).unwrap();
        let dir = self.path(sa);
        self.ca
            .issue(&id, Duration::from_secs(3600))
            .unwrap()
            .write(&dir, true)
            .unwrap();
        (id, dir)
    }

    /// Writes a file atomically (temporary file, then rename), as config
    /// management does.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }
}

/// One service for a mesh file.
pub struct Svc<'a> {
    pub name: &'a str,
    pub port: u16,
    pub protocol: &'a str,
    /// (app address, tunnel address, id)
    pub endpoints: Vec<(SocketAddr, SocketAddr, SpiffeId)>,
}

pub fn mesh_toml(services: &[Svc]) -> String {
    let mut s = String::new();
    for svc in services {
        s += &format!(
            "[[services]]\nname = \"{}\"\nnamespace = \"default\"\nport = {}\nprotocol = \"{}\"\n",
            svc.name, svc.port, svc.protocol
        );
        for (addr, tunnel, id) in &svc.endpoints {
            s += &format!("[[services.endpoints]]\naddress = \"{addr}\"\ntunnel = \"{tunnel}\"\nid = \"{id}\"\n");
        }
    }
    s
}

/// Options of one edge.
#[derive(Default, Clone)]
pub struct EdgeOpts {
    /// (service authority) per explicit listener.
    pub listeners: Vec<String>,
    pub force_transport: Option<&'static str>,
    /// Extra TOML appended to the config (e.g. `[[inbound.ports]]`).
    pub extra: String,
    /// Extra `[outbound]` keys.
    pub outbound_extra: String,
    /// Extra `[tunnel]` keys.
    pub tunnel_extra: String,
    pub tunnel_listen: Option<SocketAddr>,
}

/// Writes an edge config and starts the edge.
pub async fn start_edge(mesh: &Mesh, sa: &str, mesh_file: &Path, opts: &EdgeOpts) -> RunningEdge {
    let cfg_path = write_edge_config(mesh, sa, mesh_file, opts);
    let cfg = EdgeConfig::load(&cfg_path).unwrap();
    ferry_edge::start(cfg).await.unwrap()
}

/// A server edge "api" in front of `app` and a client edge "web" with one
/// listener for it: service `name` at the app's port with the `protocol`
/// hint, both edges on `transport`. Returns (server, client).
pub async fn edge_pair(
    mesh: &Mesh,
    app: SocketAddr,
    name: &str,
    protocol: &'static str,
    transport: &'static str,
) -> (RunningEdge, RunningEdge) {
    let opts = EdgeOpts {
        force_transport: Some(transport),
        ..Default::default()
    };
    edge_pair_with(mesh, app, name, protocol, &opts).await
}

/// [`edge_pair`] with `opts` for both edges (the client edge adds its
/// listener to them).
pub async fn edge_pair_with(
    mesh: &Mesh,
    app: SocketAddr,
    name: &str,
    protocol: &'static str,
    opts: &EdgeOpts,
) -> (RunningEdge, RunningEdge) {
    let empty = mesh.write("empty-mesh.toml", "");
    let server = start_edge(mesh, "api", &empty, opts).await;
    let (api_id, _) = mesh.identity("api");
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name,
            port: app.port(),
            protocol,
            endpoints: vec![(app, server.tunnel, api_id)],
        }]),
    );
    let mut listeners = opts.listeners.clone();
    listeners.push(format!("{name}.default:{}", app.port()));
    let client = start_edge(
        mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners,
            ..opts.clone()
        },
    )
    .await;
    (server, client)
}

pub fn write_edge_config(mesh: &Mesh, sa: &str, mesh_file: &Path, opts: &EdgeOpts) -> PathBuf {
    let (_, dir) = mesh.identity(sa);
    let mut t = format!(
        "shutdown_grace = \"5s\"\n[identity]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\nbundles = [\"{d}/bundle.pem\"]\nreload_interval = \"200ms\"\n\
         [tunnel]\nlisten = \"{}\"\n",
        opts.tunnel_listen.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:0".into()),
        d = dir.display()
    );
    if let Some(f) = opts.force_transport {
        t += &format!("force_transport = \"{f}\"\n");
    }
    t += &opts.tunnel_extra;
    t += "[admin]\nlisten = \"127.0.0.1:0\"\n";
    t += &format!(
        "[discovery]\nmesh_file = \"{}\"\nreload_interval = \"100ms\"\n",
        mesh_file.display()
    );
    t += &format!("[outbound]\n{}\n", opts.outbound_extra);
    for l in &opts.listeners {
        t += &format!("[[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"{l}\"\n");
    }
    t += &opts.extra;
    mesh.write(&format!("{sa}.toml"), &t)
}

/// An HTTP/1.1 + h2c application: echoes method, path, the identity header
/// and the body; `/trailers` answers with trailers (gRPC style).
pub async fn http_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<Incoming>| async move {
                    let id = req
                        .headers()
                        .get("x-ferry-client-id")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    let head = format!(
                        "{} {} id={} v={:?}\n",
                        req.method(),
                        req.uri().path_and_query().map_or("/", |p| p.as_str()),
                        id,
                        req.version()
                    );
                    let trailers = req.uri().path() == "/trailers";
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let mut out = head.into_bytes();
                    out.extend_from_slice(&body);
                    if trailers {
                        let mut t = http::HeaderMap::new();
                        t.insert("grpc-status", "0".parse().unwrap());
                        t.insert("x-trailer", "yes".parse().unwrap());
                        let frames = futures::stream::iter(vec![
                            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(
                                out,
                            ))),
                            Ok(http_body::Frame::trailers(t)),
                        ]);
                        let body = http_body_util::StreamBody::new(frames).boxed();
                        return Ok::<_, std::convert::Infallible>(hyper::Response::new(body));
                    }
                    Ok(hyper::Response::new(
                        Full::new(Bytes::from(out)).map_err(|e| match e {}).boxed(),
                    ))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A raw TCP application on a free loopback port: every accepted
/// connection is handed to `serve` on its own task.
pub async fn raw_app<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// A TCP echo application.
pub async fn tcp_echo_app() -> SocketAddr {
    raw_app(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// A server-speaks-first application: sends a banner, then echoes.
pub async fn banner_app(banner: &'static [u8]) -> SocketAddr {
    raw_app(move |mut s| async move {
        let _ = s.write_all(banner).await;
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// Sends one raw HTTP/1.1 request and reads the whole response (Connection: close).
pub async fn http1_raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A GET to the admin port; returns (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    admin_req(addr, "GET", path).await
}

pub async fn admin_req(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let resp = http1_raw(addr, &format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")).await;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ---- Helpers for the lifecycle, websocket, bad-input and config tests ----

/// Starts an edge, returning the error instead of panicking (restarts on a
/// port that may still be held briefly by the previous edge).
pub async fn try_start_edge(
    mesh: &Mesh,
    sa: &str,
    mesh_file: &Path,
    opts: &EdgeOpts,
) -> Result<RunningEdge, ferry_edge::EdgeError> {
    let cfg_path = write_edge_config(mesh, sa, mesh_file, opts);
    let cfg = EdgeConfig::load(&cfg_path).unwrap();
    ferry_edge::start(cfg).await
}

/// An HTTP/1.1 + h2c application answering every request with
/// `<tag> <path>` after `delay`; counts the requests it received.
pub async fn tagged_app(
    tag: &'static str,
    delay: Duration,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let path = req.uri().path().to_string();
                        let _ = req.into_body().collect().await;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(format!("{tag} {path}")),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A raw application for upgrades: reads one HTTP/1.1 request head,
/// records it verbatim, answers `101 Switching Protocols` (or `200
/// Connection Established` to a CONNECT), then echoes every byte.
pub async fn upgrade_echo_app() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = heads.clone();
    let addr = raw_app(move |mut s| {
        let record = record.clone();
        async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let answer: &[u8] = if text.starts_with("CONNECT ") {
                b"HTTP/1.1 200 Connection Established\r\n\r\n"
            } else {
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            };
            record.lock().unwrap().push(text);
            if s.write_all(answer).await.is_err() {
                return;
            }
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        }
    })
    .await;
    (addr, heads)
}

/// A pooled HTTP/1.1 client (keep-alive) for load loops.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<Bytes>,
>;

pub fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

/// GET `http://addr/path`; (status, ferry-error header, body) or the error.
pub async fn get(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String, String), String> {
    let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
    let fut = async {
        let resp = client.get(uri).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let err = resp
            .headers()
            .get("ferry-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok((status, err, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "timed out after 10s".to_string())?
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `discovery.version` an edge reports on `/config`.
pub async fn discovery_version(admin: SocketAddr) -> u64 {
    let (_, body) = admin_get(admin, "/config").await;
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["discovery"]["version"]
        .as_u64()
        .unwrap()
}
