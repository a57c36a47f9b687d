//! Two edges in line — a client edge with an explicit outbound listener
//! for one service, and the server edge in front of that service's
//! application — on loopback or in two network namespaces.

use std::net::SocketAddr;

use ferry_netem::{Netns, TwoHosts};

use crate::apps::HttpApp;
use crate::edge::{mesh_toml, Edge, EdgeSpec, Service};
use crate::pki::{Identity, Pki};

/// Where and how the pair runs.
pub struct PairSpec<'a> {
    /// The server edge's namespace (`None`: the test's own).
    pub server_ns: Option<&'a Netns>,
    pub client_ns: Option<&'a Netns>,
    pub server_tunnel: SocketAddr,
    pub client_tunnel: SocketAddr,
    /// Where the client edge's outbound listeners bind (port 0 is fine).
    pub listen: SocketAddr,
    /// One service per application: its address (the server edge reaches
    /// it on `127.0.0.1:<port>`) and its protocol hint (`auto`, `http`,
    /// `grpc` or `tcp`). Each gets an outbound listener, in this order.
    pub apps: Vec<(SocketAddr, &'a str)>,
    /// Extra `[tunnel]` keys for the client edge (e.g. `head_start`).
    pub client_tunnel_extra: String,
}

impl<'a> PairSpec<'a> {
    /// Both edges on loopback, port 0 everywhere, one application.
    pub fn loopback(app: SocketAddr, protocol: &'a str) -> PairSpec<'a> {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        PairSpec {
            server_ns: None,
            client_ns: None,
            server_tunnel: any,
            client_tunnel: any,
            listen: any,
            apps: vec![(app, protocol)],
            client_tunnel_extra: String::new(),
        }
    }

    /// The client edge on host `a`, the server edge on host `b` (tunnel
    /// ports 4143 on the veth addresses), listeners on `a`'s loopback.
    pub fn hosts(hosts: &'a TwoHosts, apps: Vec<(SocketAddr, &'a str)>) -> PairSpec<'a> {
        PairSpec {
            server_ns: Some(&hosts.b),
            client_ns: Some(&hosts.a),
            server_tunnel: SocketAddr::new(hosts.ip_b.into(), 4143),
            client_tunnel: SocketAddr::new(hosts.ip_a.into(), 4143),
            listen: "127.0.0.1:0".parse().expect("addr"),
            apps,
            client_tunnel_extra: String::new(),
        }
    }
}

/// The running pair. Fields drop in order: edges first, files last.
pub struct EdgePair<'a> {
    pub client: Edge<'a>,
    pub server: Edge<'a>,
    /// Where the application connects: the client edge's listener for the
    /// first service.
    pub listener: SocketAddr,
    /// The listener of each service, in the order of the spec.
    pub listeners: Vec<SocketAddr>,
    pub client_identity: Identity,
    pub server_identity: Identity,
    pub dir: tempfile::TempDir,
}

impl<'a> EdgePair<'a> {
    /// Builds a PKI, starts the server edge, writes the mesh file naming it,
    /// then starts the client edge.
    pub fn start(spec: &PairSpec<'a>) -> EdgePair<'a> {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let pki = Pki::create(&d.join("ca"), "interop.test");
        let server_identity = pki.issue("server", &d.join("server"));
        let client_identity = pki.issue("client", &d.join("client"));
        let mesh = d.join("mesh.toml");
        std::fs::write(&mesh, "").expect("mesh file");

        let mut s = EdgeSpec::new("server", &server_identity, &mesh);
        s.tunnel = spec.server_tunnel;
        let server = Edge::start(&s, d, spec.server_ns);

        let names: Vec<String> = (0..spec.apps.len()).map(|i| format!("app{i}")).collect();
        let services: Vec<Service> = spec
            .apps
            .iter()
            .zip(&names)
            .map(|(&(app, protocol), name)| Service {
                name,
                port: app.port(),
                protocol,
                endpoints: vec![(app, server.tunnel, server_identity.id.clone())],
            })
            .collect();
        std::fs::write(&mesh, mesh_toml(&services)).expect("mesh file");

        let mut c = EdgeSpec::new("client", &client_identity, &mesh);
        c.tunnel = spec.client_tunnel;
        c.tunnel_extra = spec.client_tunnel_extra.clone();
        c.listeners = services
            .iter()
            .map(|s| (spec.listen, format!("{}.default:{}", s.name, s.port)))
            .collect();
        let client = Edge::start(&c, d, spec.client_ns);
        let listeners = client.outbound.clone();
        EdgePair {
            client,
            server,
            listener: listeners[0],
            listeners,
            client_identity,
            server_identity,
            dir,
        }
    }
}

/// An HTTP application on host `b`'s loopback and a pair in front of it,
/// the client edge on host `a`: where most network-condition tests start.
/// The application is returned first, so it stops before the edges.
pub fn http_app_behind_hosts(hosts: &TwoHosts) -> (HttpApp, EdgePair<'_>) {
    let lo = SocketAddr::new("127.0.0.1".parse().expect("addr"), 0);
    let app = HttpApp::start(hosts.b.tcp_listen(lo).expect("listen on host b"));
    let pair = EdgePair::start(&PairSpec::hosts(
        hosts,
        vec![(SocketAddr::new(hosts.ip_b.into(), app.addr.port()), "http")],
    ));
    (app, pair)
}
