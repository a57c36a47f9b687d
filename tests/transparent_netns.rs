//! Transparent interception for real, in two network namespaces joined by a
//! veth pair (needs root, as CI is; without root the test fails).
//!
//! Host B runs an HTTP application on `10.77.x.2:8080` that echoes the
//! identity header, and a Ferry edge (tunnel `10.77.x.2:4143`). Host A runs a
//! Ferry edge as uid 1337 with a transparent listener on `127.0.0.1:4140`
//! and the rules of `ferry edge iptables --apply --proxy-uid 1337`.
//!
//! Before the rules, a plain `curl http://10.77.x.2:8080/` from A reaches the
//! application directly (no identity header). After them, the same curl as
//! root is redirected: it must reach the application through both edges over
//! QUIC, carrying A's SPIFFE ID, and show up in both edges' access logs and
//! metrics and in the REDIRECT rule's counter; the same curl as uid 1337 is
//! not redirected. Every process and namespace is removed at the end, also
//! on failure (the namespaces take the veth pair and the rules with them).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const PROXY_UID: u32 = 1337;
const TD: &str = "netns.test";

/// Owns everything the test creates; removes it on drop, and on a failure
/// prints the edges' logs.
struct Lab {
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            // Anything still running inside our own namespace was started by
            // this test (e.g. a curl left behind by a failed assertion).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                eprintln!("----- {} -----\n{text}", log.display());
            }
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
fn sh(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// `curl` inside a namespace, optionally as another uid; `None` when it
/// fails (no connection, timeout, HTTP error).
fn curl(ns: &str, uid: Option<u32>, url: &str) -> Option<String> {
    let mut v: Vec<String> = ["ip", "netns", "exec", ns].map(String::from).to_vec();
    if let Some(uid) = uid {
        v.extend([
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ]);
    }
    v.extend(["curl", "-q", "-sS", "-f", "-m", "5", url].map(String::from));
    let v: Vec<&str> = v.iter().map(String::as_str).collect();
    let out = run(&v);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Spawns a process in a namespace (optionally as another uid), its stderr
/// to `log`.
fn spawn_in_ns(lab: &mut Lab, ns: &str, uid: Option<u32>, args: &[&str], log: &Path) -> usize {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    if let Some(uid) = uid {
        cmd.args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ]);
    }
    cmd.args(args)
        .env("RUST_LOG", "warn,access=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {args:?} in {ns}: {e}"));
    lab.children.push(child);
    lab.logs.push(log.to_path_buf());
    lab.children.len() - 1
}

/// Starts `ferry edge` in a namespace and waits (at most 10 s) for its
/// JSON ready line.
fn start_edge(lab: &mut Lab, ns: &str, config: &Path, uid: Option<u32>) -> serde_json::Value {
    let log = config.with_extension("log");
    let i = spawn_in_ns(
        lab,
        ns,
        uid,
        &[
            FERRY,
            "edge",
            "--log-format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ],
        &log,
    );
    let stdout = lab.children[i].stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep the pipe open (and drained) for the life of the edge.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Some(Ok(line))) => line,
        other => panic!(
            "edge in {ns} ({}) printed no ready line: {other:?}\n{}",
            config.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    };
    let ready: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("edge in {ns}: ready line is not JSON ({e}): {line:?}"));
    assert_eq!(ready["ready"], true, "{line}");
    ready
}

/// The sum of a Prometheus counter's samples whose labels include `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| {
            let (l, value) = rest.split_once("} ")?;
            let have: Vec<&str> = l.split(',').collect();
            labels
                .iter()
                .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// The access-log entries (`target = "access"`) of an edge's JSON log.
fn access_log(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .map(|v| v["fields"].clone())
        .collect()
}

/// Waits (at most 5 s) until `log` has `n` access entries matching `pred`.
fn wait_access(log: &Path, n: usize, pred: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entries = access_log(log);
        let found = entries.iter().filter(|e| pred(e)).count();
        if found >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {found} matching access entries, wanted {n}: {entries:#?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The packet counter of the one rule of `chain` (nat, in `ns`) whose
/// listing contains `needle`.
fn rule_packets(ns: &str, chain: &str, needle: &str) -> u64 {
    let listing = in_ns(
        ns,
        &["iptables", "-t", "nat", "-L", chain, "-n", "-v", "-x"],
    );
    let rows: Vec<&str> = listing.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(rows.len(), 1, "one {needle:?} rule in {chain}:\n{listing}");
    rows[0]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no packet counter in {:?}", rows[0]))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

const APP: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("app saw " + self.path + " from " + str(self.headers.get("x-ferry-client-id"))).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

#[test]
fn transparent_interception_through_iptables_in_namespaces() {
    let uid = sh(&["id", "-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "this test needs root (network namespaces, veth, iptables); CI runs it as root"
    );
    for tool in ["ip", "iptables", "curl", "setpriv", "python3", "kill"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool} >/dev/null")])
                .status()
                .unwrap()
                .success(),
            "missing prerequisite `{tool}` (scripts/test installs it)"
        );
    }

    let pid = std::process::id();
    let x = 100 + pid % 100;
    let (a, b) = (format!("ferry-t-{pid}-a"), format!("ferry-t-{pid}-b"));
    let mut lab = Lab {
        dir: tempfile::tempdir().unwrap(),
        namespaces: vec![],
        children: vec![],
        logs: vec![],
    };
    let d = lab.dir.path().to_path_buf();

    // Two hosts joined by a veth pair, created directly inside them (nothing
    // is ever left in the root namespace).
    for ns in [&a, &b] {
        sh(&["ip", "netns", "add", ns]);
        lab.namespaces.push(ns.clone());
        in_ns(ns, &["ip", "link", "set", "lo", "up"]);
    }
    let (ip_a, ip_b) = (format!("10.77.{x}.1"), format!("10.77.{x}.2"));
    sh(&[
        "ip", "link", "add", "name", "veth-a", "netns", &a, "type", "veth", "peer", "name",
        "veth-b", "netns", &b,
    ]);
    for (ns, dev, ip) in [(&a, "veth-a", &ip_a), (&b, "veth-b", &ip_b)] {
        in_ns(ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", dev]);
        in_ns(ns, &["ip", "link", "set", dev, "up"]);
    }

    // PKI, readable by the unprivileged edge.
    let ca = d.join("ca");
    sh(&[
        FERRY,
        "certs",
        "ca",
        "--trust-domain",
        TD,
        "--out",
        ca.to_str().unwrap(),
    ]);
    let id = |sa: &str| format!("spiffe://{TD}/ns/default/sa/{sa}");
    for sa in ["client", "server"] {
        sh(&[
            FERRY,
            "certs",
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            "--id",
            &id(sa),
            "--out",
            d.join(sa).to_str().unwrap(),
        ]);
    }
    sh(&["chmod", "-R", "a+rX", d.to_str().unwrap()]);

    let edge_toml = |sa: &str, tunnel: &str, mesh: &Path, extra: &str| {
        let p = d.join(format!("{sa}.toml"));
        let s = d.join(sa);
        write(
            &p,
            &format!(
                "[identity]\ncert = \"{s}/cert.pem\"\nkey = \"{s}/key.pem\"\nbundles = [\"{s}/bundle.pem\"]\n\
                 [tunnel]\nlisten = \"{tunnel}\"\n[admin]\nlisten = \"127.0.0.1:4191\"\n\
                 [discovery]\nmesh_file = \"{}\"\n{extra}",
                mesh.display(),
                s = s.display(),
            ),
        );
        p
    };

    // Host B: the application on its veth address, and its edge.
    let app = d.join("app.py");
    write(&app, APP);
    spawn_in_ns(
        &mut lab,
        &b,
        None,
        &["python3", app.to_str().unwrap(), &ip_b, "8080"],
        &d.join("app.log"),
    );
    let empty = d.join("empty.toml");
    write(&empty, "");
    let b_cfg = edge_toml(
        "server",
        &format!("{ip_b}:4143"),
        &empty,
        &format!("[inbound]\napp_host = \"{ip_b}\"\n"),
    );
    let ready_b = start_edge(&mut lab, &b, &b_cfg, None);
    assert_eq!(ready_b["id"], id("server"));

    // Host A: a mesh file naming B's workload, an edge as the proxy uid.
    let mesh = d.join("mesh.toml");
    write(
        &mesh,
        &format!(
            "[[services]]\nname = \"web\"\nnamespace = \"default\"\nport = 8080\n\
             [[services.endpoints]]\naddress = \"{ip_b}:8080\"\ntunnel = \"{ip_b}:4143\"\nid = \"{}\"\n",
            id("server")
        ),
    );
    let a_cfg = edge_toml(
        "client",
        &format!("{ip_a}:4143"),
        &mesh,
        "[outbound]\ntransparent = \"127.0.0.1:4140\"\n",
    );
    let ready_a = start_edge(&mut lab, &a, &a_cfg, Some(PROXY_UID));
    assert_eq!(ready_a["id"], id("client"));
    assert_eq!(ready_a["transparent"], "127.0.0.1:4140");

    // Control: without the rules, A's curl reaches the application directly
    // (no identity header). This also waits for the application to listen.
    let url = format!("http://{ip_b}:8080/hello");
    let deadline = Instant::now() + Duration::from_secs(10);
    let direct = loop {
        if let Some(body) = curl(&a, None, &url) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the application in {b} never answered {url} directly"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(direct, "app saw /hello from None");

    // The rules, as printed and as applied, inside A only.
    let port_s = "4140";
    let uid_s = PROXY_UID.to_string();
    let rules = in_ns(
        &a,
        &[
            FERRY,
            "edge",
            "iptables",
            "--print",
            "--proxy-uid",
            &uid_s,
            "--proxy-port",
            port_s,
        ],
    );
    assert!(rules.contains("-j REDIRECT --to-ports 4140"), "{rules}");
    assert!(
        rules.contains(&format!("--uid-owner {PROXY_UID} -j RETURN")),
        "{rules}"
    );
    in_ns(
        &a,
        &[
            FERRY,
            "edge",
            "iptables",
            "--apply",
            "--proxy-uid",
            &uid_s,
            "--proxy-port",
            port_s,
        ],
    );

    // Intercepted: root's plain curl goes through both edges over QUIC and
    // the application sees A's identity. Separate processes, so three
    // separately redirected connections.
    const N: usize = 3;
    for i in 0..N {
        let body = curl(&a, None, &url)
            .unwrap_or_else(|| panic!("intercepted request {i} to {url} failed"));
        assert_eq!(
            body,
            format!("app saw /hello from {}", id("client")),
            "the application sees the caller's SPIFFE ID: the request went through both edges"
        );
    }
    // The proxy's own uid is not redirected: straight to the application.
    assert_eq!(
        curl(&a, Some(PROXY_UID), &url).as_deref(),
        Some("app saw /hello from None"),
        "a connection from uid {PROXY_UID} must not be redirected"
    );

    // The REDIRECT rule caught exactly the three intercepted connections
    // (not the control, the proxy uid's, nor loopback).
    assert_eq!(
        rule_packets(&a, "FERRY_OUTPUT", "REDIRECT"),
        N as u64,
        "redirected connections"
    );

    // Both edges logged and counted the requests.
    let (log_a, log_b) = (a_cfg.with_extension("log"), b_cfg.with_extension("log"));
    wait_access(&log_a, N, |e| {
        e["direction"] == "outbound"
            && e["dst"] == "web.default:8080"
            && e["peer"] == id("server")
            && e["transport"] == "quic"
            && e["path"] == "/hello"
            && e["status"] == 200
    });
    wait_access(&log_b, N, |e| {
        e["direction"] == "inbound"
            && e["src"] == id("client")
            && e["transport"] == "quic"
            && e["path"] == "/hello"
            && e["status"] == 200
    });
    let metrics_a = in_ns(&a, &["curl", "-q", "-sS", "http://127.0.0.1:4191/metrics"]);
    let out_ok = [
        ("direction", "outbound"),
        ("transport", "quic"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        metric(&metrics_a, "ferry_requests_total", &out_ok),
        N as f64,
        "A's outbound requests:\n{metrics_a}"
    );
    let metrics_b = in_ns(&b, &["curl", "-q", "-sS", "http://127.0.0.1:4191/metrics"]);
    let in_ok = [
        ("direction", "inbound"),
        ("transport", "quic"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        metric(&metrics_b, "ferry_requests_total", &in_ok),
        N as f64,
        "B's inbound requests:\n{metrics_b}"
    );
}
