//! One stream, loopback: how much of the raw transport's throughput the
//! Ferry tunnel keeps, what it costs in CPU, and how long a new connection
//! takes. Not a timed test: it prints Markdown tables for
//! `docs/benchmarks.md`.
//!
//! ```sh
//! cargo bench -p ferry-transport --bench tunnel_throughput            # 2 GiB per run, 5 runs
//! cargo bench -p ferry-transport --bench tunnel_throughput -- --quick # 256 MiB per run, 3 runs
//! ```
//!
//! Options (after `--`): `--quick`, `--bytes N[K|M|G]`, `--runs R`,
//! `--handshakes K`, `--only a,b,...` (raw-quic, ferry-quic, raw-tls,
//! ferry-h2, raw-quic-64k, ferry-quic-64k, handshake), `--no-mtu64k`,
//! `--chunk N[K|M]` (application write size, default 64K).
//! To run the binary directly (`target/release/deps/tunnel_throughput-*`,
//! e.g. under `perf record`), give `--full`, `--quick` or `--bytes`. Without `--bench`
//! (that is, under `cargo test --all-targets`) it only smoke-tests every path
//! with 8 MiB and 3 handshakes, prints `N passed, M failed` and fails the
//! run if a path fails.
//!
//! Every measurement runs in this one process on a 2-worker tokio runtime,
//! both ends included, so CPU time (getrusage RUSAGE_SELF, user + system) is
//! the cost of the sender and the receiver together. Each throughput run uses
//! a fresh connection whose handshake is not timed; the clock runs from
//! opening the stream until the receiver has counted every byte.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityStore, Material, SpiffeId, TrustBundles, TrustDomain};
use ferry_transport::metrics::TransportMetrics;
use ferry_transport::tls::{TlsConfigs, ALPN_H2, ALPN_H3};
use ferry_transport::tunnel::{
    handler, quic_endpoint, IncomingStream, PeerKey, TunnelClient, TunnelConfig, TunnelServer,
};
use ferry_transport::TransportKind;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_ID: &str = "spiffe://bench.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://bench.local/ns/default/sa/client";
/// Application write size (what `splice` hands the tunnel per read), and
/// the receivers' read buffer.
const CHUNK: usize = 64 * 1024;
/// The write size actually used (`--chunk`, for experiments).
static WRITE_CHUNK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(CHUNK);

fn write_chunk() -> usize {
    WRITE_CHUNK.load(Ordering::Relaxed)
}
/// A transfer whose receiver makes no progress for this long is a stall.
const STALL: Duration = Duration::from_secs(15);
/// The largest UDP payload; the "MTU discovery to 64K" rows probe up to it.
const MTU_64K: u16 = 65_507;

// ---------------------------------------------------------------- options

struct Opts {
    quick: bool,
    /// Run by `cargo test` (no `--bench`): a few MiB per path, to check that
    /// every path still works; no table.
    smoke: bool,
    bytes: u64,
    runs: usize,
    handshakes: usize,
    only: Option<Vec<String>>,
    mtu64k: bool,
}

impl Opts {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |f: &str| args.iter().any(|a| a == f);
        let quick = has("--quick");
        // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
        // binary without it (plus whatever filter or libtest flags were
        // given), and then it only smoke-tests each path.
        let smoke = !has("--bench") && !quick && !has("--full") && !has("--bytes");
        let mut o = Opts {
            quick,
            smoke,
            bytes: if smoke {
                8 << 20
            } else if quick {
                256 << 20
            } else {
                2 << 30
            },
            runs: if smoke {
                1
            } else if quick {
                3
            } else {
                5
            },
            handshakes: if smoke { 3 } else { 50 },
            only: None,
            mtu64k: true,
        };
        if smoke {
            return o;
        }
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| -> String {
                it.next()
                    .unwrap_or_else(|| panic!("{name} needs a value"))
                    .clone()
            };
            match a.as_str() {
                "--quick" | "--bench" | "--full" => {}
                "--bytes" => o.bytes = parse_size(&val("--bytes")),
                "--runs" => o.runs = val("--runs").parse().expect("--runs N"),
                "--handshakes" => {
                    o.handshakes = val("--handshakes").parse().expect("--handshakes N")
                }
                "--only" => o.only = Some(val("--only").split(',').map(str::to_string).collect()),
                "--no-mtu64k" => o.mtu64k = false,
                "--chunk" => {
                    WRITE_CHUNK.store(parse_size(&val("--chunk")) as usize, Ordering::Relaxed)
                }
                other => eprintln!("ignoring unknown argument {other:?}"),
            }
        }
        o
    }

    fn wants(&self, key: &str) -> bool {
        if key.ends_with("-64k") && !self.mtu64k {
            return false;
        }
        match &self.only {
            None => true,
            Some(list) => list.iter().any(|k| k == key),
        }
    }
}

fn parse_size(s: &str) -> u64 {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().expect("size: N[K|M|G]") * mult
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes & ((1 << 30) - 1) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{bytes} B")
    }
}

// ---------------------------------------------------------------- CPU and kernel counters

#[derive(Clone, Copy, Default)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

impl Cpu {
    fn now() -> Self {
        // SAFETY: getrusage writes into the zeroed struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        assert_eq!(rc, 0, "getrusage failed");
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Cpu {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user - earlier.user,
            sys: self.sys - earlier.sys,
        }
    }

    fn total(self) -> Duration {
        self.user + self.sys
    }
}

/// Busy CPU time of the whole machine (all CPUs, from /proc/stat), so a
/// run can tell how much of the machine something else was using.
fn machine_busy() -> Duration {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return Duration::ZERO;
    };
    // user nice system idle iowait irq softirq steal guest guest_nice
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(busy as f64 / hz)
}

/// System-wide UDP counters from /proc/net/snmp (drops show up here).
fn udp_counters() -> HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let mut out = HashMap::new();
    if lines.len() >= 2 {
        for (k, v) in lines[0]
            .split_whitespace()
            .skip(1)
            .zip(lines[1].split_whitespace().skip(1))
        {
            out.insert(k.to_string(), v.parse().unwrap_or(0));
        }
    }
    out
}

fn udp_drops_since(before: &HashMap<String, u64>) -> u64 {
    let after = udp_counters();
    ["RcvbufErrors", "SndbufErrors", "MemErrors"]
        .iter()
        .map(|k| {
            after
                .get(*k)
                .unwrap_or(&0)
                .saturating_sub(*before.get(*k).unwrap_or(&0))
        })
        .sum()
}

// ---------------------------------------------------------------- identities

struct Identities {
    server: Arc<IdentityStore>,
    client: Arc<IdentityStore>,
    server_id: SpiffeId,
}

impl Identities {
    fn new() -> Self {
        let td = TrustDomain::new("bench.local").unwrap();
        let ca = CertificateAuthority::generate(&td, Duration::from_secs(86400)).unwrap();
        let store = |id: &str| {
            let leaf = ca
                .issue(&SpiffeId::parse(id).unwrap(), Duration::from_secs(86400))
                .unwrap();
            let mut bundles = TrustBundles::default();
            bundles
                .add_pem(leaf.bundle_pem.as_bytes(), "bench")
                .unwrap();
            IdentityStore::new(
                Material::from_pem(
                    leaf.cert_chain_pem.as_bytes(),
                    "bench-cert",
                    leaf.key_pem.as_bytes(),
                    "bench-key",
                    bundles,
                )
                .unwrap(),
            )
        };
        Identities {
            server: store(SERVER_ID),
            client: store(CLIENT_ID),
            server_id: SpiffeId::parse(SERVER_ID).unwrap(),
        }
    }

    /// Fresh configs: empty session caches, so every handshake is a full one.
    fn server_tls(&self) -> Arc<TlsConfigs> {
        TlsConfigs::new(self.server.clone(), TransportMetrics::new())
    }

    fn client_tls(&self) -> Arc<TlsConfigs> {
        TlsConfigs::new(self.client.clone(), TransportMetrics::new())
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn bench_config() -> TunnelConfig {
    TunnelConfig {
        handshake_timeout: Duration::from_secs(10),
        ..TunnelConfig::default()
    }
}

fn config_with_mtu(mtu64k: bool) -> TunnelConfig {
    let mut c = bench_config();
    if mtu64k {
        c.max_udp_payload = MTU_64K;
    }
    c
}

// ---------------------------------------------------------------- one transfer

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Path {
    RawQuic,
    FerryQuic,
    RawTls,
    FerryH2,
    RawQuic64k,
    FerryQuic64k,
}

impl Path {
    fn key(self) -> &'static str {
        match self {
            Path::RawQuic => "raw-quic",
            Path::FerryQuic => "ferry-quic",
            Path::RawTls => "raw-tls",
            Path::FerryH2 => "ferry-h2",
            Path::RawQuic64k => "raw-quic-64k",
            Path::FerryQuic64k => "ferry-quic-64k",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Path::RawQuic => "raw quinn",
            Path::FerryQuic => "Ferry QUIC tunnel",
            Path::RawTls => "raw TLS/TCP",
            Path::FerryH2 => "Ferry TLS/TCP tunnel (H2)",
            Path::RawQuic64k => "raw quinn (MTU discovery to 64K)",
            Path::FerryQuic64k => "Ferry QUIC (MTU discovery to 64K)",
        }
    }

    /// The raw transport a tunnel row is compared with.
    fn baseline(self) -> Option<Path> {
        match self {
            Path::FerryQuic => Some(Path::RawQuic),
            Path::FerryH2 => Some(Path::RawTls),
            Path::FerryQuic64k => Some(Path::RawQuic64k),
            _ => None,
        }
    }

    fn all() -> [Path; 6] {
        [
            Path::RawQuic,
            Path::FerryQuic,
            Path::RawTls,
            Path::FerryH2,
            Path::RawQuic64k,
            Path::FerryQuic64k,
        ]
    }
}

struct Sample {
    wall: Duration,
    cpu: Cpu,
    /// CPU time the rest of the machine used meanwhile.
    others: Duration,
    udp_drops: u64,
    /// quinn path statistics of the sending side (raw quinn only).
    quic: Option<String>,
}

/// Bytes the receiver has counted so far, for progress and stall detection.
#[derive(Clone, Default)]
struct Progress(Arc<AtomicU64>);

impl Progress {
    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `transfer` while watching `progress`: no progress for `STALL` is an
/// error that says how far the receiver got.
async fn watched<F, T>(total: u64, progress: &Progress, transfer: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    tokio::pin!(transfer);
    let mut last = (progress.get(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            r = &mut transfer => return r,
            _ = tick.tick() => {
                let now = progress.get();
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > STALL {
                    return Err(format!(
                        "stalled: receiver at {} of {} bytes ({:.1}%), no progress for {} s",
                        now, total, 100.0 * now as f64 / total as f64, STALL.as_secs()
                    ));
                }
            }
        }
    }
}

fn payload() -> Bytes {
    // Incompressible-looking bytes (nothing here compresses, but be honest).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = vec![0u8; write_chunk()];
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    Bytes::from(v)
}

async fn run_path(path: Path, ids: &Identities, bytes: u64) -> Result<Sample, String> {
    match path {
        Path::RawQuic => raw_quic(ids, bytes, false).await,
        Path::RawQuic64k => raw_quic(ids, bytes, true).await,
        Path::RawTls => raw_tls(ids, bytes).await,
        Path::FerryQuic => tunnel(ids, bytes, TransportKind::Quic, false).await,
        Path::FerryQuic64k => tunnel(ids, bytes, TransportKind::Quic, true).await,
        Path::FerryH2 => tunnel(ids, bytes, TransportKind::H2, false).await,
    }
}

/// A quinn endpoint pair built exactly as the tunnel builds its own (same
/// socket wrapper, transport parameters, windows, MTU bounds, TLS configs),
/// one bidirectional stream: the client writes `bytes`, the server reads
/// to the end.
async fn raw_quic(ids: &Identities, bytes: u64, mtu64k: bool) -> Result<Sample, String> {
    let cfg = config_with_mtu(mtu64k);
    let server_ep =
        quic_endpoint::server_endpoint(loopback(), ids.server_tls().server(ALPN_H3), &cfg)
            .map_err(|e| e.to_string())?;
    let addr = server_ep.local_addr().map_err(|e| e.to_string())?;
    let client_ep = quic_endpoint::client_endpoint(loopback(), &cfg).map_err(|e| e.to_string())?;
    let client_cfg =
        quic_endpoint::client_config(ids.client_tls().client(&ids.server_id, ALPN_H3), &cfg)?;

    let progress = Progress::default();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<u64, String>>();
    let p = progress.clone();
    let sep = server_ep.clone();
    let server = tokio::spawn(async move {
        let r = async {
            let inc = sep.accept().await.ok_or("server endpoint closed")?;
            let conn = inc.await.map_err(|e| format!("server handshake: {e}"))?;
            let (_send, mut recv) = conn
                .accept_bi()
                .await
                .map_err(|e| format!("accept_bi: {e}"))?;
            let mut n = 0u64;
            while let Some(chunk) = recv
                .read_chunk(usize::MAX, true)
                .await
                .map_err(|e| format!("server read: {e}"))?
            {
                n += chunk.bytes.len() as u64;
                p.add(chunk.bytes.len());
            }
            Ok::<_, String>((n, conn))
        }
        .await;
        match r {
            Ok((n, conn)) => {
                let _ = done_tx.send(Ok(n));
                // Stay open until the client closes.
                conn.closed().await;
            }
            Err(e) => {
                let _ = done_tx.send(Err(e));
            }
        }
    });

    let conn = client_ep
        .connect_with(client_cfg, addr, "127.0.0.1")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| format!("client handshake: {e}"))?;
    let data = payload();
    let drops0 = udp_counters();
    let busy0 = machine_busy();
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let result = watched(bytes, &progress, async {
        let (mut send, _recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let mut left = bytes;
        while left > 0 {
            let k = left.min(write_chunk() as u64) as usize;
            send.write_all(&data[..k])
                .await
                .map_err(|e| format!("client write: {e}"))?;
            left -= k as u64;
        }
        send.finish().map_err(|e| e.to_string())?;
        done_rx.await.map_err(|_| "server task died".to_string())?
    })
    .await;
    let wall = t0.elapsed();
    let cpu = Cpu::now().since(cpu0);
    let others = machine_busy()
        .saturating_sub(busy0)
        .saturating_sub(cpu.total());
    let udp_drops = udp_drops_since(&drops0);
    let s = conn.stats();
    let quic = format!(
        "MTU {} B, {} lost pkts, {} cong. events, {:.1} datagrams/sendmsg",
        s.path.current_mtu,
        s.path.lost_packets,
        s.path.congestion_events,
        s.udp_tx.datagrams as f64 / s.udp_tx.ios.max(1) as f64
    );
    conn.close(0u32.into(), b"done");
    client_ep.close(0u32.into(), b"done");
    server_ep.close(0u32.into(), b"done");
    server.abort();
    let n = result?;
    if n != bytes {
        return Err(format!("server counted {n} bytes, expected {bytes}"));
    }
    Ok(Sample {
        wall,
        cpu,
        others,
        udp_drops,
        quic: Some(quic),
    })
}

/// tokio-rustls over TCP with the tunnel's TLS configs (ALPN h2, no HTTP/2
/// on top): the client writes `bytes`, the server reads to EOF.
async fn raw_tls(ids: &Identities, bytes: u64) -> Result<Sample, String> {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(ids.server_tls().server(ALPN_H2));
    let connector =
        tokio_rustls::TlsConnector::from(ids.client_tls().client(&ids.server_id, ALPN_H2));

    let progress = Progress::default();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<u64, String>>();
    let p = progress.clone();
    let server = tokio::spawn(async move {
        let r = async {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let mut tls = acceptor
                .accept(tcp)
                .await
                .map_err(|e| format!("server handshake: {e}"))?;
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0u64;
            loop {
                let k = tls
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("server read: {e}"))?;
                if k == 0 {
                    break;
                }
                n += k as u64;
                p.add(k);
            }
            Ok::<_, String>(n)
        }
        .await;
        let _ = done_tx.send(r);
    });

    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut tls = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("client handshake: {e}"))?;
    let data = payload();
    let busy0 = machine_busy();
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let result = watched(bytes, &progress, async {
        let mut left = bytes;
        while left > 0 {
            let k = left.min(write_chunk() as u64) as usize;
            tls.write_all(&data[..k])
                .await
                .map_err(|e| format!("client write: {e}"))?;
            left -= k as u64;
        }
        tls.shutdown().await.map_err(|e| e.to_string())?;
        done_rx.await.map_err(|_| "server task died".to_string())?
    })
    .await;
    let wall = t0.elapsed();
    let cpu = Cpu::now().since(cpu0);
    let others = machine_busy()
        .saturating_sub(busy0)
        .saturating_sub(cpu.total());
    server.abort();
    let n = result?;
    if n != bytes {
        return Err(format!("server counted {n} bytes, expected {bytes}"));
    }
    Ok(Sample {
        wall,
        cpu,
        others,
        udp_drops: 0,
        quic: None,
    })
}

/// A tunnel server whose handler answers 200, then reads the request body
/// to the end, adding to `progress` and reporting the stream's total.
async fn counting_server(
    ids: &Identities,
    cfg: TunnelConfig,
    progress: Progress,
) -> Result<(TunnelServer, tokio::sync::mpsc::UnboundedReceiver<u64>), String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let server = TunnelServer::bind(
        loopback(),
        ids.server_tls(),
        cfg,
        handler(move |stream: IncomingStream| {
            let tx = tx.clone();
            let p = progress.clone();
            async move {
                let IncomingStream {
                    mut body,
                    responder,
                    ..
                } = stream;
                let ok = http::Response::builder().status(200).body(()).unwrap();
                let mut send = match responder.send_response(ok).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("bench handler: send_response: {e}");
                        return;
                    }
                };
                let mut n = 0u64;
                loop {
                    match body.data().await {
                        Ok(Some(chunk)) => {
                            n += chunk.len() as u64;
                            p.add(chunk.len());
                        }
                        Ok(None) => break,
                        Err(e) => {
                            eprintln!("bench handler: body: {e}");
                            return;
                        }
                    }
                }
                let _ = tx.send(n);
                let _ = send.finish().await;
            }
        }),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((server, rx))
}

fn connect_request() -> http::Request<()> {
    http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("127.0.0.1:9")
        .body(())
        .unwrap()
}

/// Opens a CONNECT stream and waits for the 200 (what `connect_tcp` does).
async fn open_stream(
    client: &TunnelClient,
    peer: &PeerKey,
) -> Result<ferry_transport::tunnel::SendBody, String> {
    let opened = client
        .open(peer, &connect_request())
        .await
        .map_err(|e| format!("open: {e}"))?;
    let (resp, _recv) = opened
        .response
        .response()
        .await
        .map_err(|e| format!("response: {e}"))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    Ok(opened.send)
}

/// The Ferry tunnel: TunnelServer + TunnelClient pinned to one transport.
/// The connection is dialed (and a first empty stream completed) before the
/// clock starts; then one CONNECT stream carries `bytes` in 64 KiB chunks
/// (`--chunk`).
async fn tunnel(
    ids: &Identities,
    bytes: u64,
    kind: TransportKind,
    mtu64k: bool,
) -> Result<Sample, String> {
    let cfg = config_with_mtu(mtu64k);
    let progress = Progress::default();
    let (server, mut done) = counting_server(ids, cfg.clone(), progress.clone()).await?;
    let client = TunnelClient::new(
        ids.client_tls(),
        TunnelConfig {
            force_transport: Some(kind),
            ..cfg
        },
    )
    .map_err(|e| e.to_string())?;
    let peer = PeerKey::new(server.local_addr(), ids.server_id.clone());

    // Warm-up: dial and complete one empty stream.
    let mut warm = open_stream(&client, &peer).await?;
    warm.finish().await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), done.recv()).await {
        Ok(Some(0)) => {}
        other => return Err(format!("warm-up stream: {other:?}")),
    }
    drop(warm);

    let data = payload();
    let drops0 = udp_counters();
    let busy0 = machine_busy();
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let result = watched(bytes, &progress, async {
        let mut send = open_stream(&client, &peer).await?;
        let mut left = bytes;
        while left > 0 {
            let k = left.min(write_chunk() as u64) as usize;
            send.send_data(data.slice(..k))
                .await
                .map_err(|e| format!("send_data: {e}"))?;
            left -= k as u64;
        }
        send.finish().await.map_err(|e| format!("finish: {e}"))?;
        done.recv()
            .await
            .ok_or_else(|| "server handler gone".to_string())
    })
    .await;
    let wall = t0.elapsed();
    let cpu = Cpu::now().since(cpu0);
    let others = machine_busy()
        .saturating_sub(busy0)
        .saturating_sub(cpu.total());
    let udp_drops = if kind == TransportKind::Quic {
        udp_drops_since(&drops0)
    } else {
        0
    };
    client.close();
    drop(server);
    let n = result?;
    if n != bytes {
        return Err(format!("server counted {n} bytes, expected {bytes}"));
    }
    Ok(Sample {
        wall,
        cpu,
        others,
        udp_drops,
        quic: None,
    })
}

// ---------------------------------------------------------------- handshakes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hs {
    RawQuic,
    RawTls,
    FerryQuic,
    FerryH2,
}

impl Hs {
    fn label(self) -> &'static str {
        match self {
            Hs::RawQuic => "raw quinn",
            Hs::RawTls => "raw TLS/TCP",
            Hs::FerryQuic => "Ferry QUIC tunnel",
            Hs::FerryH2 => "Ferry TLS/TCP tunnel (H2)",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Hs::RawQuic => "connect → both ends report the handshake done",
            Hs::RawTls => "TCP connect + TLS → both ends report the handshake done",
            Hs::FerryQuic | Hs::FerryH2 => {
                "`open(CONNECT)` on a new connection → 200 received (handshake + H3/H2 setup + 1 request)"
            }
        }
    }
}

struct HsResult {
    full: Vec<Duration>,
    full_cpu: Duration,
    /// What kind of handshakes rustls reports, where we can see it (raw TLS).
    note: String,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// `k` new connections, one after the other, each with fresh client TLS
/// configs (no session to resume: full handshakes with client certificates).
async fn handshakes(hs: Hs, ids: &Identities, k: usize) -> Result<HsResult, String> {
    match hs {
        Hs::RawQuic => hs_raw_quic(ids, k).await,
        Hs::RawTls => hs_raw_tls(ids, k).await,
        Hs::FerryQuic => hs_tunnel(ids, k, TransportKind::Quic).await,
        Hs::FerryH2 => hs_tunnel(ids, k, TransportKind::H2).await,
    }
}

async fn hs_raw_quic(ids: &Identities, k: usize) -> Result<HsResult, String> {
    let cfg = bench_config();
    let server_ep =
        quic_endpoint::server_endpoint(loopback(), ids.server_tls().server(ALPN_H3), &cfg)
            .map_err(|e| e.to_string())?;
    let addr = server_ep.local_addr().map_err(|e| e.to_string())?;
    let client_ep = quic_endpoint::client_endpoint(loopback(), &cfg).map_err(|e| e.to_string())?;
    let (acc_tx, mut acc_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let sep = server_ep.clone();
    let server = tokio::spawn(async move {
        while let Some(inc) = sep.accept().await {
            let tx = acc_tx.clone();
            tokio::spawn(async move {
                match inc.await {
                    Ok(conn) => {
                        let _ = tx.send(Ok(()));
                        conn.closed().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    async fn one(
        tls: Arc<TlsConfigs>,
        client_ep: &quinn::Endpoint,
        acc_rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<(), String>>,
        server_id: &SpiffeId,
        cfg: &TunnelConfig,
        addr: SocketAddr,
    ) -> Result<Duration, String> {
        let ccfg = quic_endpoint::client_config(tls.client(server_id, ALPN_H3), cfg)?;
        let t0 = Instant::now();
        let conn = client_ep
            .connect_with(ccfg, addr, "127.0.0.1")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("client handshake: {e}"))?;
        acc_rx.recv().await.ok_or("server gone")??;
        let dt = t0.elapsed();
        conn.close(0u32.into(), b"done");
        Ok(dt)
    }
    let mut full = Vec::new();
    let cpu0 = Cpu::now();
    for _ in 0..k {
        full.push(
            one(
                ids.client_tls(),
                &client_ep,
                &mut acc_rx,
                &ids.server_id,
                &cfg,
                addr,
            )
            .await?,
        );
    }
    let full_cpu = Cpu::now().since(cpu0).total();
    client_ep.close(0u32.into(), b"done");
    server_ep.close(0u32.into(), b"done");
    server.abort();
    Ok(HsResult {
        full,
        full_cpu,
        note: String::new(),
    })
}

async fn hs_raw_tls(ids: &Identities, k: usize) -> Result<HsResult, String> {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // One server config for all connections (as a TLS server normally has).
    let acceptor = tokio_rustls::TlsAcceptor::from(ids.server_tls().server(ALPN_H2));
    let (acc_tx, mut acc_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = acc_tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let _ = tx.send(Ok(()));
                        let mut b = [0u8; 16];
                        let _ = tls.read(&mut b).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    async fn one(
        tls: Arc<TlsConfigs>,
        acc_rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<(), String>>,
        server_id: &SpiffeId,
        addr: SocketAddr,
    ) -> Result<(Duration, Option<rustls::HandshakeKind>), String> {
        let connector = tokio_rustls::TlsConnector::from(tls.client(server_id, ALPN_H2));
        let t0 = Instant::now();
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let s = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| format!("client handshake: {e}"))?;
        acc_rx.recv().await.ok_or("server gone")??;
        let dt = t0.elapsed();
        Ok((dt, s.get_ref().1.handshake_kind()))
    }
    let mut full = Vec::new();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let cpu0 = Cpu::now();
    for _ in 0..k {
        let (dt, kind) = one(ids.client_tls(), &mut acc_rx, &ids.server_id, addr).await?;
        full.push(dt);
        *kinds
            .entry(kind.map(|k| format!("{k:?}")).unwrap_or_default())
            .or_default() += 1;
    }
    let full_cpu = Cpu::now().since(cpu0).total();
    server.abort();
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    Ok(HsResult {
        full,
        full_cpu,
        note: kinds
            .iter()
            .map(|(k, n)| format!("{n}× {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

async fn hs_tunnel(ids: &Identities, k: usize, kind: TransportKind) -> Result<HsResult, String> {
    let cfg = bench_config();
    let (server, mut done) = counting_server(ids, cfg.clone(), Progress::default()).await?;
    let peer = PeerKey::new(server.local_addr(), ids.server_id.clone());
    let ccfg = TunnelConfig {
        force_transport: Some(kind),
        ..cfg
    };
    async fn one(
        client: &TunnelClient,
        peer: &PeerKey,
        done: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        let mut send = open_stream(client, peer).await?;
        let dt = t0.elapsed();
        let pooled = client.pooled(peer);
        if pooled.len() != 1 {
            return Err(format!(
                "expected one pooled connection, got {}",
                pooled.len()
            ));
        }
        send.finish().await.map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(10), done.recv())
            .await
            .map_err(|_| "stream end not seen by the server".to_string())?;
        Ok(dt)
    }
    let mut full = Vec::new();
    let mut full_cpu = Duration::ZERO;
    for _ in 0..k {
        // A fresh client: new UDP endpoint, new TLS configs, empty pool.
        let client =
            TunnelClient::new(ids.client_tls(), ccfg.clone()).map_err(|e| e.to_string())?;
        let cpu0 = Cpu::now();
        full.push(one(&client, &peer, &mut done).await?);
        full_cpu += Cpu::now().since(cpu0).total();
        client.close();
    }
    drop(server);
    Ok(HsResult {
        full,
        full_cpu,
        note: String::new(),
    })
}

// ---------------------------------------------------------------- report

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

struct Row {
    gbps: f64,
    cpu_per_gib: f64,
    sys_share: f64,
    util: f64,
    others: f64,
    runs: Vec<f64>,
    errors: Vec<String>,
    notes: Vec<String>,
}

fn summarize(samples: &[Result<Sample, String>], bytes: u64) -> Row {
    let ok: Vec<&Sample> = samples.iter().filter_map(|s| s.as_ref().ok()).collect();
    let errors: Vec<String> = samples
        .iter()
        .filter_map(|s| s.as_ref().err().cloned())
        .collect();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let runs: Vec<f64> = ok
        .iter()
        .map(|s| bytes as f64 * 8.0 / s.wall.as_secs_f64() / 1e9)
        .collect();
    let mut notes = Vec::new();
    let drops: u64 = ok.iter().map(|s| s.udp_drops).sum();
    if drops > 0 {
        notes.push(format!("{drops} UDP buffer drops (system-wide)"));
    }
    if let Some(q) = ok.iter().filter_map(|s| s.quic.clone()).next_back() {
        notes.push(q);
    }
    Row {
        gbps: median(runs.clone()),
        cpu_per_gib: median(
            ok.iter()
                .map(|s| s.cpu.total().as_secs_f64() / gib)
                .collect(),
        ),
        sys_share: median(
            ok.iter()
                .map(|s| s.cpu.sys.as_secs_f64() / s.cpu.total().as_secs_f64().max(1e-9))
                .collect(),
        ),
        util: median(
            ok.iter()
                .map(|s| s.cpu.total().as_secs_f64() / s.wall.as_secs_f64())
                .collect(),
        ),
        others: median(
            ok.iter()
                .map(|s| s.others.as_secs_f64() / s.wall.as_secs_f64())
                .collect(),
        ),
        runs,
        errors,
        notes,
    }
}

/// Runs everything; returns how many measurements failed.
async fn bench(o: &Opts) -> usize {
    let ids = Identities::new();
    let paths: Vec<Path> = Path::all()
        .into_iter()
        .filter(|p| o.wants(p.key()))
        .collect();
    let mut samples: HashMap<Path, Vec<Result<Sample, String>>> = HashMap::new();
    let started = Instant::now();
    if !o.smoke {
        // Untimed: warm the allocator, page tables and CPU caches so the
        // first path measured is not penalised.
        let warm = o.bytes.min(64 << 20);
        eprintln!("warm-up: {} per path, not measured", human(warm));
        for &p in &paths {
            if let Err(e) = run_path(p, &ids, warm).await {
                eprintln!("warm-up {}: {e}", p.label());
            }
        }
    }
    // Rounds interleave the paths, starting one further each round, so slow
    // drift on the machine and position in the round hit all paths alike.
    for run in 1..=o.runs {
        let n = paths.len();
        for i in 0..n {
            let p = paths[(i + run - 1) % n];
            eprint!(
                "[{:>6.1}s] run {run}/{}  {:<36} {} … ",
                started.elapsed().as_secs_f64(),
                o.runs,
                p.label(),
                human(o.bytes)
            );
            let r = run_path(p, &ids, o.bytes).await;
            match &r {
                Ok(s) => eprintln!(
                    "{:.2} s, {:.2} Gb/s, CPU {:.2} s (user {:.2} + sys {:.2}), others {:.2} s{}{}",
                    s.wall.as_secs_f64(),
                    o.bytes as f64 * 8.0 / s.wall.as_secs_f64() / 1e9,
                    s.cpu.total().as_secs_f64(),
                    s.cpu.user.as_secs_f64(),
                    s.cpu.sys.as_secs_f64(),
                    s.others.as_secs_f64(),
                    s.quic
                        .as_ref()
                        .map(|q| format!(" [{q}]"))
                        .unwrap_or_default(),
                    if s.udp_drops > 0 {
                        format!(" [{} UDP drops]", s.udp_drops)
                    } else {
                        String::new()
                    }
                ),
                Err(e) => eprintln!("FAILED: {e}"),
            }
            samples.entry(p).or_default().push(r);
            // Let closing connections drain before the next path.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut hs_results: Vec<(Hs, Result<HsResult, String>)> = Vec::new();
    if o.wants("handshake") && o.handshakes > 0 {
        for hs in [Hs::RawQuic, Hs::FerryQuic, Hs::RawTls, Hs::FerryH2] {
            eprint!(
                "[{:>6.1}s] handshakes  {:<36} {} … ",
                started.elapsed().as_secs_f64(),
                hs.label(),
                o.handshakes
            );
            let r = handshakes(hs, &ids, o.handshakes).await;
            match &r {
                Ok(h) => {
                    let mut f = h.full.clone();
                    f.sort();
                    eprintln!(
                        "p50 {:.2} ms, p90 {:.2} ms, min {:.2} ms {}",
                        ms(pct(&f, 0.5)),
                        ms(pct(&f, 0.9)),
                        ms(f[0]),
                        h.note
                    )
                }
                Err(e) => eprintln!("FAILED: {e}"),
            }
            hs_results.push((hs, r));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let failures = samples.values().flatten().filter(|r| r.is_err()).count()
        + hs_results.iter().filter(|(_, r)| r.is_err()).count();
    if o.smoke {
        let total = samples.values().map(Vec::len).sum::<usize>() + hs_results.len();
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
        println!(
            "tunnel_throughput smoke (not a measurement; use cargo bench): {} passed, {} failed",
            total - failures,
            failures
        );
        return failures;
    }

    // ---- tables on stdout
    let rows: HashMap<Path, Row> = samples
        .iter()
        .map(|(p, s)| (*p, summarize(s, o.bytes)))
        .collect();
    println!();
    println!("Machine: {}.", machine_description());
    println!();
    println!(
        "One stream client→server over 127.0.0.1, {} per run written in {} KiB chunks, {} run(s) \
         per row (medians shown; paths interleaved, untimed warm-up first), 2 tokio worker \
         threads, sender and receiver in one process.",
        human(o.bytes),
        write_chunk() / 1024,
        o.runs
    );
    println!();
    println!(
        "| Path | Gb/s | CPU s/GiB (both ends) | of which kernel | CPU used (cores) | other processes (cores) | tunnel ÷ raw (Gb/s) | tunnel ÷ raw (CPU/GiB) | target | runs (Gb/s) | notes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
    for p in &paths {
        let Some(r) = rows.get(p) else { continue };
        let failed = r.runs.is_empty();
        let (ratio, cpu_ratio, target) = match p.baseline().and_then(|b| rows.get(&b)) {
            Some(b) if !failed && !b.runs.is_empty() => {
                let x = r.gbps / b.gbps;
                (
                    format!("{x:.2}×"),
                    format!("{:.2}×", r.cpu_per_gib / b.cpu_per_gib),
                    if x >= 0.9 {
                        "≥ 0.9×: met".to_string()
                    } else {
                        "≥ 0.9×: **missed**".to_string()
                    },
                )
            }
            Some(_) => ("—".into(), "—".into(), "≥ 0.9×: n/a".into()),
            None => ("—".into(), "—".into(), "(baseline)".into()),
        };
        let mut notes = r.notes.clone();
        if !r.errors.is_empty() {
            notes.push(format!(
                "**{} of {} runs failed**: {}",
                r.errors.len(),
                r.errors.len() + r.runs.len(),
                r.errors.join("; ")
            ));
        }
        if failed {
            println!(
                "| {} | **failed** | — | — | — | — | {ratio} | {cpu_ratio} | {target} | — | {} |",
                p.label(),
                notes.join("; ")
            );
        } else {
            println!(
                "| {} | {:.2} | {:.2} | {:.0}% | {:.2} | {:.2} | {ratio} | {cpu_ratio} | {target} | {} | {} |",
                p.label(),
                r.gbps,
                r.cpu_per_gib,
                r.sys_share * 100.0,
                r.util,
                r.others,
                r.runs
                    .iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                notes.join("; ")
            );
        }
    }

    if !hs_results.is_empty() {
        println!();
        println!(
            "New connections, {} sequential each (mutual TLS 1.3, ECDSA P-256 leaves, \
             X25519MLKEM768 key exchange preferred).",
            o.handshakes
        );
        println!();
        println!(
            "| Path | full handshake p50 (ms) | p90 (ms) | CPU ms per connection (both ends) | what is timed |"
        );
        println!("|---|---:|---:|---:|---|");
        for (hs, r) in &hs_results {
            match r {
                Ok(h) => {
                    let mut f = h.full.clone();
                    f.sort();
                    let note = if h.note.is_empty() {
                        String::new()
                    } else {
                        format!(" (rustls: {})", h.note)
                    };
                    println!(
                        "| {} | {:.2} | {:.2} | {:.2} | {}{note} |",
                        hs.label(),
                        ms(pct(&f, 0.5)),
                        ms(pct(&f, 0.9)),
                        ms(h.full_cpu) / h.full.len().max(1) as f64,
                        hs.what()
                    );
                }
                Err(e) => println!("| {} | **failed**: {e} | | | {} |", hs.label(), hs.what()),
            }
        }
    }
    let busy: Vec<f64> = rows.values().map(|r| r.others).collect();
    if busy.iter().any(|&x| x > 0.2) {
        println!();
        println!(
            "**Warning:** other processes used up to {:.2} cores during some runs; \
             these numbers are not from a quiet machine.",
            busy.iter().cloned().fold(0.0, f64::max)
        );
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    failures
}

/// CPU count, kernel and CPU model, for the report.
fn machine_description() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let o = Opts::parse();
    ferry_transport::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    eprintln!(
        "tunnel_throughput: {} per run, {} run(s), {} handshakes{}",
        human(o.bytes),
        o.runs,
        o.handshakes,
        if o.smoke {
            " (smoke test; not a measurement)"
        } else if o.quick {
            " (quick)"
        } else {
            ""
        }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let failures = rt.block_on(bench(&o));
    // Connections still closing must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(1));
    if failures > 0 && o.smoke {
        std::process::exit(1);
    }
}
