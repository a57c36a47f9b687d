//! The demo's running mesh: two clusters (`east`, `west`), each a control
//! plane, an `api` edge in front of the sample applications, a `web` edge
//! for callers and a gateway, all separate `ferry` processes on loopback;
//! the clusters linked both ways; `east`'s `api` tunnel advertised behind a
//! UDP blackhole, so the pairs that reach it fall back to TLS over TCP.
//! Started in dependency order, stopped together.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_netem::UdpBlackhole;
use tokio::task::JoinSet;

use crate::apps::Apps;
use crate::error::DemoError;
use crate::layout::{ClusterFiles, Link};
use crate::process::{Component, Kind};
use crate::scenario::{Protocol, Scenario};

pub const CLUSTERS: [&str; 2] = ["east", "west"];
/// The cluster whose `api` edge is reachable only over TCP.
pub const BLACKHOLED: &str = "east";

fn other(cluster: &str) -> &'static str {
    if cluster == CLUSTERS[0] {
        CLUSTERS[1]
    } else {
        CLUSTERS[0]
    }
}

pub struct Mesh {
    pub dir: PathBuf,
    ferry: PathBuf,
    components: Vec<Component>,
    apps: Vec<(&'static str, Apps)>,
    blackhole: Option<UdpBlackhole>,
}

impl Mesh {
    pub fn new(dir: PathBuf, ferry: PathBuf) -> Self {
        Self {
            dir,
            ferry,
            components: Vec::new(),
            apps: Vec::new(),
            blackhole: None,
        }
    }

    fn component(&self, name: &str) -> &Component {
        self.components
            .iter()
            .find(|c| c.name == name)
            .expect("the demo's components are all started")
    }

    /// Writes the files and starts every process; what did start is kept
    /// for [`Mesh::stop`] even when a later step fails.
    pub async fn start(&mut self, progress: &dyn Fn(&str)) -> Result<(), DemoError> {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| DemoError::Write {
            path: logs.clone(),
            source: e,
        })?;
        progress("generating a CA per cluster, bootstrap tokens and configuration files");
        let mut files = Vec::new();
        for c in CLUSTERS {
            let f = ClusterFiles::create(&self.dir, c)?;
            let apps = Apps::start(c).await.map_err(|e| DemoError::Local {
                what: "the sample applications",
                source: e,
            })?;
            f.write_mesh(apps.ports(), None, None)?;
            self.apps.push((c, apps));
            files.push(f);
        }

        progress("starting the control planes");
        let controls = files
            .iter()
            .map(|f| {
                let args = vec![
                    "--config".into(),
                    f.mesh_file().into_os_string(),
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--admin".into(),
                    "127.0.0.1:0".into(),
                ];
                (Kind::Control, f.cluster, "control", args)
            })
            .collect();
        self.start_all(controls, &logs).await?;

        progress("starting the edges and gateways (certificates from the control planes)");
        let mut rest = Vec::new();
        for f in &files {
            let c = f.cluster;
            let control = self
                .component(&format!("{c}-control"))
                .addr("grpc")
                .expect("a control plane's ready line has its gRPC address");
            let services: Vec<String> = [None, Some(other(c))]
                .into_iter()
                .flat_map(|remote| Protocol::ALL.map(|p| p.service(remote)))
                .collect();
            let config = |p: PathBuf| vec![OsString::from("--config"), p.into_os_string()];
            rest.push((
                Kind::Edge,
                c,
                "api",
                config(f.write_edge("api", control, &[])?),
            ));
            rest.push((
                Kind::Edge,
                c,
                "web",
                config(f.write_edge("web", control, &services)?),
            ));
            rest.push((
                Kind::Gateway,
                c,
                "gateway",
                config(f.write_gateway(control)?),
            ));
        }
        self.start_all(rest, &logs).await?;

        progress("linking the clusters; UDP to east's api edge is dropped");
        let tunnel = |name: &str| {
            self.component(name)
                .addr("tunnel")
                .expect("edges and gateways have a tunnel address")
        };
        let hidden = tunnel(&format!("{BLACKHOLED}-api"));
        let hole = UdpBlackhole::start(hidden)
            .await
            .map_err(|e| DemoError::Local {
                what: "the UDP blackhole",
                source: e,
            })?;
        for (f, (_, apps)) in files.iter().zip(&self.apps) {
            let c = f.cluster;
            let o = other(c);
            let api = if c == BLACKHOLED {
                hole.addr()
            } else {
                tunnel(&format!("{c}-api"))
            };
            let link = Link {
                cluster: o,
                control: self
                    .component(&format!("{o}-control"))
                    .addr("grpc")
                    .expect("grpc"),
                gateway: tunnel(&format!("{o}-gateway")),
                gateway_admin: self.component(&format!("{o}-gateway")).admin(),
            };
            let peer = files.iter().find(|p| p.cluster == o).expect("two clusters");
            f.import_bundle(peer)?;
            f.write_mesh(
                apps.ports(),
                Some((tunnel(&format!("{c}-web")), api)),
                Some(&link),
            )?;
        }
        self.blackhole = Some(hole);
        Ok(())
    }

    /// Starts processes concurrently; all that start are kept.
    async fn start_all(
        &mut self,
        specs: Vec<(Kind, &'static str, &'static str, Vec<OsString>)>,
        logs: &Path,
    ) -> Result<(), DemoError> {
        let mut set = JoinSet::new();
        for (kind, cluster, role, args) in specs {
            let (ferry, logs) = (self.ferry.clone(), logs.to_path_buf());
            set.spawn(
                async move { Component::start(&ferry, kind, cluster, role, args, &logs).await },
            );
        }
        let mut first_err = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(c)) => self.components.push(c),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(DemoError::Start {
                        name: "a component".into(),
                        detail: e.to_string(),
                        log: logs.to_path_buf(),
                    });
                }
            }
        }
        self.components.sort_by_key(|c| {
            let cluster = CLUSTERS.iter().position(|x| *x == c.cluster);
            let role = ["control", "api", "web", "gateway"]
                .iter()
                .position(|r| c.name.ends_with(r));
            (cluster, role)
        });
        first_err.map_or(Ok(()), Err)
    }

    /// The twelve scenarios: each protocol from each cluster to itself and
    /// to the other.
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut out = Vec::new();
        for source in CLUSTERS {
            let web = self.component(&format!("{source}-web"));
            let listeners = web.outbound();
            for dest in [source, other(source)] {
                let remote = (dest != source).then_some(dest);
                for protocol in Protocol::ALL {
                    let service = protocol.service(remote);
                    let listener = listeners
                        .iter()
                        .find(|(s, _)| *s == service)
                        .map(|(_, a)| *a)
                        .expect("the web edge listens for every scenario's service");
                    out.push(Scenario {
                        source,
                        dest,
                        protocol,
                        listener,
                        source_admin: web.admin(),
                        gateway_admin: remote
                            .map(|d| self.component(&format!("{d}-gateway")).admin()),
                    });
                }
            }
        }
        out
    }

    /// Waits until every scenario's path answers once (discovery, the
    /// links and the imported services take a moment).
    pub async fn wait_until_serving(
        &mut self,
        scenarios: &[Scenario],
        within: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<(), DemoError> {
        let deadline = Instant::now() + within;
        let mut up = vec![false; scenarios.len()];
        let mut reported = 0;
        loop {
            let mut last = String::new();
            for (s, up) in scenarios.iter().zip(up.iter_mut()).filter(|(_, u)| !**u) {
                match tokio::time::timeout(Duration::from_secs(3), s.probe()).await {
                    Ok(Ok(())) => *up = true,
                    Ok(Err(e)) => last = format!("{}: {e}", s.name()),
                    Err(_) => last = format!("{}: no answer within 3 s", s.name()),
                }
            }
            let n = up.iter().filter(|u| **u).count();
            if n == up.len() {
                return Ok(());
            }
            if n != reported {
                progress(&format!(
                    "{n}/{} paths answer; waiting for the rest",
                    up.len()
                ));
                reported = n;
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(DemoError::NotReady {
                    after: within,
                    detail: last,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An error naming the first process that has exited.
    pub fn check_running(&mut self) -> Result<(), DemoError> {
        self.components
            .iter_mut()
            .try_for_each(|c| c.check_running())
    }

    /// Resolves when a process exits (checked every half second).
    pub async fn exited(&mut self) -> DemoError {
        loop {
            if let Err(e) = self.check_running() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops every process (concurrently) and the in-process helpers;
    /// returns how many processes were stopped.
    pub async fn stop(&mut self) -> usize {
        let n = self.components.len();
        let mut set = JoinSet::new();
        for c in self.components.drain(..) {
            set.spawn(c.stop());
        }
        while set.join_next().await.is_some() {}
        self.blackhole = None;
        self.apps.clear();
        n
    }

    /// The `--json` ready line.
    pub fn ready_json(&self) -> serde_json::Value {
        let components: Vec<_> = self
            .components
            .iter()
            .map(|c| {
                let mut listeners = serde_json::Map::new();
                for key in ["grpc", "tunnel"] {
                    if let Some(a) = c.addr(key) {
                        listeners.insert(key.into(), a.to_string().into());
                    }
                }
                let outbound: serde_json::Map<_, _> = c
                    .outbound()
                    .into_iter()
                    .map(|(s, a)| (s, a.to_string().into()))
                    .collect();
                if !outbound.is_empty() {
                    listeners.insert("outbound".into(), outbound.into());
                }
                serde_json::json!({
                    "name": c.name,
                    "kind": c.kind.as_str(),
                    "cluster": c.cluster,
                    "admin": c.admin().to_string(),
                    "listeners": listeners,
                    "log": c.log,
                })
            })
            .collect();
        let apps: Vec<_> = self
            .apps
            .iter()
            .map(|(c, a)| {
                serde_json::json!({
                    "cluster": c,
                    "http": a.http.to_string(),
                    "grpc": a.grpc.to_string(),
                    "echo": a.echo.to_string(),
                })
            })
            .collect();
        serde_json::json!({
            "ready": true,
            "config_dir": self.dir,
            "components": components,
            "applications": apps,
            "udp_blackhole": self.blackhole.as_ref().map(|h| serde_json::json!({
                "addr": h.addr().to_string(),
                "in_front_of": format!("{BLACKHOLED}-api"),
            })),
        })
    }

    /// Every listener, with a command to try it (`--hold`).
    pub fn listeners_text(&self) -> String {
        let mut out = String::from("listeners (Ctrl-C stops everything):\n");
        for c in &self.components {
            let mut line = format!(
                "  {:<14} {:<8} admin {}",
                c.name,
                c.kind.as_str(),
                c.admin()
            );
            for key in ["grpc", "tunnel"] {
                if let Some(a) = c.addr(key) {
                    line += &format!("  {key} {a}");
                }
            }
            if c.name == format!("{BLACKHOLED}-api") {
                if let Some(h) = &self.blackhole {
                    line += &format!("  (advertised as {}: UDP dropped)", h.addr());
                }
            }
            out += &line;
            out += "\n";
            for (service, addr) in c.outbound() {
                let try_it = if service.starts_with("api.") {
                    format!("curl http://{addr}/")
                } else if service.starts_with("grpc.") {
                    format!("grpcurl -plaintext {addr} grpc.health.v1.Health/Check")
                } else {
                    format!("socat - TCP:{addr}")
                };
                out += &format!("      {service:<28} {addr:<21} {try_it}\n");
            }
        }
        out
    }
}
