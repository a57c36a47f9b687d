//! Network namespaces: a uniquely named namespace that is deleted when
//! dropped (with any process still running in it), and ways to run a
//! command or open a socket inside it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::command::run;
use crate::error::{NetemError, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by this process (`ip netns add`), deleted on
/// drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `ferry-<tag>-<pid>-<n>` (unique per process and call) with its
    /// loopback up. Needs root (`CAP_SYS_ADMIN`).
    pub fn create(tag: &str) -> Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("ferry-{tag}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec <name> <program>`); add arguments and spawn it.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace; its stdout when it succeeds.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Runs `f` on a thread that has joined the namespace, and returns its
    /// result. Sockets created by `f` stay in the namespace wherever they
    /// are used afterwards (e.g. handed to an async runtime).
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let file = File::open(format!("/run/netns/{}", self.name)).map_err(|source| {
            NetemError::Enter {
                name: self.name.clone(),
                source,
            }
        })?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on this (scoped, about to end) thread only,
                // with a valid namespace file descriptor.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(NetemError::Enter {
                        name: self.name.clone(),
                        source: std::io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A TCP listener bound inside the namespace.
    pub fn tcp_listen(&self, addr: SocketAddr) -> Result<TcpListener> {
        self.socket("binding a TCP listener", || TcpListener::bind(addr))
    }

    /// A TCP connection opened from inside the namespace.
    pub fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
        self.socket("connecting", || TcpStream::connect_timeout(&addr, timeout))
    }

    /// A UDP socket bound inside the namespace.
    pub fn udp_bind(&self, addr: SocketAddr) -> Result<UdpSocket> {
        self.socket("binding a UDP socket", || UdpSocket::bind(addr))
    }

    fn socket<T: Send>(
        &self,
        what: &str,
        f: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> Result<T> {
        self.enter(f)?.map_err(|source| NetemError::Socket {
            what: what.to_string(),
            name: self.name.clone(),
            source,
        })
    }

    /// The processes running in the namespace (other than this one).
    pub fn pids(&self) -> Vec<u32> {
        let me = std::process::id();
        run(&["ip", "netns", "pids", &self.name])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p != me)
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only processes this process put in its own, uniquely named
        // namespace can be there (e.g. a client left behind by a failure).
        for pid in self.pids() {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}
