//! Two control planes on 127.0.0.1 (clusters east and west, each with its
//! own trust domain and CA) linked both ways through their mesh files:
//! east's edges see west's exported `api` as `api.default.svc.west:80`
//! (via west's gateway) and as failover for their own `api`, never west's
//! `db`; west shows east's control plane only exported services; Certify
//! hands out both bundles; west's mesh changes reach east's edges; west's
//! gateway going down withdraws the imports and coming back restores them;
//! west's control plane stopping keeps them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_control::api::{Service, WatchUpdate};
use ferry_control::client::{channel, watch, Certifier};
use ferry_control::{Overrides, RunningControl};
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityStore, SpiffeId, TrustBundles, TrustDomain};
use ferry_transport::metrics::transport::TransportMetrics;
use ferry_transport::tls::{TlsConfigs, ALPN_H2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const WEB_TOKEN: &str = "web-token";
const WAIT: Duration = Duration::from_secs(15);

/// A gateway's admin port that answers `/ready` with 200 or 503.
struct FakeGateway {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let state = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let status = if state.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = tcp.read(&mut buf).await;
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    let _ = tcp.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self { addr, up, task }
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One cluster: its directory (CA, mesh file), control plane and gateway.
struct Cluster {
    name: &'static str,
    dir: tempfile::TempDir,
    control: Option<RunningControl>,
    gateway: FakeGateway,
    api_workloads: usize,
}

fn td(cluster: &str) -> String {
    format!("{cluster}.test")
}

impl Cluster {
    async fn start(name: &'static str) -> Self {
        ferry_transport::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::generate(
            &TrustDomain::new(&td(name)).unwrap(),
            Duration::from_secs(86400),
        )
        .unwrap()
        .write(&dir.path().join("ca"), false)
        .unwrap();
        let mut cluster = Self {
            name,
            dir,
            control: None,
            gateway: FakeGateway::start().await,
            api_workloads: 1,
        };
        cluster.rewrite("");
        let control = RunningControl::start(
            &cluster.dir.path().join("mesh.toml"),
            Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                admin: Some("127.0.0.1:0".parse().unwrap()),
            },
        )
        .await
        .unwrap();
        ferry_multicluster::start(&control);
        cluster.control = Some(control);
        cluster
    }

    fn control(&self) -> &RunningControl {
        self.control.as_ref().expect("running")
    }

    /// Writes the mesh file (atomically), with `links` appended.
    fn rewrite(&self, links: &str) {
        let (name, td) = (self.name, td(self.name));
        let h = ferry_control::token::sha256_hex;
        let mut text = format!(
            r#"trust_domain = "{td}"
cluster = "{name}"
[ca]
dir = "ca"
[control]
reload_interval = "50ms"

[[workloads]]
name = "web-1"
id = "spiffe://{td}/ns/default/sa/web"
address = "127.0.0.1"
tunnel = "127.0.0.1:14143"
token_sha256 = "{}"
"#,
            h(WEB_TOKEN)
        );
        let mut members = Vec::new();
        for i in 1..=self.api_workloads {
            members.push(format!("\"api-{i}\""));
            text.push_str(&format!(
                r#"
[[workloads]]
name = "api-{i}"
id = "spiffe://{td}/ns/default/sa/api"
address = "127.0.0.{i}"
tunnel = "127.0.0.{i}:14144"
token_sha256 = "{}"
"#,
                h(&format!("api-token-{i}"))
            ));
        }
        text.push_str(&format!(
            r#"
[[services]]
name = "api"
namespace = "default"
workloads = [{}]
export = true
failover = true
[[services.ports]]
port = 80
target_port = 8080

[[services]]
name = "db"
namespace = "default"
workloads = ["api-1"]
[[services.ports]]
port = 5432

[[policies]]
service = "api.default"
allow_namespaces = ["default"]
{links}"#,
            members.join(", ")
        ));
        let tmp = self.dir.path().join("mesh.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.path().join("mesh.toml")).unwrap();
    }

    /// The `[[links]]` entry other clusters write for this one (its CA
    /// copied next to their mesh file).
    fn link_to(&self, from: &Cluster) -> String {
        let bundle = format!("{}-ca.pem", self.name);
        std::fs::copy(
            self.dir.path().join("ca/ca.pem"),
            from.dir.path().join(&bundle),
        )
        .unwrap();
        format!(
            r#"
[[links]]
cluster = "{}"
trust_domain = "{}"
control = "{}"
gateway = "127.0.0.1:15443"
gateway_health = "{}"
bundle = "{bundle}"
"#,
            self.name,
            td(self.name),
            self.control().grpc,
            self.gateway.addr
        )
    }

    fn bundles(&self) -> Arc<TrustBundles> {
        let mut b = TrustBundles::default();
        b.add_pem_file(&self.dir.path().join("ca/ca.pem")).unwrap();
        Arc::new(b)
    }

    /// The identity of this cluster's `web` workload, certified.
    async fn web(&self) -> Arc<TlsConfigs> {
        let material = Certifier::new(
            self.control().grpc,
            self.control().id.clone(),
            self.bundles(),
            SpiffeId::parse(&format!("spiffe://{}/ns/default/sa/web", td(self.name))).unwrap(),
            WEB_TOKEN.into(),
            TransportMetrics::new(),
        )
        .certify()
        .await
        .unwrap();
        TlsConfigs::new(IdentityStore::new(material), TransportMetrics::new())
    }

    async fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.control().admin).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}

/// What one watcher has seen: services, and the last full update.
#[derive(Default)]
struct Seen {
    services: BTreeMap<String, Service>,
    last_reset: Option<WatchUpdate>,
}

/// A watch of `grpc` (proving `server`) with `tls`, kept in a [`Seen`].
struct Watcher {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
}

impl Watcher {
    fn start(grpc: SocketAddr, server: SpiffeId, tls: Arc<TlsConfigs>) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = CancellationToken::new();
        let ch = channel(grpc, move || tls.client(&server, ALPN_H2));
        let into = seen.clone();
        tokio::spawn(watch(
            ch,
            Vec::new(),
            move |u: WatchUpdate| {
                let mut s = into.lock().unwrap();
                if u.reset {
                    s.services.clear();
                    s.last_reset = Some(u.clone());
                }
                for svc in u.services {
                    s.services.insert(svc.authority.clone(), svc);
                }
                for a in &u.removed {
                    s.services.remove(a);
                }
            },
            stop.clone(),
        ));
        Self { seen, stop }
    }

    /// Waits until `cond` holds for what was seen.
    async fn until(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let start = Instant::now();
        loop {
            if cond(&self.seen.lock().unwrap()) {
                return;
            }
            if start.elapsed() > WAIT {
                let s = self.seen.lock().unwrap();
                panic!("timed out waiting for {what}; seen: {:#?}", s.services);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// East and west, linked both ways (written after both started, so the
/// links arrive by reload).
async fn linked() -> (Cluster, Cluster) {
    let east = Cluster::start("east").await;
    let west = Cluster::start("west").await;
    east.rewrite(&west.link_to(&east));
    west.rewrite(&east.link_to(&west));
    (east, west)
}

const IMPORTED: &str = "api.default.svc.west:80";

fn imported_ok(s: &Seen, endpoints: usize) -> bool {
    s.services
        .get(IMPORTED)
        .is_some_and(|svc| svc.endpoints.len() == endpoints)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_services_are_imported_with_failover_and_follow_changes() {
    let (east, mut west) = linked().await;
    let web = east.web().await;
    let edge = Watcher::start(east.control().grpc, east.control().id.clone(), web);
    edge.until("west's api imported", |s| imported_ok(s, 1))
        .await;
    {
        let s = edge.seen.lock().unwrap();
        let api = &s.services[IMPORTED];
        assert!(!api.exported);
        let e = &api.endpoints[0];
        assert_eq!(e.cluster, "west");
        let gw = e.via_gateway.as_ref().expect("via gateway");
        assert_eq!(gw.address, "127.0.0.1:15443");
        assert_eq!(
            gw.spiffe_id,
            "spiffe://west.test/ns/ferry-system/sa/gateway"
        );
        assert!(
            !s.services
                .keys()
                .any(|k| k.starts_with("db.default.svc.west")),
            "{:?}",
            s.services.keys()
        );
        let reset = s.last_reset.as_ref().unwrap();
        assert!(reset.policy.is_some());
    }
    edge.until("west's api as failover for east's api", |s| {
        s.services.get("api.default:80").is_some_and(|api| {
            api.endpoints.len() == 2
                && !api.endpoints[0].failover
                && api.endpoints[0].cluster.is_empty()
                && api.endpoints[1].failover
                && api.endpoints[1].cluster == "west"
        })
    })
    .await;
    edge.until("the linked trust domains", |s| {
        s.last_reset
            .as_ref()
            .is_some_and(|r| r.linked_trust_domains == ["west.test"])
    })
    .await;
    // Certify (now that the link is known) hands out west's bundle too.
    let trusted: Vec<String> = east
        .web()
        .await
        .store()
        .current()
        .bundles
        .trust_domains()
        .map(ToString::to_string)
        .collect();
    assert_eq!(trusted, ["east.test", "west.test"]);

    // West as seen by east's control plane: exported services only, their
    // local endpoints only, no policy.
    let as_east = Watcher::start(
        west.control().grpc,
        west.control().id.clone(),
        east.control().tls().clone(),
    );
    as_east
        .until("west's exports", |s| s.last_reset.is_some())
        .await;
    {
        let s = as_east.seen.lock().unwrap();
        assert_eq!(
            s.services.keys().collect::<Vec<_>>(),
            ["api.default:80"],
            "only the exported service"
        );
        let api = &s.services["api.default:80"];
        assert_eq!(api.endpoints.len(), 1, "{api:?}");
        assert!(api.endpoints[0].cluster.is_empty());
        let reset = s.last_reset.as_ref().unwrap();
        assert!(reset.policy.is_none());
        assert_eq!(reset.linked_trust_domains, ["east.test"]);
    }
    drop(as_east);

    // A change in west's mesh file reaches east's edges.
    west.api_workloads = 2;
    west.rewrite(&east.link_to(&west));
    edge.until("west's new api endpoint", |s| imported_ok(s, 2))
        .await;

    let m = east.metrics().await;
    assert!(
        m.contains("ferry_control_link_up{cluster=\"west\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ferry_control_link_imported_services{cluster=\"west\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ferry_control_link_probe_seconds{cluster=\"west\"}"),
        "{m}"
    );

    // West's control plane stops: east keeps what it knew.
    west.control.take().unwrap().shutdown().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(imported_ok(&edge.seen.lock().unwrap(), 2));

    east.control.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_down_withdraws_the_imports_and_back_up_restores_them() {
    let (east, west) = linked().await;
    let edge = Watcher::start(
        east.control().grpc,
        east.control().id.clone(),
        east.web().await,
    );
    edge.until("west's api imported", |s| imported_ok(s, 1))
        .await;

    west.gateway.up.store(false, Ordering::SeqCst);
    let down = Instant::now();
    edge.until("west's api withdrawn", |s| {
        !s.services.contains_key(IMPORTED)
            && s.services
                .get("api.default:80")
                .is_some_and(|api| api.endpoints.len() == 1)
    })
    .await;
    let took = down.elapsed();
    assert!(took < Duration::from_secs(5), "withdrawn after {took:?}");
    let m = east.metrics().await;
    assert!(
        m.contains("ferry_control_link_up{cluster=\"west\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("ferry_control_link_imported_services{cluster=\"west\"} 0"),
        "{m}"
    );

    west.gateway.up.store(true, Ordering::SeqCst);
    edge.until("west's api restored", |s| imported_ok(s, 1))
        .await;
    edge.until("the failover endpoint restored", |s| {
        s.services
            .get("api.default:80")
            .is_some_and(|api| api.endpoints.len() == 2)
    })
    .await;

    for c in [east, west] {
        c.control.unwrap().shutdown().await;
    }
}
