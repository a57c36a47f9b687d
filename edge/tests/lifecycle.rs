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
