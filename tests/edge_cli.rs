//! `ferry edge` as a real process: a bad configuration is refused with one
//! line naming file, line and field (exit 2, nothing bound); a good one
//! prints its ready line, serves `/ready`, and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn certs(dir: &std::path::Path) {
    let ca = dir.join("ca");
    assert!(Command::new(FERRY)
        .args(["certs", "ca", "--trust-domain", "cli.test", "--out"])
        .arg(&ca)
        .status()
        .unwrap()
        .success());
    assert!(Command::new(FERRY)
        .args(["certs", "issue", "--ca"])
        .arg(&ca)
        .args(["--id", "spiffe://cli.test/ns/default/sa/web", "--out"])
        .arg(dir.join("web"))
        .status()
        .unwrap()
        .success());
}

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("mesh.toml"), "").unwrap();
    let p = dir.join("edge.toml");
    std::fs::write(
        &p,
        format!(
            "[identity]\ncert = \"web/cert.pem\"\nkey = \"web/key.pem\"\nbundles = [\"web/bundle.pem\"]\n\
             [tunnel]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [discovery]\nmesh_file = \"mesh.toml\"\n{extra}"
        ),
    )
    .unwrap();
    p
}

#[test]
fn bad_config_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let p = config(
        dir.path(),
        "[outbound]\ndetect_timeout = \"300ms\"\nlistn = \"127.0.0.1:1\"\n",
    );
    let out = Command::new(FERRY)
        .args(["edge", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        err.contains("edge.toml") && err.contains("line 13") && err.contains("listn"),
        "{err}"
    );

    let p = config(
        dir.path(),
        "[[inbound.ports]]\nport = 80\nallow_ids = [\"spiffe://Bad/x\"]\n",
    );
    let out = Command::new(FERRY)
        .args(["edge", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("edge.toml") && err.contains("line 13") && err.contains("allow_ids"),
        "{err}"
    );
}

/// Starts `ferry edge` on the config in `dir` with extra arguments and
/// environment; returns the process and its ready line.
fn start_edge(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Guard, serde_json::Value) {
    let p = config(dir, "");
    let mut child = Command::new(FERRY)
        .args(["edge", "--config"])
        .arg(&p)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("FERRY_THREADS")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(ready["ready"], true);
    (guard, ready)
}

/// GET `path` from the admin port; the whole response.
fn admin_get(admin: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// The runtime's thread count the admin port's `/config` reports.
fn config_threads(admin: &str) -> u64 {
    let resp = admin_get(admin, "/config");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).expect("a body");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["runtime"]["threads"].as_u64().expect("runtime.threads")
}

#[test]
fn edge_process_starts_serves_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let (mut guard, ready) = start_edge(dir.path(), &[], &[]);
    assert_eq!(ready["id"], "spiffe://cli.test/ns/default/sa/web");
    let admin = ready["admin"].as_str().unwrap();
    let resp = admin_get(admin, "/ready");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // One thread unless told otherwise.
    assert_eq!(config_threads(admin), 1);

    let pid = guard.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = guard.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "edge did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        std::net::TcpStream::connect(admin).is_err(),
        "admin port closed after exit"
    );
}

#[test]
fn threads_come_from_the_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    for (args, env, want) in [
        (&["--threads", "3"][..], &[][..], 3),
        (&[][..], &[("FERRY_THREADS", "2")][..], 2),
        (&["--threads", "1"][..], &[("FERRY_THREADS", "2")][..], 1),
    ] {
        let (_guard, ready) = start_edge(dir.path(), args, env);
        let admin = ready["admin"].as_str().unwrap();
        assert_eq!(config_threads(admin), want, "{args:?} {env:?}");
    }
    let out = Command::new(FERRY)
        .args(["edge", "--config"])
        .arg(config(dir.path(), ""))
        .args(["--threads", "5000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--threads"), "{err}");
}

/// Errors found after parsing (a duplicate listener, a bad mesh file) are
/// reported the same way, and before anything is bound: the tunnel and
/// admin ports named in the file are held by the test, so an attempt to
/// bind them would fail with a different error.
#[test]
fn invalid_config_or_mesh_file_fails_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_udp = std::net::UdpSocket::bind(held.local_addr().unwrap()).ok();
    let port = held.local_addr().unwrap().port();
    let run = |edge: &str, mesh: &str| {
        std::fs::write(dir.path().join("mesh.toml"), mesh).unwrap();
        let p = dir.path().join("edge.toml");
        std::fs::write(
            &p,
            format!(
                "[identity]\ncert = \"web/cert.pem\"\nkey = \"web/key.pem\"\nbundles = [\"web/bundle.pem\"]\n\
                 [tunnel]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\
                 [discovery]\nmesh_file = \"mesh.toml\"\n{edge}"
            ),
        )
        .unwrap();
        let start = Instant::now();
        let out = Command::new(FERRY)
            .args(["edge", "--config"])
            .arg(&p)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(!err.contains("binding"), "{err}");
        err
    };
    // Lines 11-13 and 14-16: the duplicate `listen` is line 15 (not the
    // `[tunnel]` one on line 6).
    let err = run(
        "[[outbound.listeners]]\nlisten = \"127.0.0.1:9000\"\nservice = \"a.default:1\"\n\
         [[outbound.listeners]]\nlisten = \"127.0.0.1:9000\"\nservice = \"b.default:1\"\n",
        "",
    );
    assert!(
        err.contains("edge.toml: line 15: outbound.listeners[1].listen"),
        "{err}"
    );
    // A bad mesh file stops the start too, naming that file.
    let svc = |name: &str| {
        format!("[[services]]\nname = \"{name}\"\nnamespace = \"default\"\nport = 80\n")
    };
    let err = run("", &(svc("good") + &svc("Not_A_Label")));
    assert!(err.contains("mesh.toml: line 6: services[1].name"), "{err}");
    drop((held, held_udp));
}
