//! Edge overhead benchmark (not a timed test): starts two real `ferry edge`
//! processes on 127.0.0.1 with an HTTP application behind the server edge
//! and measures, next to a direct connection to the application:
//! - latency of small HTTP/1.1 requests at fixed rates (open loop, with
//!   coordinated-omission correction: latency counts from each request's
//!   scheduled start), p50/p99/p99.9;
//! - maximum requests/s (closed loop);
//! - resident memory of the client edge, idle and at 1,000 requests/s;
//! - TCP throughput through the pair with iperf3, when installed;
//! - a 256 KiB TCP echo (fresh connection, both ways, half-close), 500
//!   times in a row (200 with `--quick`): p50, p99 and the slowest of a
//!   short transfer, where window and ACK-timing stalls show that bulk
//!   throughput hides.
//!
//! `cargo bench --bench edge_overhead [-- --quick]`; prints a Markdown table.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `ferry edge`, returns it with its JSON ready line.
fn start_edge(config: &Path) -> (Proc, serde_json::Value) {
    let mut child = Command::new(FERRY)
        .args(["edge", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ferry edge");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
    (Proc(child), v)
}

fn edge_config(
    dir: &Path,
    sa: &str,
    mesh: &Path,
    transport: &str,
    listener: Option<&str>,
) -> std::path::PathBuf {
    let d = dir.join(sa);
    let mut t = format!(
        "[identity]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\nbundles = [\"{d}/bundle.pem\"]\n\
         [tunnel]\nlisten = \"127.0.0.1:0\"\nforce_transport = \"{transport}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [discovery]\nmesh_file = \"{}\"\n",
        mesh.display(),
        d = d.display()
    );
    if let Some(svc) = listener {
        t += &format!("[[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"{svc}\"\n");
    }
    let p = dir.join(format!("{sa}-{transport}.toml"));
    std::fs::write(&p, t).unwrap();
    p
}

async fn app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A TCP echo application.
async fn echo_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    addr
}

/// `rounds` fresh connections each echoing `size` bytes; p50, p99 and the
/// slowest, in ms.
async fn echo_rounds(addr: SocketAddr, size: usize, rounds: usize) -> (f64, f64, f64) {
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let mut us = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = tcp.into_split();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&sent).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let mut back = Vec::with_capacity(size);
        rd.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        assert!(back == payload, "the echo came back intact");
        us.push(start.elapsed().as_micros() as u64);
    }
    us.sort_unstable();
    (pct(&us, 0.50), pct(&us, 0.99), pct(&us, 1.0))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn one(send: &mut Sender) -> bool {
    if send.ready().await.is_err() {
        return false;
    }
    let req = http::Request::get("/")
        .header("host", "web")
        .body(Empty::new())
        .unwrap();
    match send.send_request(req).await {
        Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}

struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Open loop at `rate`/s over `conns` keep-alive connections for `secs`.
async fn fixed_rate(addr: SocketAddr, rate: u64, secs: f64, conns: usize) -> Latency {
    let total = (rate as f64 * secs) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut send = connect(addr).await;
            let mut lat = Vec::new();
            let mut i = c as u64;
            let mut free_at = Instant::now();
            while i < total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                tokio::time::sleep_until(due.into()).await;
                // Coordinated-omission correction: a request queued behind a
                // slow one counts from its scheduled start; one sent on an
                // idle connection counts from when it was sent (the timer's
                // millisecond granularity is the generator's, not the proxy's).
                let sent_from = if free_at > due { due } else { Instant::now() };
                if !one(&mut send).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                    send = connect(addr).await;
                }
                free_at = Instant::now();
                lat.push(free_at.duration_since(sent_from).as_micros() as u64);
                i += conns as u64;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    Latency {
        p50: pct(&all, 0.50),
        p99: pct(&all, 0.99),
        p999: pct(&all, 0.999),
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Closed loop: `conns` connections as fast as they go.
async fn max_rate(addr: SocketAddr, secs: f64, conns: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut send = connect(addr).await;
            while !stop.load(Ordering::Relaxed) {
                if one(&mut send).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    send = connect(addr).await;
                }
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let el = t0.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / el
}

fn iperf3(target: SocketAddr, secs: u32) -> Option<f64> {
    let out = Command::new("iperf3")
        .args([
            "-c",
            &target.ip().to_string(),
            "-p",
            &target.port().to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`:
    // measuring there (unoptimized, under test load) would mean nothing.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("edge_overhead: a benchmark; run it with `cargo bench --bench edge_overhead`");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 2.0 } else { 5.0 };
    ferry_transport::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    run(Command::new(FERRY)
        .args(["certs", "ca", "--trust-domain", "bench.local", "--out"])
        .arg(&ca));
    for sa in ["client", "server"] {
        run(Command::new(FERRY)
            .args(["certs", "issue", "--ca"])
            .arg(&ca)
            .args([
                "--id",
                &format!("spiffe://bench.local/ns/default/sa/{sa}"),
                "--out",
            ])
            .arg(dir.path().join(sa)));
    }
    let app_addr = rt.block_on(app());
    let iperf_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let iperf_server = Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", &iperf_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(Proc);
    if iperf_server.is_none() {
        eprintln!("iperf3 not found: TCP throughput rows skipped (install with `apt-get install -y iperf3`)");
    }
    std::thread::sleep(Duration::from_millis(200));
    let iperf_addr: SocketAddr = format!("127.0.0.1:{iperf_port}").parse().unwrap();

    let echo_addr = rt.block_on(echo_app());
    println!("| path | p50 @1k/s (ms) | p99 @1k/s | p99.9 @1k/s | p50 @10k/s | p99 @10k/s | max req/s | errors | client edge RSS idle / @1k/s (MiB) | TCP Gb/s (iperf3) | 256 KiB echo p50 / p99 / max (ms) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str,
               addr: SocketAddr,
               rss: Option<&Proc>,
               tcp: Option<SocketAddr>,
               echo: SocketAddr| {
        eprintln!("measuring {name} ...");
        let idle = rss.map(|p| p.rss_kib());
        let (l1, rss_load) = rt.block_on(async {
            let p = rss;
            let l = fixed_rate(addr, 1_000, secs, 8).await;
            (l, p.map(|p| p.rss_kib()))
        });
        let l10 = rt.block_on(fixed_rate(addr, 10_000, secs, 32));
        let max = rt.block_on(max_rate(addr, secs, 32));
        let gbps = tcp.and_then(|t| iperf3(t, if quick { 2 } else { 5 }));
        let rounds = if quick { 200 } else { 500 };
        let (echo_p50, echo_p99, echo_max) = rt.block_on(echo_rounds(echo, 256 << 10, rounds));
        let mem = match (idle, rss_load) {
            (Some(a), Some(b)) => format!("{:.1} / {:.1}", a as f64 / 1024.0, b as f64 / 1024.0),
            _ => "—".into(),
        };
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {} | {mem} | {} | {echo_p50:.2} / {echo_p99:.2} / {echo_max:.1} |",
            l1.p50,
            l1.p99,
            l1.p999,
            l10.p50,
            l10.p99,
            max,
            l1.errors + l10.errors,
            gbps.map(|g| format!("{g:.2}"))
                .unwrap_or_else(|| "—".into())
        );
    };
    row(
        "direct (no proxy)",
        app_addr,
        None,
        iperf_server.as_ref().map(|_| iperf_addr),
        echo_addr,
    );
    for transport in ["quic", "h2"] {
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        let (server, ready) =
            start_edge(&edge_config(dir.path(), "server", &empty, transport, None));
        let tunnel = ready["tunnel"].as_str().unwrap().to_string();
        let mesh = dir.path().join(format!("mesh-{transport}.toml"));
        std::fs::write(
            &mesh,
            format!(
                "[[services]]\nname = \"web\"\nnamespace = \"default\"\nport = 80\n[[services.endpoints]]\naddress = \"{app_addr}\"\ntunnel = \"{tunnel}\"\nid = \"spiffe://bench.local/ns/default/sa/server\"\n\
                 [[services]]\nname = \"iperf\"\nnamespace = \"default\"\nport = 5201\nprotocol = \"tcp\"\n[[services.endpoints]]\naddress = \"{iperf_addr}\"\ntunnel = \"{tunnel}\"\nid = \"spiffe://bench.local/ns/default/sa/server\"\n\
                 [[services]]\nname = \"echo\"\nnamespace = \"default\"\nport = 7\nprotocol = \"tcp\"\n[[services.endpoints]]\naddress = \"{echo_addr}\"\ntunnel = \"{tunnel}\"\nid = \"spiffe://bench.local/ns/default/sa/server\"\n"
            ),
        )
        .unwrap();
        let cfg = edge_config(
            dir.path(),
            "client",
            &mesh,
            transport,
            Some("web.default:80"),
        );
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text +=
            "[[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"iperf.default:5201\"\n\
                 [[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"echo.default:7\"\n";
        std::fs::write(&cfg, text).unwrap();
        let (client, ready) = start_edge(&cfg);
        let listeners = ready["outbound"].as_array().unwrap();
        let web: SocketAddr = listeners[0]["listen"].as_str().unwrap().parse().unwrap();
        let iperf: SocketAddr = listeners[1]["listen"].as_str().unwrap().parse().unwrap();
        let echo: SocketAddr = listeners[2]["listen"].as_str().unwrap().parse().unwrap();
        // Warm the pool (one handshake), then let memory settle.
        rt.block_on(async {
            let mut s = connect(web).await;
            assert!(one(&mut s).await, "request through the edges failed");
        });
        std::thread::sleep(Duration::from_millis(300));
        row(
            &format!("two Ferry edges ({transport})"),
            web,
            Some(&client),
            iperf_server.as_ref().map(|_| iperf),
            echo,
        );
        drop(client);
        drop(server);
    }
    drop(iperf_server);
}
