//! One Ferry process the demo runs (`ferry control|edge|gateway`): started
//! from the demo's own binary with its stderr in a log file, considered up
//! once it prints its ready line, and always stopped — SIGTERM, then
//! SIGKILL after a grace period; dropped without [`Component::stop`] it is
//! killed, and if the demo itself dies the kernel sends it SIGTERM.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::DemoError;

/// How long a process may take to print its ready line.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long a process may take to drain after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Control,
    Edge,
    Gateway,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Control => "control",
            Kind::Edge => "edge",
            Kind::Gateway => "gateway",
        }
    }
}

/// A running, ready process.
pub struct Component {
    /// `<cluster>-<role>`, e.g. `east-web`.
    pub name: String,
    pub kind: Kind,
    pub cluster: &'static str,
    /// The JSON ready line it printed (its listeners).
    pub ready: serde_json::Value,
    pub log: PathBuf,
    child: Child,
}

impl Component {
    /// Starts `ferry <kind> <args>` and waits for its ready line.
    pub async fn start(
        ferry: &Path,
        kind: Kind,
        cluster: &'static str,
        role: &str,
        args: Vec<OsString>,
        logs: &Path,
    ) -> Result<Self, DemoError> {
        let name = format!("{cluster}-{role}");
        let log = logs.join(format!("{name}.log"));
        let start_err = |detail: String| DemoError::Start {
            name: name.clone(),
            detail,
            log: log.clone(),
        };
        let stderr = std::fs::File::create(&log).map_err(|e| DemoError::Write {
            path: log.clone(),
            source: e,
        })?;
        let mut cmd = Command::new(ferry);
        cmd.arg(kind.as_str())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches only this child.
        unsafe {
            cmd.pre_exec(|| {
                // The child drains and exits if the demo dies without
                // stopping it (SIGKILL, a crash): nothing is left behind.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| start_err(format!("running {}: {e}", ferry.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_WITHIN, async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                            if v["ready"] == true {
                                return Ok(v);
                            }
                        }
                    }
                    Ok(None) => return Err("it exited before it was ready".to_string()),
                    Err(e) => return Err(format!("reading its output: {e}")),
                }
            }
        })
        .await;
        let ready = match ready {
            Ok(Ok(v)) => v,
            Ok(Err(detail)) => {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                return Err(start_err(format!(
                    "{detail} ({status}): {}",
                    last_line(&log)
                )));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(start_err(format!("no ready line within {READY_WITHIN:?}")));
            }
        };
        // Nothing else is expected on stdout; keep the pipe from filling.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            name,
            kind,
            cluster,
            ready,
            log,
            child,
        })
    }

    /// An address from the ready line (`admin`, `tunnel`, `grpc`).
    pub fn addr(&self, key: &str) -> Option<SocketAddr> {
        self.ready[key].as_str()?.parse().ok()
    }

    /// The admin address (every component has one).
    pub fn admin(&self) -> SocketAddr {
        self.addr("admin")
            .expect("ready lines carry the admin address")
    }

    /// The edge's outbound listeners: (service, address).
    pub fn outbound(&self) -> Vec<(String, SocketAddr)> {
        self.ready["outbound"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        let service = l["service"].as_str()?.to_string();
                        Some((service, l["listen"].as_str()?.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An error if the process has exited.
    pub fn check_running(&mut self) -> Result<(), DemoError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(DemoError::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
            }),
            Err(e) => Err(DemoError::Exited {
                name: self.name.clone(),
                status: e.to_string(),
                log: self.log.clone(),
            }),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid, which is not yet reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
            if tokio::time::timeout(STOP_GRACE, self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// The last non-empty line of a log, to say why a process failed.
fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(its log is empty)".into())
}
