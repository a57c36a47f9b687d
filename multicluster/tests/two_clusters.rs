//! Two whole clusters on 127.0.0.1, `east` and `west`, each with its own
//! trust domain and CA, its control plane (linked to the other's), an `api`
//! edge in front of HTTP, gRPC and TCP applications, a `web` edge for the
//! callers, and a gateway — every part certified by its own control plane,
//! every hop a real socket. East's callers reach west's exported services
//! as `<name>.default.svc.west` through west's gateway, with their own
//! identity end to end; the gateway admits linked trust domains and
//! exported targets only, holds no key of the inner sessions, pools them,
//! survives a restart under load, and falls back to TLS/TCP when UDP
//! between the clusters is dropped; east's `api` fails over to west's when
//! its local endpoint goes away, and comes back when it returns.

#[path = "../../edge/tests/support/grpc_app.rs"]
mod grpc_app;
#[path = "../../edge/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_control::client::Certifier;
use ferry_control::{Overrides, RunningControl};
use ferry_edge::RunningEdge;
use ferry_gateway::config::GatewayConfig;
use ferry_gateway::RunningGateway;
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{
    IdentityFiles, IdentityStore, SpiffeId, TrustBundles, TrustDomain,
};
use ferry_transport::metrics::transport::TransportMetrics;
use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::{PeerKey, TunnelClient, TunnelConfig, TunnelError};
use grpc_app::{grpc_app, Msg, UNARY};
use http_body_util::{BodyExt, Full};
use support::{admin_get, get, http_client, tcp_echo_app, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const NOWHERE: &str = "127.0.0.1:9";
/// The caller-side listeners of every `web` edge, in this order.
const API_REMOTE: usize = 0;
const ECHO_REMOTE: usize = 1;
const GRPC_REMOTE: usize = 2;
const API_LOCAL: usize = 3;

fn td(cluster: &str) -> String {
    format!("{cluster}.test")
}

fn id(cluster: &str, ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{}/ns/{ns}/sa/{sa}", td(cluster))).unwrap()
}

fn token(cluster: &str, sa: &str) -> String {
    format!("{cluster}-{sa}-token")
}

/// An HTTP application answering `<cluster> <caller identity>`.
async fn cluster_app(tag: &'static str) -> SocketAddr {
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
struct Apps {
    http: SocketAddr,
    echo: SocketAddr,
    grpc: SocketAddr,
    db: SocketAddr,
}

/// A tunnel address whose UDP is silently dropped and whose TCP is
/// forwarded to `to`: a network where UDP between the clusters is blocked.
struct UdpBlackhole {
    addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl UdpBlackhole {
    async fn start(to: SocketAddr) -> Self {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = tcp.local_addr().unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let count = dropped.clone();
        let swallow = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while udp.recv_from(&mut buf).await.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        let forward = tokio::spawn(async move {
            while let Ok((mut a, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut b) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        });
        Self {
            addr,
            dropped,
            tasks: vec![swallow, forward],
        }
    }
}

impl Drop for UdpBlackhole {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One cluster: its directory (CA, tokens, mesh file, configs), control
/// plane (with its links running), edges and gateway.
struct Cluster {
    name: &'static str,
    dir: tempfile::TempDir,
    apps: Apps,
    control: RunningControl,
    api: Option<RunningEdge>,
    web: RunningEdge,
    gateway: Option<RunningGateway>,
    gateway_stop: CancellationToken,
    api_tunnel: SocketAddr,
    links: String,
}

impl Cluster {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }

    /// Writes the mesh file: workloads web-1, api-1 and the gateway;
    /// services api (HTTP, exported, backed by the linked clusters'),
    /// echo (TCP, exported), grpc (exported) and db (TCP, not exported).
    fn write_mesh(
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

    fn rewrite_mesh(&self) {
        Self::write_mesh(
            self.dir.path(),
            self.name,
            &self.apps,
            self.api_tunnel,
            self.web.tunnel,
            &self.links,
        );
    }

    fn control_section(
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

    async fn start_edge(
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
    fn gateway_dir(&self) -> PathBuf {
        self.path("gateway")
    }

    async fn start_gateway(&self, tunnel: &str, admin: &str) -> RunningGateway {
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
    async fn start(name: &'static str, other: &'static str) -> Self {
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

    fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    /// The `[[links]]` entry that makes `self` import from `to`, with `to`'s
    /// gateway reached at `gateway` (its own tunnel address, or a path to
    /// it).
    fn link(&self, to: &Cluster, gateway: SocketAddr) -> String {
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

    fn listener(&self, which: usize) -> SocketAddr {
        self.web.outbound[which].0
    }

    async fn shutdown(mut self) {
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
async fn linked_through(path: impl AsyncFnOnce(SocketAddr) -> SocketAddr) -> (Cluster, Cluster) {
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

async fn linked() -> (Cluster, Cluster) {
    linked_through(async |gw| gw).await
}

async fn metric(admin: SocketAddr, line_prefix: &str) -> u64 {
    let (_, body) = admin_get(admin, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One HTTP/1.1 GET on a fresh connection: (status, body), or why not.
async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let client = http_client();
    get(&client, addr, path)
        .await
        .map(|(status, _, body)| (status, body))
        .map_err(|e| e.to_string())
}

/// Waits until `addr` answers 200 with a body starting with `tag`.
async fn until_answered_by(addr: SocketAddr, tag: &str, within: Duration) -> bool {
    let prefix = format!("{tag} ");
    wait_until(within, || async {
        matches!(fetch(addr, "/").await, Ok((200, body)) if body.starts_with(&prefix))
    })
    .await
}

async fn echo(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
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

async fn grpc_unary(addr: SocketAddr, text: &str) -> Result<Msg, tonic::Status> {
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
fn raw_client(store: Arc<IdentityStore>) -> TunnelClient {
    TunnelClient::new(
        TlsConfigs::new(store, TransportMetrics::new()),
        TunnelConfig::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_grpc_and_tcp_cross_clusters_with_the_callers_own_identity() {
    let (east, west) = linked().await;
    let caller = id("east", "default", "web").to_string();

    // HTTP: answered by west's application, which sees east's web itself.
    assert!(
        until_answered_by(east.listener(API_REMOTE), "west", Duration::from_secs(15)).await,
        "west's api is reachable from east: {:?}",
        fetch(east.listener(API_REMOTE), "/").await
    );
    let (status, body) = fetch(east.listener(API_REMOTE), "/").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, format!("west {caller}").as_str())
    );

    // gRPC: the reply names the caller's identity as west's server saw it.
    let reply = grpc_unary(east.listener(GRPC_REMOTE), "hi").await.unwrap();
    assert_eq!(reply.text, format!("hi from {caller}"));
    assert_eq!(reply.data, vec![2, 3, 4]);

    // Opaque TCP, 1 MiB both ways.
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(echo(east.listener(ECHO_REMOTE), &payload).await, payload);

    // 1,000 sequential fresh application connections: one inner session.
    for i in 0..1000 {
        let mut s = TcpStream::connect(east.listener(API_REMOTE)).await.unwrap();
        s.write_all(
            format!("GET /n{i} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "connection {i}: {out}");
    }
    let api_admin = west.api.as_ref().unwrap().admin;
    assert_eq!(
        metric(
            api_admin,
            "ferry_transport_handshakes_total{transport=\"h2\",side=\"server\",result=\"ok\"}"
        )
        .await,
        1,
        "one end-to-end handshake at west's api for every request, RPC and connection"
    );
    assert_eq!(
        metric(west.gateway().admin, "ferry_gateway_open_relays").await,
        1,
        "one pooled inner session through west's gateway"
    );

    // The gateway holds no key that could open the inner session: nothing
    // in its directory is a private key, and the inner session was
    // authenticated with east's web identity (shown above), which only
    // east's web edge can prove.
    for entry in std::fs::read_dir(west.gateway_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(!text.contains("PRIVATE KEY"), "{} holds a key", p.display());
        }
    }

    // West's gateway refuses targets that are not endpoints of exported
    // services, even from a linked caller with a valid identity.
    let web_tls = Certifier::new(
        east.control.grpc,
        east.control.id.clone(),
        {
            let mut b = TrustBundles::default();
            b.add_pem_file(&east.path("ca/ca.pem")).unwrap();
            Arc::new(b)
        },
        id("east", "default", "web"),
        token("east", "web"),
        TransportMetrics::new(),
    )
    .certify()
    .await
    .unwrap();
    let linked_client = raw_client(IdentityStore::new(web_tls));
    let gw_key = PeerKey::new(west.gateway().tunnel, id("west", "ferry-system", "gateway"));
    match linked_client
        .open_inner(&gw_key, NOWHERE.parse().unwrap())
        .await
    {
        Err(TunnelError::Refused { status, detail }) => {
            assert_eq!(status, 403, "{detail}");
        }
        other => panic!("an unexported target must be refused: {:?}", other.err()),
    }
    assert!(
        metric(
            west.gateway().admin,
            "ferry_gateway_refused_total{reason=\"not_exported\"}"
        )
        .await
            >= 1
    );

    // A caller from a trust domain no cluster linked is refused at the
    // gateway's handshake, and counted.
    let north = tempfile::tempdir().unwrap();
    let north_ca = CertificateAuthority::generate(
        &TrustDomain::new("north.test").unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    north_ca
        .issue(
            &SpiffeId::parse("spiffe://north.test/ns/default/sa/web").unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap()
        .write(north.path(), false)
        .unwrap();
    let mut files = IdentityFiles::in_dir(north.path());
    // The north caller trusts west's CA, so only west can say no.
    files.bundles.push(west.path("ca/ca.pem"));
    let north_client = raw_client(IdentityStore::load(&files).unwrap());
    let rejected_before = metric(west.gateway().admin, "ferry_tls_rejections_total").await;
    let refused = north_client.open_inner(&gw_key, west.api_tunnel).await;
    assert!(refused.is_err(), "an unlinked trust domain gets nothing");
    assert!(
        wait_until(Duration::from_secs(3), || async {
            metric(west.gateway().admin, "ferry_tls_rejections_total").await > rejected_before
        })
        .await,
        "the gateway counted the refused handshake"
    );

    // Only exported services were imported: west's db is not offered.
    let (_, config) = admin_get(east.web.admin, "/config").await;
    assert!(config.contains("api.default.svc.west"), "{config}");
    assert!(!config.contains("db.default.svc.west"), "{config}");

    east.shutdown().await;
    west.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_between_the_clusters_falls_back_to_tls_over_tcp() {
    // East reaches west's gateway only through a path that drops UDP.
    let mut hole = None;
    let (east, west) = linked_through(async |gw| {
        let h = UdpBlackhole::start(gw).await;
        let addr = h.addr;
        hole = Some(h);
        addr
    })
    .await;
    let hole = hole.unwrap();
    let caller = id("east", "default", "web").to_string();
    assert!(
        until_answered_by(east.listener(API_REMOTE), "west", Duration::from_secs(20)).await,
        "west's api is reachable without UDP: {:?}",
        fetch(east.listener(API_REMOTE), "/").await
    );
    let (_, body) = fetch(east.listener(API_REMOTE), "/").await.unwrap();
    assert_eq!(body, format!("west {caller}"));
    let payload: Vec<u8> = (0..256 << 10).map(|i| (i * 13 % 251) as u8).collect();
    assert_eq!(echo(east.listener(ECHO_REMOTE), &payload).await, payload);
    assert_eq!(
        grpc_unary(east.listener(GRPC_REMOTE), "x")
            .await
            .unwrap()
            .text,
        format!("x from {caller}")
    );
    let dropped = hole.dropped.load(Ordering::Relaxed);
    assert!(dropped > 0, "QUIC was tried and its datagrams dropped");
    let web = east.web.admin;
    assert!(
        metric(
            web,
            "ferry_transport_handshakes_total{transport=\"h2\",side=\"client\",result=\"ok\"}"
        )
        .await
            >= 2,
        "the outer hop (TLS/TCP) and the inner session"
    );
    assert!(metric(web, "ferry_transport_fallbacks_total").await >= 1);
    assert_eq!(
        metric(
            web,
            "ferry_transport_handshakes_total{transport=\"quic\",side=\"client\",result=\"ok\"}"
        )
        .await,
        0,
        "no QUIC handshake to west got through"
    );
    east.shutdown().await;
    west.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_remote_cluster_when_local_endpoints_go_away_and_back() {
    let (mut east, west) = linked().await;
    let local = east.listener(API_LOCAL);
    let caller = id("east", "default", "web").to_string();
    assert!(until_answered_by(local, "east", Duration::from_secs(10)).await);
    // West's api backs east's once the link is up.
    assert!(until_answered_by(east.listener(API_REMOTE), "west", Duration::from_secs(15)).await);

    // Steady traffic on east's own api while its only local endpoint goes
    // away and comes back.
    let stop = CancellationToken::new();
    let served = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let load = {
        let (stop, served) = (stop.clone(), served.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let slot = match fetch(local, "/").await {
                    Ok((200, b)) if b.starts_with("east ") => 0,
                    Ok((200, b)) if b.starts_with("west ") => 1,
                    _ => 2,
                };
                served[slot].fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let count = |i: usize| served[i].load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(5), || async { count(0) >= 5 }).await,
        "the local endpoint serves first"
    );
    east.api.take().unwrap().shutdown().await;
    let gone = Instant::now();
    assert!(
        until_answered_by(local, "west", Duration::from_secs(10)).await,
        "east's api fails over to west's"
    );
    eprintln!(
        "failed over {:?} after the local endpoint went away",
        gone.elapsed()
    );
    let (_, body) = fetch(local, "/").await.unwrap();
    assert_eq!(
        body,
        format!("west {caller}"),
        "the caller's identity crosses too"
    );

    // The local endpoint returns on its address.
    let mut back = None;
    for _ in 0..50 {
        let tunnel = east.api_tunnel.to_string();
        let dir = east.dir.path().to_path_buf();
        let text = std::fs::read_to_string(dir.join("api.toml")).unwrap();
        let text = text.replace(
            "listen = \"127.0.0.1:0\"\n[admin]",
            &format!("listen = \"{tunnel}\"\n[admin]"),
        );
        let cfg = Cluster::write(&dir, "api-again.toml", &text);
        match ferry_edge::start(ferry_edge::config::EdgeConfig::load(&cfg).unwrap()).await {
            Ok(e) => {
                back = Some(e);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    east.api = Some(back.expect("east's api edge restarts on its tunnel address"));
    let returned = Instant::now();
    assert!(
        until_answered_by(local, "east", Duration::from_secs(20)).await,
        "traffic returns to the local endpoint"
    );
    eprintln!(
        "back local {:?} after the endpoint returned",
        returned.elapsed()
    );
    let east_then = count(0);
    assert!(
        wait_until(Duration::from_secs(5), || async {
            count(0) >= east_then + 5
        })
        .await,
        "the local endpoint serves again"
    );
    stop.cancel();
    load.await.unwrap();
    let [by_east, by_west, failed] = [0, 1, 2].map(|i| served[i].load(Ordering::Relaxed));
    eprintln!("served by east {by_east}, by west {by_west}, failed {failed}");
    assert!(by_west > 0 && by_east > 0);
    assert_eq!(failed, 0, "no request failed while failing over and back");
    east.shutdown().await;
    west.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_under_load_recovers() {
    let (east, mut west) = linked().await;
    let remote = east.listener(API_REMOTE);
    assert!(until_answered_by(remote, "west", Duration::from_secs(15)).await);

    let stop = CancellationToken::new();
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, slowest) =
            (stop.clone(), ok.clone(), failed.clone(), slowest.clone());
        load.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let started = Instant::now();
                if matches!(fetch(remote, "/").await, Ok((200, _))) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                slowest.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (tunnel, admin) = (west.gateway().tunnel, west.gateway().admin);
    west.gateway_stop.cancel();
    west.gateway.take().unwrap().shutdown().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    west.gateway_stop = CancellationToken::new();
    let mut back = None;
    for _ in 0..50 {
        let stop = west.gateway_stop.clone();
        let cfg = west.gateway_dir().join("gateway.toml");
        let mut cfg = GatewayConfig::load(&cfg).unwrap();
        cfg.tunnel.listen = tunnel;
        cfg.admin.listen = admin;
        match ferry_gateway::start(cfg, stop).await {
            Ok(g) => {
                back = Some(g);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    west.gateway = Some(back.expect("the gateway restarts on its ports"));
    let restarted = Instant::now();
    let before = ok.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            ok.load(Ordering::Relaxed) > before + 20
        })
        .await,
        "traffic recovers through the restarted gateway"
    );
    eprintln!("recovered {:?} after the restart", restarted.elapsed());
    stop.cancel();
    for t in load {
        t.await.unwrap();
    }
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "{} answered, {failed} failed while the gateway was away",
        ok.load(Ordering::Relaxed)
    );
    assert!(failed > 0, "the gateway really was away");
    let slowest = Duration::from_millis(slowest.load(Ordering::Relaxed));
    assert!(
        slowest < Duration::from_secs(10),
        "no request hung while the gateway was away: slowest {slowest:?}"
    );
    for i in 0..20 {
        assert_eq!(fetch(remote, &format!("/after{i}")).await.unwrap().0, 200);
    }
    east.shutdown().await;
    west.shutdown().await;
}
