//! One side of a link (client or server): its network namespace (or the
//! root one), the address the other side reaches it at, a tokio runtime
//! whose threads live in that namespace (the load generator, the
//! application, raw-transport endpoints), and `Command`s for child processes
//! that start inside it.

use std::future::Future;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::netns::Netns;

pub struct Side {
    pub name: &'static str,
    pub ns: Option<Arc<Netns>>,
    /// The address the other side connects to.
    pub ip: IpAddr,
    rt: tokio::runtime::Runtime,
}

impl Side {
    /// `threads` worker threads named `<name>-w`, each moved into `ns`.
    pub fn new(
        name: &'static str,
        ns: Option<Arc<Netns>>,
        ip: IpAddr,
        threads: usize,
    ) -> Result<Side> {
        let rt = Self::runtime(&format!("{name}-w"), ns.clone(), threads)?;
        Ok(Side { name, ns, ip, rt })
    }

    /// A multi-thread runtime whose threads (workers and blocking pool)
    /// enter `ns` when they start.
    pub fn runtime(
        thread_name: &str,
        ns: Option<Arc<Netns>>,
        threads: usize,
    ) -> Result<tokio::runtime::Runtime> {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads)
            .thread_name(thread_name)
            .enable_all();
        if let Some(ns) = ns {
            b.on_thread_start(move || {
                if let Err(e) = ns.enter() {
                    // A thread outside the namespace would measure the wrong
                    // network: refuse to go on.
                    eprintln!("bench: setns into {}: {e}", ns.name());
                    std::process::abort();
                }
            });
        }
        b.build()
            .map_err(|e| anyhow!("tokio runtime {thread_name}: {e}"))
    }

    /// Runs `fut` on one of this side's threads (so its sockets are in this
    /// side's namespace) and waits for it.
    pub fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let h = self.rt.spawn(fut);
        self.rt
            .block_on(h)
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Runs `fut` with a deadline; an error names `what`.
    pub fn run_timeout<F, T>(&self, what: &str, limit: Duration, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        match self.run(async move { tokio::time::timeout(limit, fut).await }) {
            Ok(r) => r,
            Err(_) => Err(anyhow!("{what}: no result within {limit:?}")),
        }
    }

    /// Spawns `fut` on this side's runtime without waiting.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(fut)
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// A command for `program` that runs inside this side's namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let Some(ns) = &self.ns {
            let fd = ns.raw_fd();
            // SAFETY: setns is async-signal-safe; the fd stays open (the
            // Netns outlives the spawn call).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Waits until a TCP connection to `addr` from this side succeeds.
    pub fn wait_tcp(&self, addr: std::net::SocketAddr, limit: Duration) -> Result<()> {
        self.run(async move {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(anyhow!("nothing accepts TCP at {addr} after {limit:?}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }
}
