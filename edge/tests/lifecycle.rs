//! Lifecycle under load, for each transport: graceful shutdown lets
//! in-flight requests finish; a rolling restart of a server-side edge fails
//! no request; endpoints removed from and added to the mesh file under load
//! fail no request and move traffic.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_transport::identity::SpiffeId;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/1.1 app that answers its name, after `delay`.
async fn named_app(name: &'static str, delay: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |_req: hyper::Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        name,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn get(addr: SocketAddr) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "svc")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Steady load: `loops` concurrent request loops until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, loops: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..loops)
            .map(|_| {
                let (stop, ok, failures, answers) =
                    (stop.clone(), ok.clone(), failures.clone(), answers.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match get(addr).await {
                            Ok(body) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                answers.lock().unwrap().push(body);
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            answers,
            tasks,
        }
    }

    /// Answers received since the last call.
    fn take_answers(&self) -> Vec<String> {
        std::mem::take(&mut *self.answers.lock().unwrap())
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
        )
    }
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TD}/ns/default/sa/{sa}")).unwrap()
}

async fn graceful_shutdown(transport: &'static str) {
    let mesh = Mesh::new();
    let app = named_app("slow", Duration::from_millis(700)).await;
    let empty = mesh.write("empty.toml", "");
    let opts = EdgeOpts {
        force_transport: Some(transport),
        ..Default::default()
    };
    let server = start_edge(&mesh, "api", &empty, &opts).await;
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "svc",
            port: 80,
            protocol: "http",
            endpoints: vec![(app, server.tunnel, id("api"))],
        }]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["svc.default:80".into()],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let listener = client.outbound[0].0;
    let server_admin = server.admin;
    let tunnel = server.tunnel;
    let requests: Vec<_> = (0..20).map(|_| tokio::spawn(get(listener))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = server.shutdown_token();
    let draining = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(token.is_cancelled());
    assert_ne!(
        ready_status(server_admin).await,
        Some(200),
        "/ready must not be 200 while draining"
    );
    for r in requests {
        assert_eq!(
            r.await.unwrap(),
            Ok("slow".to_string()),
            "in-flight requests finish during the drain"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .expect("drain ends")
        .unwrap();
    // Nothing accepts on the tunnel port any more.
    assert!(
        TcpStream::connect(tunnel).await.is_err(),
        "tunnel port still open after shutdown"
    );
}

/// The admin port's `/ready` status, or `None` when it no longer accepts.
async fn ready_status(admin: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(admin).await.ok()?;
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_quic() {
    graceful_shutdown("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_h2() {
    graceful_shutdown("h2").await;
}

/// Two server edges behind one service; one is restarted (graceful drain,
/// then a new process on the same tunnel port) under steady load.
async fn rolling_restart(transport: &'static str) {
    let mesh = Mesh::new();
    let app1 = named_app("one", Duration::ZERO).await;
    let app2 = named_app("two", Duration::ZERO).await;
    let empty = mesh.write("empty.toml", "");
    let opts = EdgeOpts {
        force_transport: Some(transport),
        ..Default::default()
    };
    let s1 = start_edge(&mesh, "api1", &empty, &opts).await;
    let s2 = start_edge(&mesh, "api2", &empty, &opts).await;
    let t1 = s1.tunnel;
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "svc",
            port: 80,
            protocol: "http",
            endpoints: vec![(app1, s1.tunnel, id("api1")), (app2, s2.tunnel, id("api2"))],
        }]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["svc.default:80".into()],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let load = Load::start(client.outbound[0].0, 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s1.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The replacement binds the same tunnel port (UDP may linger briefly).
    let restart = EdgeOpts {
        tunnel_listen: Some(t1),
        ..opts.clone()
    };
    let mut s1b = None;
    for _ in 0..40 {
        let cfg = write_edge_config(&mesh, "api1", &empty, &restart);
        match ferry_edge::start(ferry_edge::config::EdgeConfig::load(&cfg).unwrap()).await {
            Ok(e) => {
                s1b = Some(e);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let s1b = s1b.expect("restarted edge binds its old tunnel port");
    load.take_answers();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = load.take_answers();
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the restart: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 50, "load ran ({ok} requests)");
    assert!(
        after.iter().any(|a| a == "one"),
        "the restarted edge serves again"
    );
    drop(s1b);
    drop(s2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_fails_nothing_quic() {
    rolling_restart("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_fails_nothing_h2() {
    rolling_restart("h2").await;
}

/// Endpoint 1 is removed from the mesh file and added back under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_removed_and_added_under_load() {
    let mesh = Mesh::new();
    let app1 = named_app("one", Duration::ZERO).await;
    let app2 = named_app("two", Duration::ZERO).await;
    let empty = mesh.write("empty.toml", "");
    let s1 = start_edge(&mesh, "api1", &empty, &EdgeOpts::default()).await;
    let s2 = start_edge(&mesh, "api2", &empty, &EdgeOpts::default()).await;
    let both = mesh_toml(&[Svc {
        name: "svc",
        port: 80,
        protocol: "http",
        endpoints: vec![(app1, s1.tunnel, id("api1")), (app2, s2.tunnel, id("api2"))],
    }]);
    let only_two = mesh_toml(&[Svc {
        name: "svc",
        port: 80,
        protocol: "http",
        endpoints: vec![(app2, s2.tunnel, id("api2"))],
    }]);
    let mesh_file = mesh.write("mesh.toml", &both);
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["svc.default:80".into()],
            ..Default::default()
        },
    )
    .await;
    let load = Load::start(client.outbound[0].0, 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = load.take_answers();
    assert!(
        first.iter().any(|a| a == "one") && first.iter().any(|a| a == "two"),
        "both endpoints serve"
    );

    mesh.write("mesh.toml", &only_two);
    tokio::time::sleep(Duration::from_millis(600)).await; // reload (100 ms) and drain
    load.take_answers();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let removed = load.take_answers();
    assert!(
        !removed.is_empty() && removed.iter().all(|a| a == "two"),
        "only endpoint 2 serves while 1 is removed"
    );

    mesh.write("mesh.toml", &both);
    tokio::time::sleep(Duration::from_millis(600)).await;
    load.take_answers();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let back = load.take_answers();
    assert!(
        back.iter().any(|a| a == "one"),
        "endpoint 1 serves again once re-added"
    );
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
}

// ---- Keep-alive application connections, readiness during the drain ----

/// Steady load over long-lived keep-alive connections (a pooled HTTP/1.1
/// client, as most applications use): `loops` request loops, each answer
/// recorded with the time it arrived.
struct KeepAliveLoad {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl KeepAliveLoad {
    fn start(addr: SocketAddr, loops: usize) -> Self {
        let client = http_client();
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..loops)
            .map(|_| {
                let (client, stop, answers, failures) = (
                    client.clone(),
                    stop.clone(),
                    answers.clone(),
                    failures.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match support::get(&client, addr, "/").await {
                            Ok((200, _, body)) => answers
                                .lock()
                                .unwrap()
                                .push((std::time::Instant::now(), body)),
                            Ok((status, err, body)) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{status} {err}: {body}")),
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            answers,
            failures,
            tasks,
        }
    }

    /// The answers that arrived after `since`.
    fn answers_since(&self, since: std::time::Instant) -> Vec<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t > since)
            .map(|(_, a)| a.clone())
            .collect()
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let ok = self.answers.lock().unwrap().len();
        let failures = self.failures.lock().unwrap().clone();
        (ok, failures)
    }
}

/// Endpoint 1 removed from the mesh file and added back while 20 loops
/// send requests on keep-alive connections opened before the change: each
/// request is balanced over the endpoints current when it arrives, not
/// those current when its connection was accepted.
async fn endpoint_churn_keepalive(transport: &'static str) {
    let mesh = Mesh::new();
    let (app1, _) = tagged_app("one", Duration::ZERO).await;
    let (app2, _) = tagged_app("two", Duration::ZERO).await;
    let empty = mesh.write("empty.toml", "");
    let opts = EdgeOpts {
        force_transport: Some(transport),
        ..Default::default()
    };
    let s1 = start_edge(&mesh, "api1", &empty, &opts).await;
    let s2 = start_edge(&mesh, "api2", &empty, &opts).await;
    let svc = |eps: Vec<(SocketAddr, SocketAddr, SpiffeId)>| {
        mesh_toml(&[Svc {
            name: "svc",
            port: 80,
            protocol: "http",
            endpoints: eps,
        }])
    };
    let both = svc(vec![
        (app1, s1.tunnel, id("api1")),
        (app2, s2.tunnel, id("api2")),
    ]);
    let only_two = svc(vec![(app2, s2.tunnel, id("api2"))]);
    let mesh_file = mesh.write("mesh.toml", &both);
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["svc.default:80".into()],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let load = KeepAliveLoad::start(client.outbound[0].0, 20);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t0 = std::time::Instant::now() - Duration::from_millis(300);
    let first = load.answers_since(t0);
    assert!(
        first.iter().any(|a| a == "one /") && first.iter().any(|a| a == "two /"),
        "both endpoints serve at first"
    );

    let v = discovery_version(client.admin).await;
    mesh.write("mesh.toml", &only_two);
    assert!(
        wait_until(Duration::from_secs(3), || async {
            discovery_version(client.admin).await > v
        })
        .await,
        "the client edge reloads the mesh file"
    );
    // Requests already in flight to endpoint 1 may still finish there.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t1 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let removed = load.answers_since(t1);
    let from_one = removed.iter().filter(|a| *a == "one /").count();
    assert!(
        removed.len() > 20 && from_one == 0,
        "only endpoint 2 answers while 1 is removed: {from_one} of {} from endpoint 1",
        removed.len()
    );

    let v = discovery_version(client.admin).await;
    mesh.write("mesh.toml", &both);
    assert!(
        wait_until(Duration::from_secs(3), || async {
            discovery_version(client.admin).await > v
        })
        .await
    );
    let t2 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let back = load.answers_since(t2);
    assert!(
        back.iter().any(|a| a == "one /") && back.iter().any(|a| a == "two /"),
        "both endpoints serve once 1 is re-added"
    );
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_churn_on_keepalive_connections_quic() {
    endpoint_churn_keepalive("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_churn_on_keepalive_connections_h2() {
    endpoint_churn_keepalive("h2").await;
}

/// While an edge drains, `/ready` answers 503 to a new connection (what a
/// kubelet probe opens), as docs/operations.md says; in-flight requests
/// still finish; the drain ends once they have (not at the end of the 5 s
/// grace period: idle QUIC connections are closed by the server), and
/// afterwards every port is closed.
async fn ready_503_while_draining(transport: &'static str) {
    let mesh = Mesh::new();
    let (app, seen) = tagged_app("slow", Duration::from_secs(1)).await;
    let empty = mesh.write("empty.toml", "");
    let opts = EdgeOpts {
        force_transport: Some(transport),
        ..Default::default()
    };
    let server = start_edge(&mesh, "api", &empty, &opts).await;
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "svc",
            port: 80,
            protocol: "http",
            endpoints: vec![(app, server.tunnel, id("api"))],
        }]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["svc.default:80".into()],
            ..opts.clone()
        },
    )
    .await;
    let listener = client.outbound[0].0;
    let (server_admin, tunnel) = (server.admin, server.tunnel);
    assert_eq!(ready_status(server_admin).await, Some(200));
    let http = http_client();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let http = http.clone();
            tokio::spawn(async move { support::get(&http, listener, "/slow").await })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            seen.load(Ordering::SeqCst) >= 20
        })
        .await,
        "all 20 requests reached the app"
    );
    let drain_start = std::time::Instant::now();
    let draining = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ready_status(server_admin).await,
        Some(503),
        "/ready on a new connection while draining"
    );
    for r in requests {
        let (status, err, body) = r.await.unwrap().unwrap();
        assert_eq!(
            (status, err.as_str(), body.as_str()),
            (200, "", "slow /slow")
        );
    }
    tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .expect("drain ends")
        .unwrap();
    let drained_in = drain_start.elapsed();
    assert!(
        drained_in < Duration::from_secs(3),
        "the drain ends with the last request, took {drained_in:?} (grace 5 s)"
    );
    assert!(
        TcpStream::connect(tunnel).await.is_err(),
        "tunnel port closed"
    );
    assert!(
        wait_until(Duration::from_secs(2), || async {
            TcpStream::connect(server_admin).await.is_err()
        })
        .await,
        "admin port closed once stopped"
    );
    // Over TLS/TCP the client edge answers a request to the stopped
    // endpoint at once (connection refused). With QUIC forced, a dead peer
    // is only noticed at `connect_timeout` (504, 5 s): UDP gives no refusal.
    if transport == "h2" {
        let start = std::time::Instant::now();
        let (status, err, _) = support::get(&http_client(), listener, "/").await.unwrap();
        assert_eq!((status, err.as_str()), (502, "connect_failed"));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_on_new_connections_while_draining_quic() {
    ready_503_while_draining("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_on_new_connections_while_draining_h2() {
    ready_503_while_draining("h2").await;
}

/// A rolling restart with requests in flight at every moment: 20 loops on
/// keep-alive connections against an app that takes 20 ms, so the draining
/// edge's GOAWAY always finds streams open on its connections. Those finish
/// (the pool must not close a QUIC connection under them); a stream that
/// crossed the GOAWAY on the wire is retried. Nothing fails.
async fn rolling_restart_in_flight(transport: &'static str) {
    let mesh = Mesh::new();
    let (app1, _) = tagged_app("one", Duration::from_millis(20)).await;
    let (app2, _) = tagged_app("two", Duration::from_millis(20)).await;
    let empty = mesh.write("empty.toml", "");
    let opts = EdgeOpts {
        force_transport: Some(transport),
        ..Default::default()
    };
    let s1 = start_edge(&mesh, "api1", &empty, &opts).await;
    let s2 = start_edge(&mesh, "api2", &empty, &opts).await;
    let t1 = s1.tunnel;
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "svc",
            port: 80,
            protocol: "http",
            endpoints: vec![(app1, s1.tunnel, id("api1")), (app2, s2.tunnel, id("api2"))],
        }]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["svc.default:80".into()],
            ..opts.clone()
        },
    )
    .await;
    let load = KeepAliveLoad::start(client.outbound[0].0, 20);
    tokio::time::sleep(Duration::from_millis(400)).await;
    s1.shutdown().await;
    let restart = EdgeOpts {
        tunnel_listen: Some(t1),
        ..opts.clone()
    };
    let mut s1b = None;
    for _ in 0..40 {
        match try_start_edge(&mesh, "api1", &empty, &restart).await {
            Ok(e) => {
                s1b = Some(e);
                break;
            }
            // The old edge's UDP socket may linger a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let s1b = s1b.expect("the restarted edge binds its old tunnel port");
    let since = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || async {
            load.answers_since(since).iter().any(|a| a == "one /")
        })
        .await,
        "the restarted edge serves again"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the restart: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 200, "load ran ({ok} requests)");
    drop((s1b, s2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_with_requests_in_flight_quic() {
    rolling_restart_in_flight("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_with_requests_in_flight_h2() {
    rolling_restart_in_flight("h2").await;
}
