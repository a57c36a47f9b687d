//! Edges that take their certificate and discovery from a real control
//! plane (in-process, TLS gRPC on 127.0.0.1:0): certified then ready;
//! renewal with a 3-second TTL under steady traffic drops nothing; a mesh
//! file change reaches the edges and traffic follows; a broken mesh file is
//! ignored; the control plane restarted under traffic disturbs nothing; a
//! wrong token leaves the edge unready; inbound policy comes from the mesh
//! file.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_control::{Overrides, RunningControl};
use ferry_edge::config::EdgeConfig;
use ferry_edge::RunningEdge;
use support::*;

/// A workload in the mesh file.
struct W {
    name: &'static str,
    sa: &'static str,
    tunnel: SocketAddr,
    app_port: u16,
}

/// A mesh file's variable parts.
struct Spec {
    ttl: &'static str,
    workloads: Vec<W>,
    /// Workload names serving `api.default:80`.
    api: Vec<&'static str>,
    policy: &'static str,
}

fn token(name: &str) -> String {
    format!("token-of-{name}")
}

fn render(spec: &Spec) -> String {
    let mut t = format!(
        "trust_domain = \"{TD}\"\n[ca]\ndir = \"ca\"\n[certificates]\nttl = \"{}\"\n[control]\nreload_interval = \"50ms\"\n",
        spec.ttl
    );
    for w in &spec.workloads {
        t += &format!(
            "[[workloads]]\nname = \"{}\"\nid = \"spiffe://{TD}/ns/default/sa/{}\"\naddress = \"127.0.0.1\"\ntunnel = \"{}\"\nports = {{ http = {} }}\ntoken_sha256 = \"{}\"\n",
            w.name,
            w.sa,
            w.tunnel,
            w.app_port,
            ferry_control::token::sha256_hex(&token(w.name))
        );
    }
    let list: Vec<String> = spec.api.iter().map(|n| format!("\"{n}\"")).collect();
    t += &format!(
        "[[services]]\nname = \"api\"\nnamespace = \"default\"\nworkloads = [{}]\n[[services.ports]]\nport = 80\ntarget_port = \"http\"\nprotocol = \"http\"\n",
        list.join(", ")
    );
    t += spec.policy;
    t
}

struct Plane {
    mesh: Mesh,
    control: Option<RunningControl>,
    grpc: SocketAddr,
}

impl Plane {
    async fn start(spec: &Spec) -> Self {
        let mesh = Mesh::new();
        mesh.ca.write(&mesh.path("ca"), true).unwrap();
        mesh.write("mesh.toml", &render(spec));
        let control = start_control(&mesh, "127.0.0.1:0".parse().unwrap()).await;
        Self {
            grpc: control.grpc,
            mesh,
            control: Some(control),
        }
    }

    fn update(&self, spec: &Spec) {
        self.mesh.write("mesh.toml", &render(spec));
    }

    /// Writes the mesh file and waits until the control plane serves it.
    async fn publish(&self, spec: &Spec) {
        let admin = self.control.as_ref().unwrap().admin;
        let version = |body: String| -> u64 {
            serde_json::from_str::<serde_json::Value>(&body)
                .map(|v| v["version"].as_u64().unwrap_or(0))
                .unwrap_or(0)
        };
        let before = version(admin_req(admin, "GET", "/mesh").await.1);
        self.update(spec);
        assert!(
            wait_until(Duration::from_secs(3), || async {
                version(admin_req(admin, "GET", "/mesh").await.1) > before
            })
            .await,
            "the control plane took the new mesh file"
        );
    }

    fn edge_config(&self, name: &str, sa: &str, opts: &EdgeOpts) -> PathBuf {
        let token_file = self.mesh.write(&format!("{name}.token"), &token(name));
        let mut t = format!(
            "shutdown_grace = \"3s\"\n[control]\naddress = \"{}\"\nworkload_id = \"spiffe://{TD}/ns/default/sa/{sa}\"\ntoken_file = \"{}\"\nbundle = \"{}\"\n[tunnel]\nlisten = \"127.0.0.1:0\"\n",
            self.grpc,
            token_file.display(),
            self.mesh.path("ca/ca.pem").display()
        );
        if let Some(f) = opts.force_transport {
            t += &format!("force_transport = \"{f}\"\n");
        }
        t += "[admin]\nlisten = \"127.0.0.1:0\"\n";
        for l in &opts.listeners {
            t += &format!("[[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"{l}\"\n");
        }
        self.mesh.write(&format!("{name}.toml"), &t)
    }

    async fn edge(&self, name: &str, sa: &str, opts: &EdgeOpts) -> RunningEdge {
        let cfg = EdgeConfig::load(&self.edge_config(name, sa, opts)).unwrap();
        tokio::time::timeout(Duration::from_secs(10), ferry_edge::start(cfg))
            .await
            .expect("the edge is ready within 10 s")
            .unwrap()
    }

    async fn control_metrics(&self) -> String {
        let admin = self.control.as_ref().unwrap().admin;
        admin_get(admin, "/metrics").await.1
    }
}

async fn start_control(mesh: &Mesh, listen: SocketAddr) -> RunningControl {
    RunningControl::start(
        &mesh.path("mesh.toml"),
        Overrides {
            listen: Some(listen),
            admin: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap()
}

/// A tunnel address nobody listens on, for a workload not started yet.
const NOWHERE: &str = "127.0.0.1:9";

/// Two workloads: `web` (client) and `api-1` (server, app behind it).
async fn web_and_api(ttl: &'static str, transport: Option<&'static str>) -> Setup {
    let (app, _) = tagged_app("one", Duration::ZERO).await;
    let mut spec = Spec {
        ttl,
        workloads: vec![
            W {
                name: "web",
                sa: "web",
                tunnel: NOWHERE.parse().unwrap(),
                app_port: 1,
            },
            W {
                name: "api-1",
                sa: "api",
                tunnel: NOWHERE.parse().unwrap(),
                app_port: app.port(),
            },
        ],
        api: vec!["api-1"],
        policy: "",
    };
    let plane = Plane::start(&spec).await;
    let opts = EdgeOpts {
        force_transport: transport,
        ..Default::default()
    };
    let api = plane.edge("api-1", "api", &opts).await;
    // Now that api's edge has its port, tell the mesh.
    spec.workloads[1].tunnel = api.tunnel;
    plane.publish(&spec).await;
    let web = plane
        .edge(
            "web",
            "web",
            &EdgeOpts {
                listeners: vec!["api.default:80".into()],
                ..opts.clone()
            },
        )
        .await;
    let listener = web.outbound[0].0;
    let client = http_client();
    assert!(
        wait_until(Duration::from_secs(3), || async {
            matches!(get(&client, listener, "/").await, Ok((200, _, _)))
        })
        .await,
        "traffic flows once the mesh file names api's tunnel"
    );
    Setup {
        plane,
        spec,
        api,
        web,
        listener,
    }
}

struct Setup {
    plane: Plane,
    spec: Spec,
    api: RunningEdge,
    web: RunningEdge,
    listener: SocketAddr,
}

/// For a failure message: the web edge's answer now, what it knows
/// (`/config`) and did (counters), and what the control plane serves.
async fn what_the_edge_knows(s: &Setup, client: &HttpClient) -> String {
    let last = get(client, s.listener, "/").await;
    let config = admin_get(s.web.admin, "/config").await.1;
    let metrics = admin_get(s.web.admin, "/metrics").await.1;
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && [
                    "handshakes",
                    "early_data",
                    "fallbacks",
                    "requests_total",
                    "quic_broken",
                    "discovery",
                ]
                .iter()
                .any(|k| l.contains(k))
                && !l.ends_with(" 0")
        })
        .collect();
    let (mesh, control) = match &s.plane.control {
        Some(c) => (
            admin_req(c.admin, "GET", "/mesh").await.1,
            s.plane.control_metrics().await,
        ),
        None => ("(stopped)".into(), String::new()),
    };
    let control: Vec<&str> = control
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.contains("mesh") || l.contains("watch") || l.contains("update"))
        })
        .collect();
    format!(
        "last answer {last:?}\nweb /config: {config}\nweb counters:\n{}\ncontrol /mesh: {mesh}\ncontrol counters:\n{}",
        counters.join("\n"),
        control.join("\n")
    )
}

/// Declares a second api workload (app answering "two"), starts its edge
/// and records its tunnel in the spec (not yet serving the service).
async fn add_api2(s: &mut Setup) -> (RunningEdge, Arc<AtomicUsize>) {
    let (app2, seen2) = tagged_app("two", Duration::ZERO).await;
    s.spec.workloads.push(W {
        name: "api-2",
        sa: "api",
        tunnel: NOWHERE.parse().unwrap(),
        app_port: app2.port(),
    });
    // Its token must be known before its edge asks for a certificate.
    s.plane.publish(&s.spec).await;
    let api2 = s.plane.edge("api-2", "api", &EdgeOpts::default()).await;
    s.spec.workloads[2].tunnel = api2.tunnel;
    (api2, seen2)
}

async fn identity_info(admin: SocketAddr) -> serde_json::Value {
    let (_, body) = admin_get(admin, "/config").await;
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["identity"].clone()
}

/// Sends requests back to back until `stop`; returns (ok, failures).
fn load(
    listener: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let client = http_client();
        let mut ok = 0;
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match get(&client, listener, "/load").await {
                Ok((200, _, body)) if body.ends_with(" /load") => ok += 1,
                other => failures.push(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failures)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_are_certified_then_ready_and_carry_traffic() {
    let s = web_and_api("1h", None).await;
    let info = identity_info(s.web.admin).await;
    assert_eq!(info["source"], "control");
    assert_eq!(info["id"], format!("spiffe://{TD}/ns/default/sa/web"));
    let m = s.plane.control_metrics().await;
    assert!(
        m.contains("ferry_control_certificates_issued_total 2"),
        "{m}"
    );
    assert!(m.contains("ferry_control_watchers 2"), "{m}");
    s.web.shutdown().await;
    s.api.shutdown().await;
}

async fn renewal_drops_nothing(transport: &'static str) {
    let s = web_and_api("3s", Some(transport)).await;
    let before = identity_info(s.web.admin).await;
    // A long-lived TCP-free HTTP keep-alive load plus a second, slow load:
    // both run across at least two renewals of both edges.
    let stop = Arc::new(AtomicBool::new(false));
    let loads = [
        load(s.listener, stop.clone()),
        load(s.listener, stop.clone()),
    ];
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for l in loads {
        let (ok, failures) = l.await.unwrap();
        assert!(
            failures.is_empty(),
            "{transport}: {} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        total += ok;
    }
    assert!(total > 100, "{transport}: only {total} requests");
    for edge in [&s.web, &s.api] {
        let after = identity_info(edge.admin).await;
        assert!(
            after["reloads"].as_u64().unwrap() >= 2,
            "{transport}: at least two renewals in 6 s with a 3 s TTL: {after}"
        );
    }
    let after = identity_info(s.web.admin).await;
    assert!(after["not_after_unix"].as_u64() > before["not_after_unix"].as_u64());
    // New connections use the renewed certificate and still work.
    let (status, _, _) = get(&http_client(), s.listener, "/new").await.unwrap();
    assert_eq!(status, 200);
    s.web.shutdown().await;
    s.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_under_traffic_drops_nothing_quic() {
    renewal_drops_nothing("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_under_traffic_drops_nothing_h2() {
    renewal_drops_nothing("h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_change_reaches_the_edge_and_traffic_follows() {
    let mut s = web_and_api("1h", None).await;
    let (api2, seen2) = add_api2(&mut s).await;
    s.spec.api = vec!["api-2"];
    let client = http_client();
    let t0 = std::time::Instant::now();
    s.plane.update(&s.spec);
    assert!(
        wait_until(Duration::from_secs(3), || async {
            matches!(get(&client, s.listener, "/").await, Ok((200, _, b)) if b.starts_with("two"))
        })
        .await,
        "traffic moves to the new endpoint"
    );
    let moved = t0.elapsed();
    assert!(
        moved < Duration::from_secs(2),
        "within a second or so: {moved:?}"
    );
    for _ in 0..20 {
        let (_, _, body) = get(&client, s.listener, "/after").await.unwrap();
        assert_eq!(body, "two /after", "every request follows the change");
    }
    assert!(seen2.load(Ordering::SeqCst) >= 20);

    // A broken mesh file: refused, the last good state stays.
    s.plane.mesh.write("mesh.toml", "trust_domain = [");
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..10 {
        let (status, _, body) = get(&client, s.listener, "/still").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "two /still"));
    }
    let m = s.plane.control_metrics().await;
    assert!(
        m.contains("ferry_control_mesh_reloads_total{result=\"rejected\"} 1"),
        "{m}"
    );
    // Removing every endpoint: the edge answers 503 no_endpoints.
    s.spec.api = vec![];
    s.plane.update(&s.spec);
    // Generous: the whole suite runs on two shared vCPUs (it took 10 s
    // once); the change usually arrives within a few hundred ms.
    let emptied = wait_until(Duration::from_secs(10), || async {
        matches!(get(&client, s.listener, "/").await, Ok((503, e, _)) if e == "no_endpoints")
    })
    .await;
    assert!(
        emptied,
        "the edge did not see the service emptied within 10 s\n{}",
        what_the_edge_knows(&s, &client).await
    );
    for e in [s.web, s.api, api2] {
        e.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_under_traffic_disturbs_nothing() {
    let mut s = web_and_api("1h", None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(s.listener, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grpc = s.plane.grpc;
    s.plane.control.take().unwrap().shutdown().await;
    // The data plane keeps working on the last known state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let control = start_control(&s.plane.mesh, grpc).await;
    s.plane.control = Some(control);
    // The edges watch again: a change made now reaches them.
    let (api2, _) = add_api2(&mut s).await;
    s.spec.api = vec!["api-1", "api-2"];
    s.plane.update(&s.spec);
    let client = http_client();
    // The watcher's reconnect back-off doubles up to 5 s; on two busy
    // vCPUs the resync has taken longer than 8 s.
    let resynced = wait_until(Duration::from_secs(15), || async {
        matches!(get(&client, s.listener, "/").await, Ok((200, _, b)) if b.starts_with("two"))
    })
    .await;
    if !resynced {
        panic!(
            "after the restart the edge did not reach api-2 within 15 s\n{}",
            what_the_edge_knows(&s, &client).await
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = running.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 50, "{ok}");
    // Every edge (web, api-1, api-2) watches the new control plane once
    // its reconnect backoff has run out.
    assert!(
        wait_until(Duration::from_secs(8), || async {
            s.plane
                .control_metrics()
                .await
                .contains("ferry_control_watchers 3")
        })
        .await,
        "{}",
        s.plane.control_metrics().await
    );
    for e in [s.web, s.api, api2] {
        e.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_leaves_the_edge_unready() {
    let spec = Spec {
        ttl: "1h",
        workloads: vec![W {
            name: "web",
            sa: "web",
            tunnel: NOWHERE.parse().unwrap(),
            app_port: 1,
        }],
        api: vec![],
        policy: "",
    };
    let plane = Plane::start(&spec).await;
    let cfg_path = plane.edge_config("web", "web", &EdgeOpts::default());
    plane.mesh.write("web.token", "not-the-token");
    let cfg = EdgeConfig::load(&cfg_path).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let starting = tokio::spawn(ferry_edge::start_with_shutdown(cfg, stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!starting.is_finished(), "not ready without a certificate");
    let m = plane.control_metrics().await;
    let refused = m
        .lines()
        .find(|l| l.starts_with("ferry_control_certify_refused_total{reason=\"bad_token\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused >= 2, "it keeps retrying (with backoff): {m}");
    stop.cancel();
    let result = tokio::time::timeout(Duration::from_secs(3), starting)
        .await
        .unwrap()
        .unwrap();
    let err = result
        .err()
        .expect("start gives up when stopped")
        .to_string();
    assert!(err.contains("before the first certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_policy_comes_from_the_mesh_file() {
    let mut s = web_and_api("1h", None).await;
    let client = http_client();
    s.spec.policy = "[[policies]]\nservice = \"api.default\"\nallow_ids = [\"spiffe://edge.test/ns/default/sa/someone-else\"]\n";
    s.plane.update(&s.spec);
    assert!(
        wait_until(Duration::from_secs(3), || async {
            matches!(get(&client, s.listener, "/").await, Ok((403, e, _)) if e == "forbidden")
        })
        .await,
        "web is no longer allowed"
    );
    s.spec.policy = "[[policies]]\nservice = \"api.default\"\nallow_ids = [\"spiffe://edge.test/ns/default/sa/web\"]\n";
    s.plane.update(&s.spec);
    let allowed = AtomicUsize::new(0);
    assert!(
        wait_until(Duration::from_secs(3), || async {
            let ok = matches!(get(&client, s.listener, "/").await, Ok((200, _, _)));
            if ok {
                allowed.fetch_add(1, Ordering::Relaxed);
            }
            ok
        })
        .await,
        "web is allowed again"
    );
    s.web.shutdown().await;
    s.api.shutdown().await;
}
