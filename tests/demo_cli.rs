//! `ferry demo` as a real process: every scenario passes and the JSON lines
//! describe the mesh; `--hold` keeps it serving the user's own traffic
//! until SIGINT; whichever way the demo ends (done, Ctrl-C, killed), no
//! process it started and no port it opened is left; a used directory is
//! refused before anything starts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
/// A debug build on a busy 2-core machine: far more than the release
/// build's few seconds.
const DEMO_WITHIN: Duration = Duration::from_secs(120);

/// The demo process; dropping it kills the demo and anything still running
/// from its directory, so a failing test leaves nothing behind.
struct Demo {
    child: Child,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Demo {
    fn start(args: &[&str]) -> (Self, BufReader<ChildStdout>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        let mut child = Command::new(FERRY)
            .arg("demo")
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Progress on stderr, kept out of the way (and out of the pipe).
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            eprint!("{s}");
        });
        (
            Self {
                child,
                dir,
                _tmp: tmp,
            },
            stdout,
        )
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo ended within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in processes_using(&self.dir) {
            // SAFETY: kill(2) on a leftover of this test.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Processes whose command line mentions `dir` (the demo's components name
/// their configuration files there).
fn processes_using(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

fn next_json(out: &mut BufReader<ChildStdout>) -> serde_json::Value {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "stdout ended early");
        if let Ok(v) = serde_json::from_str(&line) {
            return v;
        }
    }
}

/// Every address the ready line lists: admin ports, tunnels, control
/// gRPC, outbound listeners.
fn addresses(ready: &serde_json::Value) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for c in ready["components"].as_array().unwrap() {
        out.push(c["admin"].as_str().unwrap().parse().unwrap());
        for (key, v) in c["listeners"].as_object().unwrap() {
            if key == "outbound" {
                for a in v.as_object().unwrap().values() {
                    out.push(a.as_str().unwrap().parse().unwrap());
                }
            } else {
                out.push(v.as_str().unwrap().parse().unwrap());
            }
        }
    }
    out
}

/// Nothing the demo started runs or listens any more (allowing the
/// kernel a moment to deliver the death signal and the drains to end).
fn assert_all_gone(dir: &Path, ready: &serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !processes_using(dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            processes_using(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for a in addresses(ready) {
        if TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_err() {
            continue;
        }
        // Tests run side by side: the kernel may have handed the freed port
        // to another test's listener. Only one of the demo's own processes
        // (named by the owner's command line) is a leftover.
        let owners = listener_owners(a);
        assert!(
            !owners.is_empty()
                && owners
                    .iter()
                    .all(|cmd| !cmd.contains(&*dir.to_string_lossy())),
            "{a} still accepts connections (listening: {owners:?})"
        );
    }
}

/// The command lines of the processes listening on `addr`'s TCP port
/// (from `ss`; empty when they cannot be told).
fn listener_owners(addr: SocketAddr) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{}", addr.port())])
        .output();
    let Ok(out) = out else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<i32>()
                .ok()
        })
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

fn outbound(ready: &serde_json::Value, component: &str, service: &str) -> SocketAddr {
    let c = ready["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == component)
        .unwrap_or_else(|| panic!("{component} in {ready}"));
    c["listeners"]["outbound"][service]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn every_scenario_passes_and_nothing_is_left_running() {
    let (mut demo, mut out) = Demo::start(&["--json"]);
    let ready = next_json(&mut out);
    assert_eq!(ready["ready"], true);
    assert_eq!(
        ready["config_dir"].as_str().map(PathBuf::from),
        Some(demo.dir.clone())
    );
    let components = ready["components"].as_array().unwrap();
    let mut kinds: Vec<String> = components
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c["cluster"].as_str().unwrap(),
                c["kind"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "east/control",
            "east/edge",
            "east/edge",
            "east/gateway",
            "west/control",
            "west/edge",
            "west/edge",
            "west/gateway"
        ]
    );
    assert!(demo.dir.join("east/mesh.toml").exists() && demo.dir.join("west/ca/ca.pem").exists());

    let results = next_json(&mut out);
    let status = demo.wait(DEMO_WITHIN);
    assert!(status.success(), "exit {status}: {results}");
    assert_eq!(results["passed"], true, "{results}");
    let rows = results["scenarios"].as_array().unwrap();
    assert_eq!(rows.len(), 12, "{results}");
    let transport = |name: &str| {
        rows.iter()
            .find(|r| r["scenario"] == name)
            .unwrap_or_else(|| panic!("{name} in {results}"))["transport"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // East's api edge is behind the UDP blackhole: its callers fall back.
    for p in ["http", "grpc", "tcp"] {
        assert_eq!(transport(&format!("{p} east → east")), "h2");
        assert_eq!(transport(&format!("{p} west → west")), "quic");
        assert_eq!(transport(&format!("{p} east → west")), "quic → quic");
        assert_eq!(transport(&format!("{p} west → east")), "quic → h2");
    }
    for r in rows {
        assert_eq!(r["succeeded"], r["requests"], "{r}");
        assert!(r["p50_us"].as_u64().unwrap() > 0, "{r}");
        assert!(r["bytes"].as_u64().unwrap() > 0, "{r}");
    }
    assert_all_gone(&demo.dir, &ready);
}

#[test]
fn hold_serves_the_users_traffic_until_sigint_then_stops_everything() {
    let (mut demo, mut out) = Demo::start(&["--hold", "--json"]);
    let ready = next_json(&mut out);
    let results = next_json(&mut out);
    assert_eq!(results["passed"], true, "{results}");

    // The user's own request, through east's web edge to west's api.
    let listener = outbound(&ready, "east-web", "api.default.svc.west:80");
    let mut s = TcpStream::connect(listener).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /mine HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("west spiffe://east.demo/ns/default/sa/web\n"),
        "{answer}"
    );
    assert!(demo.child.try_wait().unwrap().is_none(), "still holding");

    demo.signal(libc::SIGINT);
    let status = demo.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "Ctrl-C after passing is success");
    assert_all_gone(&demo.dir, &ready);
}

#[test]
fn a_killed_demo_leaves_no_process_behind() {
    let (mut demo, mut out) = Demo::start(&["--hold", "--json"]);
    let ready = next_json(&mut out);
    assert!(!processes_using(&demo.dir).is_empty());
    // No chance to clean up: the kernel tells the children (PDEATHSIG).
    demo.signal(libc::SIGKILL);
    demo.wait(Duration::from_secs(10));
    assert_all_gone(&demo.dir, &ready);
}

#[test]
fn a_used_directory_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = Command::new(FERRY)
        .args(["demo", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&tmp.path().display().to_string()) && err.contains("not empty"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "nothing written"
    );
}
