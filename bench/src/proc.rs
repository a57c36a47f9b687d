//! Child processes started by the bench (proxies, edges): their output goes
//! to a log file that error messages quote; they are stopped on Drop
//! (SIGTERM, then SIGKILL of the whole process tree after 3 s).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::procstat;

/// A running child process, stopped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Starts `cmd` with stdout piped to the caller (stderr to `log`).
    pub fn spawn_piped(name: &str, mut cmd: Command, log: &Path) -> Result<(Proc, ChildStdout)> {
        let err =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {name}: {cmd:?}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        Ok((
            Proc {
                name: name.to_string(),
                child,
                log: log.to_path_buf(),
            },
            stdout,
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(8);
        lines[from..].join("\n")
    }

    /// An error naming the program, its exit status and its log if it has
    /// exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(anyhow!(
                "{} exited ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            )),
        }
    }

    /// CPU time (user + system) of the process and its descendants.
    pub fn cpu(&self) -> Duration {
        procstat::cpu_tree(self.pid())
    }

    /// CPU time of the process and its descendants, to the nanosecond.
    pub fn cpu_ns(&self) -> Duration {
        procstat::cpu_tree_ns(self.pid())
    }

    /// Resident memory of the process and its descendants, in KiB.
    pub fn rss_kib(&self) -> u64 {
        procstat::rss_tree_kib(self.pid())
    }

    /// Reads one line from `stdout` within `timeout` (a reader thread; the
    /// line is returned once complete).
    pub fn read_line(&mut self, stdout: ChildStdout, timeout: Duration) -> Result<String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let res = r.read_line(&mut line).map(|_| line);
            let _ = tx.send(res);
            // Keep draining so the child never blocks on a full pipe.
            let mut sink = String::new();
            while matches!(r.read_line(&mut sink), Ok(n) if n > 0) {
                sink.clear();
            }
        });
        let line = rx
            .recv_timeout(timeout)
            .map_err(|_| {
                anyhow!(
                    "{}: no ready line within {:?}; log {}:\n{}",
                    self.name,
                    timeout,
                    self.log.display(),
                    self.log_tail()
                )
            })?
            .with_context(|| format!("{}: read stdout", self.name))?;
        if line.is_empty() {
            self.check_alive()?;
            return Err(anyhow!("{}: closed stdout without a ready line", self.name));
        }
        Ok(line)
    }

    fn signal(pid: u32, sig: libc::c_int) {
        // SAFETY: kill with a pid we started (or one of its descendants).
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let family = procstat::tree(self.pid());
        Self::signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for pid in family {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                Self::signal(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
