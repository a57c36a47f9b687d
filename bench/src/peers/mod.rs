//! Starting a path: the proxy processes on each side (stunnel, HAProxy,
//! nginx, `ferry edge`) with generated configurations, or the raw-transport
//! endpoints, and what a scenario needs from a running path: its entry
//! addresses on the client side, flows for bulk transfer, the received byte
//! count, CPU time and resident memory.

pub mod ferry;
pub mod haproxy;
pub mod nginx;
pub mod raw;
pub mod stunnel;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::app::App;
use crate::loadgen::bulk::Flow;
use crate::paths::PathKind;
use crate::pki::{FerryPki, PairPki};
use crate::prereq::Programs;
use crate::proc::Proc;
use crate::side::Side;
use crate::topology::Topology;

/// How long a proxy gets to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything a peer needs to start.
#[derive(Clone)]
pub struct Ctx<'a> {
    pub topo: &'a Topology,
    pub app: &'a App,
    pub pair_pki: &'a PairPki,
    pub ferry_pki: &'a FerryPki,
    pub ferry: &'a Path,
    pub programs: &'a Programs,
    /// A fresh directory for this path's configs and logs.
    pub dir: PathBuf,
}

/// The two routes every proxy carries: HTTP to the application and TCP to
/// the sink. `upstream` ports are the application's on the server side.
pub struct Route {
    pub name: &'static str,
    /// Where the client-side proxy listens (client side).
    pub listen: SocketAddr,
    /// Where the server-side proxy listens (server side).
    pub tls: SocketAddr,
    /// The application port (on the server side's 127.0.0.1).
    pub app_port: u16,
}

impl Ctx<'_> {
    /// Routes with free ports on each side.
    pub fn routes(&self) -> Result<Vec<Route>> {
        let listen = free_ports(&self.topo.client, IpAddr::V4(Ipv4Addr::LOCALHOST), 2)?;
        let tls = free_ports(&self.topo.server, self.topo.server.ip, 2)?;
        let apps = [("http", self.app.http_port), ("sink", self.app.sink_port)];
        Ok(apps
            .into_iter()
            .zip(listen.into_iter().zip(tls))
            .map(|((name, app_port), (listen, tls))| Route {
                name,
                listen,
                tls,
                app_port,
            })
            .collect())
    }

    pub fn file(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
        Ok(p)
    }
}

/// `n` distinct TCP ports on `ip` that are free on `side` right now (the
/// port is also free for UDP in practice: the kernel picks ephemeral ports).
pub fn free_ports(side: &Side, ip: IpAddr, n: usize) -> Result<Vec<SocketAddr>> {
    side.run(async move {
        let mut held = Vec::new();
        for _ in 0..n {
            let l = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
                .await
                .with_context(|| format!("find a free port on {ip}"))?;
            held.push(l);
        }
        held.iter().map(|l| Ok(l.local_addr()?)).collect()
    })
}

/// A path ready to measure.
pub struct RunningPath {
    pub kind: PathKind,
    /// HTTP entry on the client side (None: bulk only).
    pub http: Option<SocketAddr>,
    /// TCP entry leading to the sink.
    pub sink: Option<SocketAddr>,
    pub client: Vec<Proc>,
    pub server: Vec<Proc>,
    pub raw: Option<raw::RawPair>,
}

impl RunningPath {
    pub fn start(kind: PathKind, ctx: &Ctx) -> Result<RunningPath> {
        std::fs::create_dir_all(&ctx.dir)?;
        let r = match kind {
            PathKind::Direct => Ok(RunningPath {
                kind,
                http: Some(ctx.app.http_direct()),
                sink: Some(ctx.app.sink_direct()),
                client: vec![],
                server: vec![],
                raw: None,
            }),
            PathKind::RawQuic | PathKind::RawTls => {
                raw::RawPair::start(kind, ctx).map(|r| RunningPath {
                    kind,
                    http: None,
                    sink: None,
                    client: vec![],
                    server: vec![],
                    raw: Some(r),
                })
            }
            PathKind::Stunnel => stunnel::start(ctx),
            PathKind::Haproxy => haproxy::start(ctx),
            PathKind::Nginx => nginx::start(ctx),
            PathKind::FerryQuic
            | PathKind::FerryH2
            | PathKind::FerryQuicOpaque
            | PathKind::FerryH2Opaque => ferry::start(ctx, kind),
        };
        r.with_context(|| format!("start {} on {}", kind.label(), ctx.topo.name))
    }

    /// Errors if a proxy process has died.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in self.client.iter_mut().chain(self.server.iter_mut()) {
            p.check_alive()?;
        }
        Ok(())
    }

    /// CPU time of everything that carries the traffic (both proxies, or
    /// both raw endpoints); None for the direct path.
    pub fn cpu(&self) -> Option<Duration> {
        if let Some(r) = &self.raw {
            return Some(r.cpu());
        }
        if self.client.is_empty() && self.server.is_empty() {
            return None;
        }
        Some(self.client.iter().chain(&self.server).map(Proc::cpu).sum())
    }

    /// CPU time of the client-side proxy (its process tree), to the ns.
    pub fn client_cpu_ns(&self) -> Option<Duration> {
        (!self.client.is_empty()).then(|| self.client.iter().map(Proc::cpu_ns).sum())
    }

    /// CPU time of the server-side proxy (its process tree), to the ns.
    pub fn server_cpu_ns(&self) -> Option<Duration> {
        (!self.server.is_empty()).then(|| self.server.iter().map(Proc::cpu_ns).sum())
    }

    /// Resident memory of the client-side proxy (its process tree), KiB.
    pub fn client_rss_kib(&self) -> Option<u64> {
        if self.client.is_empty() {
            return None;
        }
        Some(self.client.iter().map(Proc::rss_kib).sum())
    }

    /// Resident memory of the server-side proxy (its process tree), KiB.
    pub fn server_rss_kib(&self) -> Option<u64> {
        if self.server.is_empty() {
            return None;
        }
        Some(self.server.iter().map(Proc::rss_kib).sum())
    }

    /// Opens `n` bulk flows on the runtime returned by [`Self::flow_runtime`].
    pub fn open_flows(&self, topo: &Topology, n: usize) -> Result<Vec<Flow>> {
        if let Some(r) = &self.raw {
            return r.open_flows(n);
        }
        let sink = self.sink.context("this path has no TCP entry")?;
        topo.client
            .run_timeout("open bulk flows", Duration::from_secs(10), async move {
                let mut flows: Vec<Flow> = Vec::new();
                for _ in 0..n {
                    let tcp = tokio::net::TcpStream::connect(sink)
                        .await
                        .with_context(|| format!("connect to {sink}"))?;
                    flows.push(Box::new(tcp));
                }
                Ok(flows)
            })
    }

    pub fn flow_runtime(&self, topo: &Topology) -> tokio::runtime::Handle {
        match &self.raw {
            Some(r) => r.client_handle(),
            None => topo.client.handle(),
        }
    }

    /// Bytes received at the far end so far.
    pub fn received(&self, app: &App) -> u64 {
        match &self.raw {
            Some(r) => r.received(),
            None => app.sink_count(),
        }
    }
}

/// Waits until `proc` accepts TCP on every address in `addrs` (connecting
/// from `side`), failing early with its log if it exits.
pub fn wait_listening(proc: &mut Proc, side: &Side, addrs: &[SocketAddr]) -> Result<()> {
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    for &a in addrs {
        loop {
            proc.check_alive()?;
            crate::interrupt::check()?;
            let ok = side.run(async move {
                tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(a),
                )
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false)
            });
            if ok {
                break;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "{} does not accept on {a} after {START_TIMEOUT:?}; log:\n{}",
                    proc.name(),
                    proc.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Starts a mutual-TLS proxy pair: the server-side process first (waits for
/// its TLS ports), then the client-side one (waits for its plain ports).
pub fn start_pair(
    kind: PathKind,
    ctx: &Ctx,
    routes: &[Route],
    server_cmd: std::process::Command,
    client_cmd: std::process::Command,
) -> Result<RunningPath> {
    let key = kind.key();
    let mut server = Proc::spawn(
        &format!("{key} (server side)"),
        server_cmd,
        &ctx.dir.join("server.log"),
    )?;
    let tls: Vec<SocketAddr> = routes.iter().map(|r| r.tls).collect();
    wait_listening(&mut server, &ctx.topo.server, &tls)?;
    let mut client = Proc::spawn(
        &format!("{key} (client side)"),
        client_cmd,
        &ctx.dir.join("client.log"),
    )?;
    let plain: Vec<SocketAddr> = routes.iter().map(|r| r.listen).collect();
    wait_listening(&mut client, &ctx.topo.client, &plain)?;
    Ok(RunningPath {
        kind,
        http: Some(routes[0].listen),
        sink: Some(routes[1].listen),
        client: vec![client],
        server: vec![server],
        raw: None,
    })
}
