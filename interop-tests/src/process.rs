//! Child processes with a deadline: run-to-completion with a timeout, and
//! long-running children that are killed (and their logs shown on a test
//! failure) when their guard is dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished command produced.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Panics (showing the output) unless the command succeeded.
    pub fn ok(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` to completion, killing it after `timeout` (which fails the
/// test, with whatever it printed so far).
pub fn run(mut cmd: Command, timeout: Duration) -> Finished {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => Finished {
            status,
            stdout,
            stderr,
        },
        None => {
            panic!("{desc} did not finish within {timeout:?}\nstdout: {stdout}\nstderr: {stderr}")
        }
    }
}

/// A long-running child process, killed on drop; its stderr goes to a log
/// file that is printed if the test is failing.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdin closed, stderr to `log`, and stdout piped
    /// (read it with [`Daemon::first_line`]).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Daemon {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({cmd:?}): {e}"));
        Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The first line the process prints on stdout, within `timeout`; the
    /// rest of stdout is drained in the background.
    pub fn first_line(&mut self, timeout: Duration) -> String {
        use std::io::BufRead;
        let stdout = self.child.stdout.take().expect("stdout piped, read once");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        match rx.recv_timeout(timeout) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "{} printed no first line within {timeout:?} ({other:?}); its log:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let bytes = std::fs::read(&self.log).unwrap_or_default();
            let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(20_000)..]);
            eprintln!("----- {} ({}) -----\n{tail}", self.name, self.log.display());
        }
    }
}
