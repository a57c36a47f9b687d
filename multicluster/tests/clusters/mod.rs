//! Two whole clusters in one process on 127.0.0.1 (`east` and `west`, each
//! with its own trust domain, CA, control plane with links, `api` edge in
//! front of HTTP, gRPC and TCP applications, `web` edge for callers, and
//! gateway), and the clients that drive them. Shared by the two-cluster
//! tests and the cross-cluster benchmark.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_control::client::Certifier;
use ferry_control::{Overrides, RunningControl};
use ferry_edge::RunningEdge;
use ferry_gateway::config::GatewayConfig;
use ferry_gateway::RunningGateway;
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityStore, SpiffeId, TrustBundles, TrustDomain};
use ferry_transport::metrics::transport::TransportMetrics;
use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::{TunnelClient, TunnelConfig};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::grpc_app::{grpc_app, Msg, UNARY};
use crate::support::{self, admin_get, get, http_client, tcp_echo_app, wait_until};

pub const NOWHERE: &str = "127.0.0.1:9";
/// The caller-side listeners of every `web` edge, in this order.
pub const API_REMOTE: usize = 0;
pub const ECHO_REMOTE: usize = 1;
pub const GRPC_REMOTE: usize = 2;
pub const API_LOCAL: usize = 3;
pub const ECHO_LOCAL: usize = 4;

pub fn td(cluster: &str) -> String {
    format!("{cluster}.test")
}

pub fn id(cluster: &str, ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{}/ns/{ns}/sa/{sa}", td(cluster))).unwrap()
}

pub fn token(cluster: &str, sa: &str) -> String {
    format!("{cluster}-{sa}-token")
}

/// An HTTP application answering `<cluster> <caller identity>`.
pub async fn cluster_app(tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let caller = req
                            .headers()
                            .get("x-ferry-client-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string();
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            bytes::Bytes::from(format!("{tag} {caller}")),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
            });
        }
    });
    addr
}

/// The applications beside a cluster's `api` edge.
pub struct Apps {
    pub http: SocketAddr,
    pub echo: SocketAddr,
    pub grpc: SocketAddr,
    pub db: SocketAddr,
}

/// One cluster: its directory (CA, tokens, mesh file, configs), control
/// plane (with its links running), edges and gateway.
pub struct Cluster {
    pub name: &'static str,
    pub dir: tempfile::TempDir,
    pub apps: Apps,
    pub control: RunningControl,
    pub api: Option<RunningEdge>,
    pub web: RunningEdge,
    pub gateway: Option<RunningGateway>,
    pub gateway_stop: CancellationToken,
    pub api_tunnel: SocketAddr,
    pub links: String,
}

impl Cluster {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }

    /// Writes the mesh file: workloads web-1, api-1 and the gateway;
    /// services api (HTTP, exported, backed by the linked clusters'),
    /// echo (TCP, exported), grpc (exported) and db (TCP, not exported).
    pub fn write_mesh(
        dir: &std::path::Path,
        name: &str,
        apps: &Apps,
        api_tunnel: SocketAddr,
        web_tunnel: SocketAddr,
        links: &str,
    ) {
        let t = td(name);
        let h = |sa: &str| ferry_control::token::sha256_hex(&token(name, sa));
        let text = format!(
            r#"trust_domain = "{t}"
cluster = "{name}"
[ca]
dir = "ca"
[control]
reload_interval = "50ms"

[[workloads]]
name = "web-1"
id = "spiffe://{t}/ns/default/sa/web"
address = "127.0.0.1"
tunnel = "{web_tunnel}"
token_sha256 = "{}"

[[workloads]]
name = "api-1"
id = "spiffe://{t}/ns/default/sa/api"
address = "127.0.0.1"
tunnel = "{api_tunnel}"
ports = {{ http = {}, echo = {}, grpc = {}, db = {} }}
token_sha256 = "{}"

[[workloads]]
name = "gateway"
id = "spiffe://{t}/ns/ferry-system/sa/gateway"
address = "127.0.0.1"
tunnel = "{NOWHERE}"
token_sha256 = "{}"

[[services]]
name = "api"
namespace = "default"
workloads = ["api-1"]
export = true
failover = true
[[services.ports]]
port = 80
target_port = "http"
protocol = "http"

[[services]]
name = "echo"
namespace = "default"
workloads = ["api-1"]
export = true
[[services.ports]]
port = 7
target_port = "echo"
protocol = "tcp"

[[services]]
name = "grpc"
namespace = "default"
workloads = ["api-1"]
export = true
[[services.ports]]
port = 50051
target_port = "grpc"
protocol = "grpc"

[[services]]
name = "db"
namespace = "default"
workloads = ["api-1"]
[[services.ports]]
port = 5432
target_port = "db"
protocol = "tcp"
{links}"#,
            h("web"),
            apps.http.port(),
            apps.echo.port(),
            apps.grpc.port(),
            apps.db.port(),
            h("api"),
            h("gateway"),
        );
        Self::write(dir, "mesh.toml", &text);
    }

    pub fn rewrite_mesh(&self) {
        Self::write_mesh(
            self.dir.path(),
            self.name,
            &self.apps,
            self.api_tunnel,
            self.web.tunnel,
            &self.links,
        );
    }

    pub fn control_section(
        dir: &std::path::Path,
        name: &str,
        grpc: SocketAddr,
        ns: &str,
        sa: &str,
    ) -> String {
        Self::write(dir, &format!("{sa}.token"), &token(name, sa));
        format!(
            "[control]\naddress = \"{grpc}\"\nworkload_id = \"{}\"\ntoken_file = \"{}\"\nbundle = \"{}\"\n",
            id(name, ns, sa),
            dir.join(format!("{sa}.token")).display(),
            dir.join("ca/ca.pem").display()
        )
    }

    pub async fn start_edge(
        dir: &std::path::Path,
        name: &str,
        grpc: SocketAddr,
        sa: &str,
        tunnel: &str,
        listeners: &[String],
    ) -> RunningEdge {
        let mut text = format!(
            "shutdown_grace = \"1s\"\n{}[tunnel]\nlisten = \"{tunnel}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[outbound]\n",
            Self::control_section(dir, name, grpc, "default", sa)
        );
        for l in listeners {
            text +=
                &format!("[[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"{l}\"\n");
        }
        let cfg = Self::write(dir, &format!("{sa}.toml"), &text);
        let cfg = ferry_edge::config::EdgeConfig::load(&cfg).unwrap();
        tokio::time::timeout(Duration::from_secs(15), ferry_edge::start(cfg))
            .await
            .expect("the edge is ready within 15 s")
            .unwrap()
    }

    /// The gateway's own directory holds its configuration, its token and
    /// the CA certificate: no key of any kind (it generates its own key in
    /// memory and gets its certificate from the control plane).
    pub fn gateway_dir(&self) -> PathBuf {
        self.path("gateway")
    }

    pub async fn start_gateway(&self, tunnel: &str, admin: &str) -> RunningGateway {
        let dir = self.gateway_dir();
        std::fs::create_dir_all(dir.join("ca")).unwrap();
        std::fs::copy(self.path("ca/ca.pem"), dir.join("ca/ca.pem")).unwrap();
        let text = format!(
            "shutdown_grace = \"1s\"\n{}[tunnel]\nlisten = \"{tunnel}\"\n[admin]\nlisten = \"{admin}\"\n",
            Self::control_section(&dir, self.name, self.control.grpc, "ferry-system", "gateway")
        );
        let cfg = Self::write(&dir, "gateway.toml", &text);
        let cfg = GatewayConfig::load(&cfg).unwrap();
        tokio::time::timeout(
            Duration::from_secs(15),
            ferry_gateway::start(cfg, self.gateway_stop.clone()),
        )
        .await
        .expect("the gateway is ready within 15 s")
        .unwrap()
    }

    /// Starts the cluster (not yet linked). `other` names the cluster its
    /// `web` edge has listeners for.
    pub async fn start(name: &'static str, other: &'static str) -> Self {
        support::init();
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::generate(
            &TrustDomain::new(&td(name)).unwrap(),
            Duration::from_secs(86400),
        )
        .unwrap()
        .write(&dir.path().join("ca"), false)
        .unwrap();
        let apps = Apps {
            http: cluster_app(name).await,
            echo: tcp_echo_app().await,
            grpc: grpc_app().await,
            db: tcp_echo_app().await,
        };
        let nowhere: SocketAddr = NOWHERE.parse().unwrap();
        Self::write_mesh(dir.path(), name, &apps, nowhere, nowhere, "");
        let control = RunningControl::start(
            &dir.path().join("mesh.toml"),
            Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                admin: Some("127.0.0.1:0".parse().unwrap()),
            },
        )
        .await
        .unwrap();
        ferry_multicluster::start(&control);
        let api = Self::start_edge(dir.path(), name, control.grpc, "api", "127.0.0.1:0", &[]).await;
        let listeners = [
            format!("api.default.svc.{other}:80"),
            format!("echo.default.svc.{other}:7"),
            format!("grpc.default.svc.{other}:50051"),
            "api.default:80".to_string(),
            "echo.default:7".to_string(),
        ];
        let web = Self::start_edge(
            dir.path(),
            name,
            control.grpc,
            "web",
            "127.0.0.1:0",
            &listeners,
        )
        .await;
        let mut cluster = Self {
            name,
            dir,
            apps,
            control,
            api_tunnel: api.tunnel,
            api: Some(api),
            web,
            gateway: None,
            gateway_stop: CancellationToken::new(),
            links: String::new(),
        };
        cluster.rewrite_mesh();
        cluster.gateway = Some(cluster.start_gateway("127.0.0.1:0", "127.0.0.1:0").await);
        cluster
    }

    /// Stops the gateway (its ports are free once this returns).
    pub async fn stop_gateway(&mut self) {
        self.gateway_stop.cancel();
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        self.gateway_stop = CancellationToken::new();
    }

    /// Starts the gateway again on `tunnel` and `admin` (retrying while the
    /// ports are still held), its configuration changed by `tweak`.
    pub async fn restart_gateway(
        &mut self,
        tunnel: SocketAddr,
        admin: SocketAddr,
        tweak: impl Fn(&mut GatewayConfig),
    ) {
        for _ in 0..50 {
            let mut cfg = GatewayConfig::load(&self.gateway_dir().join("gateway.toml")).unwrap();
            cfg.tunnel.listen = tunnel;
            cfg.admin.listen = admin;
            tweak(&mut cfg);
            match ferry_gateway::start(cfg, self.gateway_stop.clone()).await {
                Ok(g) => {
                    self.gateway = Some(g);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("the gateway of {} did not restart on its ports", self.name);
    }

    /// A certificate for this cluster's workload `sa`, from its control
    /// plane (as the workload's own edge would get it).
    pub async fn certified(&self, sa: &str) -> Arc<IdentityStore> {
        let mut bundles = TrustBundles::default();
        bundles.add_pem_file(&self.path("ca/ca.pem")).unwrap();
        let material = Certifier::new(
            self.control.grpc,
            self.control.id.clone(),
            Arc::new(bundles),
            id(self.name, "default", sa),
            token(self.name, sa),
            TransportMetrics::new(),
        )
        .certify()
        .await
        .unwrap();
        IdentityStore::new(material)
    }

    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    /// The `[[links]]` entry that makes `self` import from `to`, with `to`'s
    /// gateway reached at `gateway` (its own tunnel address, or a path to
    /// it).
    pub fn link(&self, to: &Cluster, gateway: SocketAddr) -> String {
        let bundle = format!("{}-ca.pem", to.name);
        std::fs::copy(to.path("ca/ca.pem"), self.path(&bundle)).unwrap();
        format!(
            "\n[[links]]\ncluster = \"{}\"\ntrust_domain = \"{}\"\ncontrol = \"{}\"\ngateway = \"{gateway}\"\ngateway_health = \"{}\"\nbundle = \"{bundle}\"\nprobe_interval = \"250ms\"\n",
            to.name,
            td(to.name),
            to.control.grpc,
            to.gateway().admin
        )
    }

    pub fn listener(&self, which: usize) -> SocketAddr {
        self.web.outbound[which].0
    }

    pub async fn shutdown(mut self) {
        self.gateway_stop.cancel();
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        self.web.shutdown().await;
        if let Some(api) = self.api.take() {
            api.shutdown().await;
        }
        self.control.shutdown().await;
    }
}

/// East and west, linked both ways; east reaches west's gateway at the
/// address `path` gives for its tunnel address.
pub async fn linked_through(
    path: impl AsyncFnOnce(SocketAddr) -> SocketAddr,
) -> (Cluster, Cluster) {
    let (mut east, mut west) = tokio::join!(
        Cluster::start("east", "west"),
        Cluster::start("west", "east")
    );
    let west_gw = path(west.gateway().tunnel).await;
    east.links = east.link(&west, west_gw);
    west.links = west.link(&east, east.gateway().tunnel);
    east.rewrite_mesh();
    west.rewrite_mesh();
    (east, west)
}

pub async fn linked() -> (Cluster, Cluster) {
    linked_through(async |gw| gw).await
}

pub async fn metric(admin: SocketAddr, line_prefix: &str) -> u64 {
    let (_, body) = admin_get(admin, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One HTTP/1.1 GET on a fresh connection: (status, body), or why not.
pub async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let client = http_client();
    get(&client, addr, path)
        .await
        .map(|(status, _, body)| (status, body))
        .map_err(|e| e.to_string())
}

/// Waits until `addr` answers 200 with a body starting with `tag`.
pub async fn until_answered_by(addr: SocketAddr, tag: &str, within: Duration) -> bool {
    let prefix = format!("{tag} ");
    wait_until(within, || async {
        matches!(fetch(addr, "/").await, Ok((200, body)) if body.starts_with(&prefix))
    })
    .await
}

pub async fn echo(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(payload).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the echo answers within 10 s")
        .unwrap();
    out
}

pub async fn grpc_unary(addr: SocketAddr, text: &str) -> Result<Msg, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let m = Msg {
        text: text.into(),
        data: vec![1, 2, 3],
    };
    client
        .unary(
            tonic::Request::new(m),
            http::uri::PathAndQuery::from_static(UNARY),
            tonic_prost::ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .map(|r| r.into_inner())
}

/// A tunnel client proving `material`'s identity, for talking to a gateway
/// directly.
pub fn raw_client(store: Arc<IdentityStore>) -> TunnelClient {
    TunnelClient::new(
        TlsConfigs::new(store, TransportMetrics::new()),
        TunnelConfig::default(),
    )
    .unwrap()
}
