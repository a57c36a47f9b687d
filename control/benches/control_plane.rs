//! The control plane at mesh scale: how long a mesh change takes to reach
//! every watching edge, how much memory the control plane needs, and how
//! many certificates it signs per second. Not a timed test: it prints a
//! Markdown table for `docs/benchmarks.md`.
//!
//! ```sh
//! cargo build --release --bin ferry                                   # the control plane under test
//! cargo bench -p ferry-control --bench control_plane                  # 10,000 endpoints, 1,000 watchers, 20 changes
//! cargo bench -p ferry-control --bench control_plane -- --quick       # 10,000 endpoints, 200 watchers, 5 changes
//! ```
//!
//! Options (after `--`): `--quick`, `--full`, `--services N`, `--replicas N`
//! (workloads per service; endpoints = services × replicas), `--watchers N`,
//! `--changes N`, `--reload-ms MS`, `--certify-secs S`, `--certify-tasks N`,
//! `--ferry PATH` (the binary to run). Without `--bench` (that is, under
//! `cargo test --all-targets`) it only smoke-tests: 100 endpoints, 10
//! watchers, 2 changes, 1 s of Certify, against `target/debug/ferry` (or the
//! release binary), and it skips (exit 0) when neither is built.
//!
//! What runs:
//!
//! - Setup, in a temporary directory: a CA (`CertificateAuthority::generate`)
//!   and a mesh file of `services` services in 20 namespaces, each with
//!   `replicas` workloads (one endpoint each: `ports = { http = 8080 }`,
//!   service port 80 → target port `http`), the replicas of a service sharing
//!   its SPIFFE ID and bootstrap token, and one inbound policy per service.
//!   `control.reload_interval` is 100 ms.
//! - The control plane is a separate process: `ferry control --config
//!   mesh.toml --listen 127.0.0.1:0 --admin 127.0.0.1:0` (the release binary;
//!   default logging, info, to a file), killed when the benchmark ends.
//! - Watchers: `watchers` simulated edges in this process, on a
//!   multi-threaded tokio runtime, each with its own TLS connection
//!   (`ferry_control::client::channel`) and `client::watch` on every service,
//!   all presenting one workload SVID issued from the CA. They are all
//!   started at once; "initial sync" is the time until every one has its
//!   first full state (`reset`).
//! - Changes: `changes` times, one workload of one service gets a new address
//!   (that service's endpoints change), the mesh file is rewritten atomically
//!   (temporary file, then rename), and each watcher's latency is the time
//!   from the rename to its receiving the update with the new `version`. The
//!   table gives p50/p99/max over every (watcher, change) pair. Changes are
//!   spaced by 100-200 ms (random), so they fall at random points of the
//!   file-poll interval. The control plane only notices the file at its next
//!   poll (every `reload_interval`) and then waits 50 ms for it to settle, so
//!   50 ms to 50 ms + `reload_interval` of every sample is polling, not
//!   work. "Published" is the timestamp of the control plane's `mesh state
//!   published` log line for the new version (the same wall clock, µs), and
//!   "published → watcher" is the fan-out alone.
//! - Memory: VmRSS and VmHWM (peak RSS) of the control-plane process from
//!   `/proc/<pid>/status`: idle after start, with every watcher synced, and
//!   after the changes.
//! - Certify: `certify-tasks` concurrent tasks, each with its own
//!   `Certifier` (own connection, warmed up by one untimed call), call
//!   `certify()` in a loop for `certify-secs` for a declared workload. Each
//!   call generates a P-256 key and a CSR here, and the control plane checks
//!   the token and the CSR, signs, and answers. Reported: certificates per
//!   second, call latency p50/p99, and the CPU time (`/proc/<pid>/stat` utime
//!   + stime) of the control plane and of this process during the phase.
//!
//! Everything shares the machine: the watchers' TLS and decoding and the
//! Certify clients' key generation run on the same cores as the control
//! plane. The load average is printed with the table.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry_control::api::WatchUpdate;
use ferry_control::client::{channel, watch, Certifier};
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityStore, Material, SpiffeId, TrustBundles, TrustDomain};
use ferry_transport::metrics::TransportMetrics;
use ferry_transport::tls::{TlsConfigs, ALPN_H2};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TD: &str = "bench.local";
const NAMESPACES: usize = 20;

// ---------------------------------------------------------------- options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Run by `cargo test` (no `--bench`): checks that everything works.
    Smoke,
    Quick,
    Full,
}

#[derive(Debug)]
struct Opts {
    mode: Mode,
    services: usize,
    replicas: usize,
    watchers: usize,
    changes: usize,
    reload: Duration,
    certify_time: Duration,
    certify_tasks: usize,
    ferry: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |f: &str| args.iter().any(|a| a == f);
        // `cargo bench` passes `--bench`; `cargo test --all-targets` runs
        // this binary without it (plus any libtest flags): a smoke run.
        let mode = if has("--quick") {
            Mode::Quick
        } else if has("--bench") || has("--full") {
            Mode::Full
        } else {
            Mode::Smoke
        };
        let mut o = match mode {
            Mode::Smoke => Opts {
                mode,
                services: 10,
                replicas: 10,
                watchers: 10,
                changes: 2,
                reload: Duration::from_millis(100),
                certify_time: Duration::from_secs(1),
                certify_tasks: 4,
                ferry: None,
            },
            Mode::Quick => Opts {
                mode,
                services: 1000,
                replicas: 10,
                watchers: 200,
                changes: 5,
                reload: Duration::from_millis(100),
                certify_time: Duration::from_secs(2),
                certify_tasks: 16,
                ferry: None,
            },
            Mode::Full => Opts {
                mode,
                services: 1000,
                replicas: 10,
                watchers: 1000,
                changes: 20,
                reload: Duration::from_millis(100),
                certify_time: Duration::from_secs(3),
                certify_tasks: 16,
                ferry: None,
            },
        };
        if mode == Mode::Smoke {
            return o;
        }
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = |name: &str| -> u64 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} needs a number"))
            };
            match a.as_str() {
                "--quick" | "--bench" | "--full" => {}
                "--services" => o.services = num("--services") as usize,
                "--replicas" => o.replicas = num("--replicas") as usize,
                "--watchers" => o.watchers = num("--watchers") as usize,
                "--changes" => o.changes = num("--changes") as usize,
                "--reload-ms" => o.reload = Duration::from_millis(num("--reload-ms")),
                "--certify-secs" => o.certify_time = Duration::from_secs(num("--certify-secs")),
                "--certify-tasks" => o.certify_tasks = num("--certify-tasks") as usize,
                "--ferry" => {
                    o.ferry = Some(PathBuf::from(
                        it.next().expect("--ferry needs a path").as_str(),
                    ))
                }
                other => eprintln!("ignoring unknown argument {other:?}"),
            }
        }
        assert!(o.services >= 1 && o.replicas >= 1 && o.watchers >= 1);
        o
    }
}

// ---------------------------------------------------------------- the mesh

/// The mesh as generated: what the file says, and what changes.
struct MeshGen {
    services: usize,
    replicas: usize,
    reload: Duration,
    /// Per service: (token, its SHA-256).
    tokens: Vec<(String, String)>,
    /// Per workload (service-major): its address.
    addresses: Vec<Ipv4Addr>,
}

fn service_name(s: usize) -> String {
    format!("svc-{s:05}")
}

fn namespace(s: usize) -> String {
    format!("ns-{:02}", s % NAMESPACES)
}

fn spiffe_id(s: usize) -> String {
    format!("spiffe://{TD}/ns/{}/sa/{}", namespace(s), service_name(s))
}

fn authority(s: usize) -> String {
    format!("{}.{}:80", service_name(s), namespace(s))
}

impl MeshGen {
    fn new(services: usize, replicas: usize, reload: Duration) -> Self {
        let addresses = (0..services * replicas)
            .map(|i| {
                let i = i as u32 + 1;
                Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)
            })
            .collect();
        Self {
            services,
            replicas,
            reload,
            tokens: (0..services)
                .map(|_| ferry_control::token::generate())
                .collect(),
            addresses,
        }
    }

    /// Change number `k` (from 1): a new address for one workload of one
    /// service; returns that service's authority.
    fn change(&mut self, k: usize) -> String {
        let s = (k * 7919) % self.services;
        let w = s * self.replicas + k % self.replicas;
        self.addresses[w] = Ipv4Addr::new(10, 200, (k >> 8) as u8, k as u8);
        authority(s)
    }

    fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut t = String::with_capacity(self.services * self.replicas * 300);
        let _ = write!(
            t,
            "trust_domain = \"{TD}\"\n\n[ca]\ndir = \"ca\"\n\n[certificates]\nttl = \"1h\"\n\n\
             [control]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
             reload_interval = \"{}ms\"\n",
            self.reload.as_millis()
        );
        for s in 0..self.services {
            for r in 0..self.replicas {
                let a = self.addresses[s * self.replicas + r];
                let _ = write!(
                    t,
                    "\n[[workloads]]\nname = \"{}-{r}\"\nid = \"{}\"\naddress = \"{a}\"\n\
                     tunnel = \"{a}:4143\"\nports = {{ http = 8080 }}\ntoken_sha256 = \"{}\"\n",
                    service_name(s),
                    spiffe_id(s),
                    self.tokens[s].1
                );
            }
        }
        for s in 0..self.services {
            let members: Vec<String> = (0..self.replicas)
                .map(|r| format!("\"{}-{r}\"", service_name(s)))
                .collect();
            let _ = write!(
                t,
                "\n[[services]]\nname = \"{}\"\nnamespace = \"{}\"\naddresses = [\"10.96.{}.{}\"]\n\
                 workloads = [{}]\nports = [{{ port = 80, target_port = \"http\", protocol = \"http\" }}]\n",
                service_name(s),
                namespace(s),
                (s >> 8) as u8,
                s as u8,
                members.join(", ")
            );
        }
        for s in 0..self.services {
            let _ = write!(
                t,
                "\n[[policies]]\nservice = \"{}.{}\"\nallow_namespaces = [\"{}\"]\n",
                service_name(s),
                namespace(s),
                namespace(s)
            );
        }
        t
    }

    /// Writes the file atomically (a temporary file, then rename); returns
    /// the instant the rename completed.
    fn write(&self, path: &Path) -> std::io::Result<Instant> {
        let tmp = path.with_extension("toml.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(self.render().as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        Ok(Instant::now())
    }
}

// ---------------------------------------------------------------- the process

/// The `ferry control` child process; killed when dropped.
struct ControlProcess {
    child: Child,
    pid: u32,
    grpc: SocketAddr,
    admin: SocketAddr,
    id: SpiffeId,
    log: PathBuf,
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl ControlProcess {
    fn start(bin: &Path, mesh: &Path, log: PathBuf) -> Result<Self, String> {
        let log_file = std::fs::File::create(&log).map_err(|e| format!("creating the log: {e}"))?;
        let mut child = Command::new(bin)
            .args(["control", "--config"])
            .arg(mesh)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the ready line, then drains stdout until the process ends.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        // From here on, `proc` kills the child on every early return.
        let mut proc = ControlProcess {
            child,
            pid,
            grpc: "0.0.0.0:0".parse().expect("static"),
            admin: "0.0.0.0:0".parse().expect("static"),
            id: SpiffeId::parse(&format!("spiffe://{TD}/x")).expect("static"),
            log,
        };
        let fail = |proc: &ControlProcess, why: String| {
            format!(
                "the control plane did not start: {why}\n--- {} (last lines) ---\n{}",
                proc.log.display(),
                log_tail(&proc.log)
            )
        };
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => return Err(fail(&proc, "it exited without a ready line".into())),
            Err(_) => return Err(fail(&proc, "no ready line within 60 s".into())),
        };
        let field = |k: &str| {
            json_str(&line, k).ok_or_else(|| format!("no {k:?} in the ready line {line:?}"))
        };
        let parsed = (|| -> Result<(SocketAddr, SocketAddr, SpiffeId), String> {
            Ok((
                field("grpc")?.parse().map_err(|e| format!("grpc: {e}"))?,
                field("admin")?.parse().map_err(|e| format!("admin: {e}"))?,
                SpiffeId::parse(field("id")?).map_err(|e| format!("id: {e}"))?,
            ))
        })();
        match parsed {
            Ok((grpc, admin, id)) => {
                proc.grpc = grpc;
                proc.admin = admin;
                proc.id = id;
                Ok(proc)
            }
            Err(e) => Err(fail(&proc, e)),
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// (VmRSS, VmHWM) in bytes.
    fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.pid))
    }
}

/// utime + stime of a process from `/proc/<pid>/stat` (USER_HZ is 100 on
/// Linux).
fn cpu_of(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file; 3 is the first after the name.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(14) + ticks(15)) * 10)
}

fn own_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

/// One GET on the admin port; the body.
async fn admin_get(admin: SocketAddr, path: &str) -> Option<String> {
    let io = async {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        Some(text.split_once("\r\n\r\n")?.1.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .ok()?
}

/// The value of one metric line (`name value`) in `/metrics`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp as the log
/// writes it (`2026-11-28T12:53:49.123456Z`).
fn parse_utc(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// When the control plane logged "mesh state published" for `version`, as
/// seconds since the Unix epoch.
fn published_at(log: &Path, version: u64) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let want = format!("version={version} ");
    text.lines()
        .filter(|l| l.contains("mesh state published"))
        .map(strip_ansi)
        .find(|l| l.contains(&want))
        .and_then(|l| parse_utc(l.split_whitespace().next()?))
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------- watchers

/// One update received by one watcher.
struct Event {
    watcher: usize,
    at: Instant,
    version: u64,
    reset: bool,
    /// Authorities in the update (not for a reset).
    changed: Vec<String>,
    endpoints: usize,
    bytes: usize,
}

struct Watchers {
    events: mpsc::UnboundedReceiver<Event>,
    /// Per watcher: resets received (more than one is a reconnect).
    resets: Vec<u32>,
    /// Per watcher: the highest version seen.
    latest: Vec<u64>,
    /// Updates that were not exactly the changed service.
    unexpected: Vec<String>,
    full_bytes: usize,
    full_endpoints: usize,
}

impl Watchers {
    /// Waits until every watcher has seen `target` (or a later version);
    /// per watcher, when it did (None: not within `limit`). With `expect`,
    /// checks that non-reset updates carry exactly that authority.
    async fn wait_for(
        &mut self,
        target: u64,
        limit: Duration,
        expect: Option<&str>,
    ) -> Vec<Option<Instant>> {
        let n = self.latest.len();
        let mut arrived: Vec<Option<Instant>> = vec![None; n];
        let mut missing = n;
        let deadline = tokio::time::Instant::now() + limit;
        while missing > 0 {
            let e = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => e,
                _ => break,
            };
            if e.reset {
                self.resets[e.watcher] += 1;
                self.full_bytes = self.full_bytes.max(e.bytes);
                self.full_endpoints = self.full_endpoints.max(e.endpoints);
            } else if let Some(want) = expect {
                if e.version >= target && (e.changed.len() != 1 || e.changed[0] != want) {
                    self.unexpected.push(format!(
                        "watcher {} version {}: {:?} (expected [{want:?}])",
                        e.watcher, e.version, e.changed
                    ));
                }
            }
            self.latest[e.watcher] = self.latest[e.watcher].max(e.version);
            if e.version >= target && arrived[e.watcher].is_none() {
                arrived[e.watcher] = Some(e.at);
                missing -= 1;
            }
        }
        // Those that had it already (e.g. by a reconnect's reset).
        for (w, a) in arrived.iter_mut().enumerate() {
            if a.is_none() && self.latest[w] >= target {
                *a = Some(Instant::now());
            }
        }
        arrived
    }
}

fn start_watchers(
    n: usize,
    grpc: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    stop: &CancellationToken,
) -> Watchers {
    let (tx, rx) = mpsc::unbounded_channel();
    for i in 0..n {
        let tls = tls.clone();
        let ch = channel(grpc, move || tls.clone());
        let tx = tx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            // A large state arrives in parts (`partial`): one event per
            // complete update, with the parts' sizes summed.
            let (mut part_bytes, mut part_endpoints) = (0, 0);
            let apply = move |u: WatchUpdate| {
                let at = Instant::now();
                part_endpoints += u.services.iter().map(|s| s.endpoints.len()).sum::<usize>();
                if u.reset {
                    part_bytes += u.encoded_len();
                }
                if u.partial {
                    return;
                }
                let changed = if u.reset {
                    Vec::new()
                } else {
                    u.services.iter().map(|s| s.authority.clone()).collect()
                };
                let _ = tx.send(Event {
                    watcher: i,
                    at,
                    version: u.version,
                    reset: u.reset,
                    changed,
                    endpoints: std::mem::take(&mut part_endpoints),
                    bytes: std::mem::take(&mut part_bytes),
                });
            };
            watch(ch, Vec::new(), apply, stop).await;
        });
    }
    Watchers {
        events: rx,
        resets: vec![0; n],
        latest: vec![0; n],
        unexpected: Vec::new(),
        full_bytes: 0,
        full_endpoints: 0,
    }
}

// ---------------------------------------------------------------- numbers

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1e3;
    if m >= 100.0 {
        format!("{m:.0} ms")
    } else {
        format!("{m:.1} ms")
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model})")
}

// ---------------------------------------------------------------- the binary

/// The `ferry` binary to run: `--ferry`, else the release build (and in a
/// smoke run the debug build first). Err: what to tell the user.
fn find_ferry(o: &Opts) -> Result<PathBuf, String> {
    if let Some(p) = &o.ferry {
        return if p.is_file() {
            Ok(p.clone())
        } else {
            Err(format!("--ferry {}: no such file", p.display()))
        };
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"));
    let profiles: &[&str] = if o.mode == Mode::Smoke {
        &["debug", "release"]
    } else {
        &["release"]
    };
    for p in profiles {
        let bin = target.join(p).join("ferry");
        if bin.is_file() {
            warn_if_stale(&bin, manifest, p);
            return Ok(bin);
        }
    }
    Err(format!(
        "{} is not built: run `cargo build --release --bin ferry` first (the benchmark runs the \
         control plane as its own process)",
        target.join("release/ferry").display()
    ))
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata().ok().and_then(|m| m.modified().ok())
        };
        newest = newest.max(t);
    }
    newest
}

fn warn_if_stale(bin: &Path, manifest: &Path, profile: &str) {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
    let sources = [
        manifest.join("src"),
        manifest.join("proto"),
        manifest.join("../src"),
    ]
    .iter()
    .filter_map(|d| newest_mtime(d))
    .max();
    if let (Some(built), Some(src)) = (built, sources) {
        if src > built {
            eprintln!(
                "warning: {} is older than the control plane's sources; rebuild it \
                 (cargo build{} --bin ferry) to measure the current code",
                bin.display(),
                if profile == "release" {
                    " --release"
                } else {
                    ""
                }
            );
        }
    }
}

// ---------------------------------------------------------------- the run

struct Results {
    endpoints: usize,
    mesh_bytes: usize,
    full_bytes: usize,
    watchers: usize,
    sync: Duration,
    sync_p50: Duration,
    sync_cpu: Duration,
    sync_own_cpu: Duration,
    changes: usize,
    lat: Vec<Duration>,
    publish: Vec<Duration>,
    fanout: Vec<Duration>,
    change_cpu: Duration,
    missed: usize,
    mem_idle: (u64, u64),
    mem_synced: (u64, u64),
    mem_after: (u64, u64),
    reconnects: u32,
    unexpected: Vec<String>,
    certs: usize,
    certify_errors: usize,
    certify_elapsed: Duration,
    certify_lat: Vec<Duration>,
    certify_cp_cpu: Duration,
    certify_own_cpu: Duration,
    metrics_watchers: Option<f64>,
    metrics_issued: Option<f64>,
}

async fn run(o: &Opts, bin: &Path) -> Result<Results, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let td = TrustDomain::new(TD).map_err(|e| e.to_string())?;
    let ca = CertificateAuthority::generate(&td, Duration::from_secs(86400))
        .map_err(|e| e.to_string())?;
    ca.write(&dir.path().join("ca"), false)
        .map_err(|e| e.to_string())?;
    let mut mesh = MeshGen::new(o.services, o.replicas, o.reload);
    let mesh_path = dir.path().join("mesh.toml");
    mesh.write(&mesh_path)
        .map_err(|e| format!("writing the mesh file: {e}"))?;
    let mesh_bytes = std::fs::metadata(&mesh_path).map(|m| m.len()).unwrap_or(0) as usize;

    eprintln!("starting {} control", bin.display());
    let mut cp = ControlProcess::start(bin, &mesh_path, dir.path().join("control.log"))?;
    eprintln!(
        "control plane pid {} grpc {} admin {}",
        cp.pid, cp.grpc, cp.admin
    );
    // Lets the process settle before its memory is read.
    let settle = if o.mode == Mode::Smoke {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    tokio::time::sleep(settle).await;
    let mem_idle = cp.memory();

    // The watchers' client identity: one workload SVID from the CA.
    let issued = ca
        .issue(
            &SpiffeId::parse(&spiffe_id(0)).map_err(|e| e.to_string())?,
            Duration::from_secs(3600),
        )
        .map_err(|e| e.to_string())?;
    let mut bundles = TrustBundles::default();
    bundles
        .add_pem(issued.bundle_pem.as_bytes(), "the bench CA")
        .map_err(|e| e.to_string())?;
    let bundles = Arc::new(bundles);
    let material = Material::from_pem(
        issued.cert_chain_pem.as_bytes(),
        "the watchers' certificate",
        issued.key_pem.as_bytes(),
        "the watchers' key",
        (*bundles).clone(),
    )
    .map_err(|e| e.to_string())?;
    let tls = TlsConfigs::new(IdentityStore::new(material), TransportMetrics::new());
    let client_tls = tls.client(&cp.id, ALPN_H2);

    // Initial sync.
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let sync_limit = if o.mode == Mode::Smoke {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(300)
    };
    eprintln!("starting {} watchers", o.watchers);
    let cpu0 = cp.cpu();
    let own0 = own_cpu();
    let t0 = Instant::now();
    let mut w = start_watchers(o.watchers, cp.grpc, client_tls, &stop);
    let arrived = w.wait_for(1, sync_limit, None).await;
    let mut firsts: Vec<Duration> = arrived.iter().flatten().map(|a| *a - t0).collect();
    if firsts.len() < o.watchers {
        return Err(format!(
            "only {} of {} watchers got their first state within {sync_limit:?} (control plane {})\n{}",
            firsts.len(),
            o.watchers,
            if cp.alive() { "running" } else { "exited" },
            log_tail(&cp.log)
        ));
    }
    let sync_cpu = cp.cpu() - cpu0;
    let sync_own_cpu = own_cpu() - own0;
    firsts.sort();
    let sync = *firsts.last().expect("at least one watcher");
    let sync_p50 = pct(&firsts, 0.5);
    eprintln!("all {} watchers synced in {}", o.watchers, ms(sync));
    tokio::time::sleep(settle).await;
    let mem_synced = cp.memory();

    // Changes.
    let change_limit = if o.mode == Mode::Smoke {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(60)
    };
    let mut lat = Vec::new();
    let mut publish = Vec::new();
    let mut fanout = Vec::new();
    let mut missed = 0;
    let cpu0 = cp.cpu();
    for k in 1..=o.changes {
        let gap = Duration::from_millis(100 + rand::random::<u64>() % 100);
        tokio::time::sleep(gap).await;
        let target = 1 + k as u64;
        let changed = mesh.change(k);
        let at = mesh
            .write(&mesh_path)
            .map_err(|e| format!("rewriting the mesh file: {e}"))?;
        let at_wall = unix(SystemTime::now());
        let arrived = w.wait_for(target, change_limit, Some(&changed)).await;
        // The control plane's log line, on the same wall clock.
        let pub_at = published_at(&cp.log, target).map(|p| {
            let after = Duration::from_secs_f64((p - at_wall).max(0.0));
            publish.push(after);
            at + after
        });
        let mut got = 0;
        for a in arrived.iter().flatten() {
            got += 1;
            lat.push(*a - at);
            if let Some(p) = pub_at {
                fanout.push(a.saturating_duration_since(p));
            }
        }
        missed += o.watchers - got;
        eprintln!(
            "change {k}/{}: {got}/{} watchers, control plane RSS {}, last after {}",
            o.changes,
            o.watchers,
            mib(cp.memory().0),
            arrived
                .iter()
                .flatten()
                .max()
                .map(|a| ms(*a - at))
                .unwrap_or_else(|| "-".into())
        );
        if got == 0 {
            return Err(format!(
                "change {k}: no watcher got version {target} within {change_limit:?}\n{}",
                log_tail(&cp.log)
            ));
        }
    }
    let change_cpu = cp.cpu() - cpu0;
    tokio::time::sleep(settle).await;
    let mem_after = cp.memory();
    lat.sort();
    publish.sort();
    fanout.sort();

    // Certify.
    eprintln!(
        "certify: {} tasks for {:?}",
        o.certify_tasks, o.certify_time
    );
    let workload = SpiffeId::parse(&spiffe_id(0)).map_err(|e| e.to_string())?;
    let mut certifiers = Vec::new();
    for _ in 0..o.certify_tasks {
        let c = Certifier::new(
            cp.grpc,
            cp.id.clone(),
            bundles.clone(),
            workload.clone(),
            mesh.tokens[0].0.clone(),
            TransportMetrics::new(),
        );
        // Warm-up: the connection, untimed.
        c.certify()
            .await
            .map_err(|e| format!("the warm-up Certify failed: {e}"))?;
        certifiers.push(c);
    }
    let cp_cpu0 = cp.cpu();
    let own_cpu0 = own_cpu();
    let start = Instant::now();
    let end = start + o.certify_time;
    let tasks: Vec<_> = certifiers
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    match c.certify().await {
                        Ok(_) => lat.push(t.elapsed()),
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("certify failed: {e}");
                            }
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut certify_lat = Vec::new();
    let mut certify_errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| format!("a certify task: {e}"))?;
        certify_lat.extend(l);
        certify_errors += e;
    }
    let certify_elapsed = start.elapsed();
    let certify_cp_cpu = cp.cpu() - cp_cpu0;
    let certify_own_cpu = own_cpu() - own_cpu0;
    certify_lat.sort();

    let metrics_text = admin_get(cp.admin, "/metrics").await.unwrap_or_default();
    if !cp.alive() {
        return Err(format!(
            "the control plane exited during the run\n{}",
            log_tail(&cp.log)
        ));
    }
    stop.cancel();
    Ok(Results {
        endpoints: o.services * o.replicas,
        mesh_bytes,
        full_bytes: w.full_bytes,
        watchers: o.watchers,
        sync,
        sync_p50,
        sync_cpu,
        sync_own_cpu,
        changes: o.changes,
        lat,
        publish,
        fanout,
        change_cpu,
        missed,
        mem_idle,
        mem_synced,
        mem_after,
        reconnects: w.resets.iter().map(|r| r.saturating_sub(1)).sum(),
        unexpected: w.unexpected,
        certs: certify_lat.len(),
        certify_errors,
        certify_elapsed,
        certify_lat,
        certify_cp_cpu,
        certify_own_cpu,
        metrics_watchers: metric(&metrics_text, "ferry_control_watchers"),
        metrics_issued: metric(&metrics_text, "ferry_control_certificates_issued_total"),
    })
}

fn print_table(o: &Opts, r: &Results, load_before: &str, load_after: &str) {
    let per_s = r.certs as f64 / r.certify_elapsed.as_secs_f64();
    let cpu_per_cert = |cpu: Duration| {
        if r.certs == 0 {
            "-".to_string()
        } else {
            format!("{:.2} ms", cpu.as_secs_f64() * 1e3 / r.certs as f64)
        }
    };
    let mem = |(rss, hwm): (u64, u64)| format!("{} (peak {})", mib(rss), mib(hwm));
    println!();
    println!(
        "Control plane: {} services × {} workloads = {} endpoints, {} watchers, {} changes, \
         reload_interval {} ms; {}; load average {load_before} before, {load_after} after",
        thousands(o.services),
        o.replicas,
        thousands(r.endpoints),
        thousands(r.watchers),
        r.changes,
        o.reload.as_millis(),
        machine()
    );
    println!();
    println!("| Measure | Result |");
    println!("|---|---|");
    println!(
        "| Mesh file / full state (one `reset` message) | {} KiB / {} KiB, {} endpoints |",
        r.mesh_bytes / 1024,
        r.full_bytes / 1024,
        thousands(r.endpoints)
    );
    println!(
        "| Initial sync: {} watchers connect at once, until all have the full state | {} (p50 watcher {}); CPU: control plane {:.1} s, bench watchers {:.1} s |",
        thousands(r.watchers),
        ms(r.sync),
        ms(r.sync_p50),
        r.sync_cpu.as_secs_f64(),
        r.sync_own_cpu.as_secs_f64()
    );
    println!(
        "| Change → watcher (rename to update received), p50 / p99 / max, {} samples | {} / {} / {} |",
        thousands(r.lat.len()),
        ms(pct(&r.lat, 0.5)),
        ms(pct(&r.lat, 0.99)),
        ms(pct(&r.lat, 1.0))
    );
    println!(
        "| … of which: change → published (log), p50 / max | {} / {} (poll {} ms + settle 50 ms + load) |",
        ms(pct(&r.publish, 0.5)),
        ms(pct(&r.publish, 1.0)),
        o.reload.as_millis()
    );
    println!(
        "| … and published → watcher (fan-out), p50 / p99 / max | {} / {} / {} |",
        ms(pct(&r.fanout, 0.5)),
        ms(pct(&r.fanout, 0.99)),
        ms(pct(&r.fanout, 1.0))
    );
    println!(
        "| Control plane CPU per change | {:.0} ms |",
        r.change_cpu.as_secs_f64() * 1e3 / r.changes.max(1) as f64
    );
    println!(
        "| Memory (VmRSS, peak VmHWM): idle after start | {} |",
        mem(r.mem_idle)
    );
    println!(
        "| … with {} watchers synced | {} |",
        thousands(r.watchers),
        mem(r.mem_synced)
    );
    println!("| … after the changes | {} |", mem(r.mem_after));
    println!(
        "| Certify: {} tasks for {:.1} s | {:.0} certificates/s ({} signed, {} errors) |",
        o.certify_tasks,
        r.certify_elapsed.as_secs_f64(),
        per_s,
        r.certs,
        r.certify_errors
    );
    println!(
        "| … call latency p50 / p99 | {} / {} |",
        ms(pct(&r.certify_lat, 0.5)),
        ms(pct(&r.certify_lat, 0.99))
    );
    println!(
        "| … CPU: control plane / bench clients | {:.2} s ({} per cert, {:.2} cores) / {:.2} s ({} per cert) |",
        r.certify_cp_cpu.as_secs_f64(),
        cpu_per_cert(r.certify_cp_cpu),
        r.certify_cp_cpu.as_secs_f64() / r.certify_elapsed.as_secs_f64(),
        r.certify_own_cpu.as_secs_f64(),
        cpu_per_cert(r.certify_own_cpu)
    );
    println!();
    let mut notes = Vec::new();
    if r.missed > 0 {
        notes.push(format!(
            "{} (watcher, change) samples missing (update not received within the timeout)",
            r.missed
        ));
    }
    if r.reconnects > 0 {
        notes.push(format!("{} watch reconnects (extra resets)", r.reconnects));
    }
    if !r.unexpected.is_empty() {
        notes.push(format!(
            "{} updates not carrying exactly the changed service, e.g. {}",
            r.unexpected.len(),
            r.unexpected[0]
        ));
    }
    if r.metrics_watchers != Some(r.watchers as f64) {
        notes.push(format!(
            "ferry_control_watchers is {:?}, expected {}",
            r.metrics_watchers, r.watchers
        ));
    }
    if let Some(issued) = r.metrics_issued {
        if (issued as usize) < r.certs {
            notes.push(format!(
                "ferry_control_certificates_issued_total {issued} < {} signed",
                r.certs
            ));
        }
    }
    for n in &notes {
        println!("note: {n}");
    }
}

fn main() {
    let o = Opts::parse();
    ferry_transport::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let bin = match find_ferry(&o) {
        Ok(b) => b,
        Err(e) if o.mode == Mode::Smoke => {
            println!("control_plane smoke skipped: {e}");
            return;
        }
        Err(e) => {
            eprintln!("control_plane: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "control_plane: {} endpoints, {} watchers, {} changes{}",
        o.services * o.replicas,
        o.watchers,
        o.changes,
        match o.mode {
            Mode::Smoke => " (smoke test; not a measurement)",
            Mode::Quick => " (quick)",
            Mode::Full => "",
        }
    );
    let load_before = loadavg();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // SIGINT or SIGTERM (e.g. from `timeout`) ends the run cleanly: the
    // dropped run kills the control plane.
    let result = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return Err("cannot install the signal handlers".to_string());
        };
        tokio::select! {
            r = run(&o, &bin) => r,
            _ = term.recv() => Err("terminated".to_string()),
            _ = int.recv() => Err("interrupted".to_string()),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(r) if o.mode == Mode::Smoke => {
            let ok = r.missed == 0 && r.certs > 0 && r.certify_errors == 0;
            println!(
                "control_plane smoke (not a measurement; use cargo bench): {}: {} watchers, {} change samples, {} certificates",
                if ok { "ok" } else { "FAILED" },
                r.watchers,
                r.lat.len(),
                r.certs
            );
            if !ok {
                std::process::exit(1);
            }
        }
        Ok(r) => print_table(&o, &r, &load_before, &loadavg()),
        Err(e) => {
            eprintln!("control_plane: {e}");
            std::process::exit(1);
        }
    }
}
