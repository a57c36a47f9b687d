//! Transparent interception for real, in network namespaces (needs root,
//! as CI is): host A runs an application and a Ferry edge as uid 1337 with
//! the rules from `ferry edge iptables --apply`; host B runs a Ferry edge and
//! an HTTP application. A plain `curl http://<B>:8080/` from A (uid 0, so
//! redirected) must reach B's application through both edges over QUIC, with
//! A's SPIFFE ID in the identity header. Every process and namespace is
//! removed at the end, also on failure.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Kills processes and deletes namespaces on drop.
struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// Spawns `ferry edge` in a namespace (optionally as another uid) and waits
/// for its ready line.
fn start_edge(lab: &mut Lab, ns: &str, config: &Path, uid: Option<u32>) -> serde_json::Value {
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
    cmd.arg(FERRY)
        .args(["edge", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn");
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn ferry edge");
    let stdout = child.stdout.take().unwrap();
    lab.children.push(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("edge in {ns} did not become ready ({e}): {line:?}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn transparent_interception_through_iptables_in_namespaces() {
    let uid = sh(&["id", "-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "this test needs root (network namespaces and iptables); CI runs as root"
    );
    for tool in ["ip", "iptables", "curl", "setpriv"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .unwrap()
                .success(),
            "missing prerequisite {tool} (scripts/test installs it)"
        );
    }
    let pid = std::process::id();
    let x = 100 + pid % 100;
    let (a, b) = (format!("ferry-t{pid}-a"), format!("ferry-t{pid}-b"));
    let mut lab = Lab {
        namespaces: vec![],
        children: vec![],
    };
    for ns in [&a, &b] {
        sh(&["ip", "netns", "add", ns]);
        lab.namespaces.push(ns.clone());
        in_ns(ns, &["ip", "link", "set", "lo", "up"]);
    }
    let (va, vb) = (format!("fva{pid}"), format!("fvb{pid}"));
    let (va, vb) = (&va[..va.len().min(15)], &vb[..vb.len().min(15)]);
    sh(&["ip", "link", "add", va, "type", "veth", "peer", "name", vb]);
    sh(&["ip", "link", "set", va, "netns", &a]);
    sh(&["ip", "link", "set", vb, "netns", &b]);
    let (ip_a, ip_b) = (format!("10.77.{x}.1"), format!("10.77.{x}.2"));
    in_ns(&a, &["ip", "addr", "add", &format!("{ip_a}/24"), "dev", va]);
    in_ns(&b, &["ip", "addr", "add", &format!("{ip_b}/24"), "dev", vb]);
    in_ns(&a, &["ip", "link", "set", va, "up"]);
    in_ns(&b, &["ip", "link", "set", vb, "up"]);

    // PKI, readable by the unprivileged edge.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = d.join("ca");
    sh(&[
        FERRY,
        "certs",
        "ca",
        "--trust-domain",
        "netns.test",
        "--out",
        ca.to_str().unwrap(),
    ]);
    for sa in ["client", "server"] {
        let out = d.join(sa);
        sh(&[
            FERRY,
            "certs",
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            "--id",
            &format!("spiffe://netns.test/ns/default/sa/{sa}"),
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    sh(&["chmod", "-R", "a+rX", d.to_str().unwrap()]);

    // Host B: the application (echoes the identity header) and its edge.
    let app = d.join("app.py");
    write(
        &app,
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       body = ('app saw ' + self.path + ' from ' + str(self.headers.get('x-ferry-client-id'))).encode()\n\
         \x20       self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n",
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &b, "/usr/bin/python3"])
        .arg(&app);
    lab.children
        .push(cmd.stdout(Stdio::null()).spawn().unwrap());
    let empty = d.join("empty.toml");
    write(&empty, "");
    let edge_toml = |sa: &str, tunnel: &str, mesh: &Path, extra: &str| {
        let p = d.join(format!("{sa}.toml"));
        write(
            &p,
            &format!(
                "[identity]\ncert = \"{s}/cert.pem\"\nkey = \"{s}/key.pem\"\nbundles = [\"{s}/bundle.pem\"]\n\
                 [tunnel]\nlisten = \"{tunnel}\"\n[admin]\nlisten = \"127.0.0.1:4191\"\n\
                 [discovery]\nmesh_file = \"{}\"\n{extra}",
                mesh.display(),
                s = d.join(sa).display()
            ),
        );
        p
    };
    let b_cfg = edge_toml("server", &format!("{ip_b}:4143"), &empty, "");
    start_edge(&mut lab, &b, &b_cfg, None);

    // Host A: mesh file, edge as uid 1337, iptables.
    let mesh = d.join("mesh.toml");
    write(
        &mesh,
        &format!(
            "[[services]]\nname = \"web\"\nnamespace = \"default\"\nport = 8080\n\
             [[services.endpoints]]\naddress = \"{ip_b}:8080\"\ntunnel = \"{ip_b}:4143\"\nid = \"spiffe://netns.test/ns/default/sa/server\"\n"
        ),
    );
    let a_cfg = edge_toml(
        "client",
        &format!("{ip_a}:4143"),
        &mesh,
        "[outbound]\ntransparent = \"127.0.0.1:4140\"\n",
    );
    start_edge(&mut lab, &a, &a_cfg, Some(1337));
    let rules = in_ns(
        &a,
        &[FERRY, "edge", "iptables", "--print", "--proxy-uid", "1337"],
    );
    assert!(rules.contains("REDIRECT --to-ports 4140"), "{rules}");
    in_ns(
        &a,
        &[
            FERRY,
            "edge",
            "iptables",
            "--apply",
            "--proxy-uid",
            "1337",
            "--proxy-port",
            "4140",
            "--exclude-ports",
            "4143,4191",
        ],
    );

    // A plain client in A, addressing B's application directly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &a,
                "curl",
                "-s",
                "-m",
                "3",
                &format!("http://{ip_b}:8080/hello"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("app saw") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no answer through the edges: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        body, "app saw /hello from spiffe://netns.test/ns/default/sa/client",
        "the app sees the caller's identity, so the request went through both edges"
    );

    let metrics_a = in_ns(&a, &["curl", "-s", "http://127.0.0.1:4191/metrics"]);
    assert!(
        metrics_a.lines().any(|l| l.starts_with(
            "ferry_requests_total{direction=\"outbound\",transport=\"quic\",status_class=\"2xx\"}"
        )),
        "{metrics_a}"
    );
    let metrics_b = in_ns(&b, &["curl", "-s", "http://127.0.0.1:4191/metrics"]);
    assert!(
        metrics_b.lines().any(|l| l.starts_with(
            "ferry_requests_total{direction=\"inbound\",transport=\"quic\",status_class=\"2xx\"}"
        )),
        "{metrics_b}"
    );
}
