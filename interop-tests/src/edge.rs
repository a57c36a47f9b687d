//! `ferry edge` as a real process, on loopback or inside a network
//! namespace: its configuration, the mesh file naming the services, its
//! ready line, and its admin port (metrics).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_netem::Netns;

use crate::metrics::metric;
use crate::pki::Identity;
use crate::prereq::ferry_bin;
use crate::process::Daemon;

/// One service of a mesh file, with its endpoints.
pub struct Service<'a> {
    pub name: &'a str,
    pub port: u16,
    /// `auto`, `http`, `grpc` or `tcp`.
    pub protocol: &'a str,
    /// (application address, tunnel address, SPIFFE ID) per endpoint.
    pub endpoints: Vec<(SocketAddr, SocketAddr, String)>,
}

/// The mesh file (discovery) text for `services`, all in namespace `default`.
pub fn mesh_toml(services: &[Service]) -> String {
    let mut s = String::new();
    for svc in services {
        s += &format!(
            "[[services]]\nname = \"{}\"\nnamespace = \"default\"\nport = {}\nprotocol = \"{}\"\n",
            svc.name, svc.port, svc.protocol
        );
        for (addr, tunnel, id) in &svc.endpoints {
            s += &format!(
                "[[services.endpoints]]\naddress = \"{addr}\"\ntunnel = \"{tunnel}\"\nid = \"{id}\"\n"
            );
        }
    }
    s
}

/// What an edge is started with.
pub struct EdgeSpec {
    /// Names the config and log files.
    pub name: String,
    pub identity: Identity,
    pub tunnel: SocketAddr,
    pub admin: SocketAddr,
    pub mesh_file: PathBuf,
    /// Explicit outbound listeners: (listen address, service authority).
    pub listeners: Vec<(SocketAddr, String)>,
    /// Extra keys of `[tunnel]` (e.g. `head_start = "300ms"`).
    pub tunnel_extra: String,
    /// Extra TOML appended at the end (e.g. `[inbound]` keys).
    pub extra: String,
}

impl EdgeSpec {
    /// An edge on loopback with port 0 everywhere and no listeners.
    pub fn new(name: &str, identity: &Identity, mesh_file: &Path) -> EdgeSpec {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        EdgeSpec {
            name: name.to_string(),
            identity: identity.clone(),
            tunnel: any,
            admin: any,
            mesh_file: mesh_file.to_path_buf(),
            listeners: vec![],
            tunnel_extra: String::new(),
            extra: String::new(),
        }
    }

    fn toml(&self) -> String {
        let i = &self.identity;
        let mut t = format!(
            "name = \"{}\"\nshutdown_grace = \"2s\"\n\
             [identity]\ncert = \"{}\"\nkey = \"{}\"\nbundles = [\"{}\"]\n\
             [tunnel]\nlisten = \"{}\"\n{}\n\
             [admin]\nlisten = \"{}\"\n\
             [discovery]\nmesh_file = \"{}\"\nreload_interval = \"200ms\"\n",
            self.name,
            i.cert.display(),
            i.key.display(),
            i.bundle.display(),
            self.tunnel,
            self.tunnel_extra,
            self.admin,
            self.mesh_file.display(),
        );
        for (listen, service) in &self.listeners {
            t += &format!(
                "[[outbound.listeners]]\nlisten = \"{listen}\"\nservice = \"{service}\"\n"
            );
        }
        t += &self.extra;
        t
    }
}

/// A running `ferry edge` process (killed on drop; its log is printed if
/// the test fails).
pub struct Edge<'a> {
    pub daemon: Daemon,
    pub ns: Option<&'a Netns>,
    /// The ready line, parsed.
    pub ready: serde_json::Value,
    pub tunnel: SocketAddr,
    pub admin: SocketAddr,
    /// The outbound listeners as bound, in the order of the spec.
    pub outbound: Vec<SocketAddr>,
}

fn addr(v: &serde_json::Value, what: &str) -> SocketAddr {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("ready line: {what} is not an address: {v}"))
}

impl<'a> Edge<'a> {
    /// Writes `<dir>/<name>.toml`, starts the edge (inside `ns` if given)
    /// and waits at most 15 s for its ready line.
    pub fn start(spec: &EdgeSpec, dir: &Path, ns: Option<&'a Netns>) -> Edge<'a> {
        let config = dir.join(format!("{}.toml", spec.name));
        std::fs::write(&config, spec.toml()).expect("write edge config");
        let ferry = ferry_bin();
        let mut cmd = match ns {
            Some(ns) => ns.command(ferry.to_str().expect("utf-8 path")),
            None => Command::new(&ferry),
        };
        cmd.args(["edge", "--log-format", "json", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("FERRY_INTEROP_LOG").unwrap_or_else(|_| "info".into()),
            );
        let mut daemon = Daemon::spawn(
            &format!("edge {}", spec.name),
            cmd,
            &dir.join(format!("{}.log", spec.name)),
        );
        let line = daemon.first_line(Duration::from_secs(15));
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("edge {}: ready line is not JSON ({e}): {line}", spec.name));
        assert_eq!(ready["ready"], true, "{line}");
        let outbound = ready["outbound"]
            .as_array()
            .map(|a| a.iter().map(|l| addr(&l["listen"], "listen")).collect())
            .unwrap_or_default();
        Edge {
            tunnel: addr(&ready["tunnel"], "tunnel"),
            admin: addr(&ready["admin"], "admin"),
            outbound,
            ready,
            daemon,
            ns,
        }
    }

    /// The SPIFFE ID the edge proves.
    pub fn id(&self) -> String {
        self.ready["id"].as_str().unwrap_or_default().to_string()
    }

    /// An HTTP/1.1 request to the admin port: (status, body).
    pub fn admin(&self, method: &str, path: &str) -> (u16, String) {
        let timeout = Duration::from_secs(5);
        let mut s = match self.ns {
            Some(ns) => ns
                .tcp_connect(self.admin, timeout)
                .expect("connect to admin"),
            None => TcpStream::connect_timeout(&self.admin, timeout).expect("connect to admin"),
        };
        s.set_read_timeout(Some(timeout)).expect("timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        .expect("admin request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("admin response");
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        let (status, body) = self.admin("GET", "/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// One metric (summed over the samples matching `labels`).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.metrics(), name, labels)
    }

    /// The access-log entries (`target = "access"`) so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.daemon
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .map(|v| v["fields"].clone())
            .collect()
    }
}
