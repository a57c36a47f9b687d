//! `ferry control` as a real process: `token` prints a token and its hash;
//! a broken mesh file is refused with one line naming file, line and field
//! (exit 2); a good one prints the ready line, serves `/ready` and `/mesh`,
//! and exits 0 on SIGTERM.

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

fn token() -> (String, String) {
    let out = Command::new(FERRY)
        .args(["control", "token"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    (lines[0].to_string(), lines[1].to_string())
}

fn mesh(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    assert!(Command::new(FERRY)
        .args(["certs", "ca", "--trust-domain", "cli.test", "--out"])
        .arg(dir.join("ca"))
        .status()
        .unwrap()
        .success());
    let (_, hash) = token();
    let p = dir.join("mesh.toml");
    std::fs::write(
        &p,
        format!(
            "trust_domain = \"cli.test\"\n[ca]\ndir = \"ca\"\n\
             [[workloads]]\nname = \"web-1\"\nid = \"spiffe://cli.test/ns/default/sa/web\"\n\
             address = \"127.0.0.1\"\ntunnel = \"127.0.0.1:4143\"\ntoken_sha256 = \"{hash}\"\n{extra}"
        ),
    )
    .unwrap();
    p
}

#[test]
fn token_prints_a_fresh_token_and_its_sha256() {
    let (t1, h1) = token();
    let (t2, _) = token();
    assert_ne!(t1, t2);
    assert_eq!(t1.len(), 64);
    assert!(t1.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(h1, ferry_control::token::sha256_hex(&t1));
}

#[test]
fn a_broken_mesh_file_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = mesh(
        dir.path(),
        "[[services]]\nname = \"api\"\nnamespace = \"default\"\nworkloads = [\"ghost\"]\n[[services.ports]]\nport = 80\n",
    );
    let out = Command::new(FERRY)
        .args(["control", "--config"])
        .arg(&p)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!(
            "{}: line 13: services[0].workloads[0]",
            p.display()
        )),
        "{err}"
    );
    assert!(err.contains("no workload named \"ghost\""), "{err}");
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let p = mesh(dir.path(), "");
    let mut child = Command::new(FERRY)
        .args(["control", "--config"])
        .arg(&p)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["id"], "spiffe://cli.test/ns/ferry-system/sa/control");
    let admin = ready["admin"].as_str().unwrap();
    assert!(http_get(admin, "/ready").starts_with("HTTP/1.1 200"));
    let mesh = http_get(admin, "/mesh");
    assert!(
        mesh.contains("\"version\":1") && mesh.contains("\"workloads\":1"),
        "{mesh}"
    );
    // The gRPC port answers TLS.
    std::net::TcpStream::connect(ready["grpc"].as_str().unwrap()).unwrap();

    let pid = guard.0.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
