//! Two edges in line — a client edge with an explicit outbound listener
//! for one service, and the server edge in front of that service's
//! application — on loopback or in two network namespaces.

use std::net::SocketAddr;

use ferry_netem::Netns;

use crate::edge::{mesh_toml, Edge, EdgeSpec, Service};
use crate::pki::{Identity, Pki};

/// Where and how the pair runs.
pub struct PairSpec<'a> {
    /// The server edge's namespace (`None`: the test's own).
    pub server_ns: Option<&'a Netns>,
    pub client_ns: Option<&'a Netns>,
    pub server_tunnel: SocketAddr,
    pub client_tunnel: SocketAddr,
    /// The client edge's outbound listener.
    pub listener: SocketAddr,
    /// The application's address (the server edge reaches it on
    /// `127.0.0.1:<port>`).
    pub app: SocketAddr,
    /// The service's protocol hint: `auto`, `http`, `grpc` or `tcp`.
    pub protocol: &'a str,
    /// Extra `[tunnel]` keys for the client edge (e.g. `head_start`).
    pub client_tunnel_extra: String,
}

impl<'a> PairSpec<'a> {
    /// Both edges on loopback, port 0 everywhere.
    pub fn loopback(app: SocketAddr, protocol: &'a str) -> PairSpec<'a> {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        PairSpec {
            server_ns: None,
            client_ns: None,
            server_tunnel: any,
            client_tunnel: any,
            listener: any,
            app,
            protocol,
            client_tunnel_extra: String::new(),
        }
    }
}

/// The running pair. Fields drop in order: edges first, files last.
pub struct EdgePair<'a> {
    pub client: Edge<'a>,
    pub server: Edge<'a>,
    /// Where the application connects: the client edge's listener.
    pub listener: SocketAddr,
    /// The service authority, `app.default:<port>`.
    pub service: String,
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

        let service = format!("app.default:{}", spec.app.port());
        std::fs::write(
            &mesh,
            mesh_toml(&[Service {
                name: "app",
                port: spec.app.port(),
                protocol: spec.protocol,
                endpoints: vec![(spec.app, server.tunnel, server_identity.id.clone())],
            }]),
        )
        .expect("mesh file");

        let mut c = EdgeSpec::new("client", &client_identity, &mesh);
        c.tunnel = spec.client_tunnel;
        c.tunnel_extra = spec.client_tunnel_extra.clone();
        c.listeners = vec![(spec.listener, service.clone())];
        let client = Edge::start(&c, d, spec.client_ns);
        let listener = client.outbound[0];
        EdgePair {
            client,
            server,
            listener,
            service,
            client_identity,
            server_identity,
            dir,
        }
    }
}
