//! Two real `ferry edge` processes: the server-side edge (tunnel port on
//! the server side's address, in front of the application) and the
//! client-side edge with two explicit outbound listeners (HTTP service and
//! an opaque-TCP service for the sink), pinned to one transport
//! (`force_transport`), with `tunnel.max_udp_payload` set for the link.
//! The HTTP service is declared `protocol = "http"` (each request forwarded
//! on its own), or `"tcp"` for the opaque-HTTP paths (each application
//! connection spliced through one tunnel stream, as the pairs do).

use std::net::SocketAddr;

use anyhow::{anyhow, Context, Result};

use super::{Ctx, RunningPath, START_TIMEOUT};
use crate::paths::PathKind;
use crate::pki::ferry_id;
use crate::proc::Proc;
use crate::side::Side;

fn edge_config(
    ctx: &Ctx,
    sa: &str,
    tunnel: SocketAddr,
    mesh: &std::path::Path,
    transport: &str,
    listeners: &[&str],
    tunnel_extra: &str,
) -> String {
    let d = match sa {
        "client" => &ctx.ferry_pki.client_dir,
        _ => &ctx.ferry_pki.server_dir,
    };
    let mut t = format!(
        "name = \"bench-{sa}\"\nshutdown_grace = \"1s\"\n\
         [identity]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\nbundles = [\"{d}/bundle.pem\"]\n\
         [tunnel]\nlisten = \"{tunnel}\"\nforce_transport = \"{transport}\"\nmax_udp_payload = {mtu}\n{tunnel_extra}{extra}\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [discovery]\nmesh_file = \"{mesh}\"\n",
        d = d.display(),
        mtu = ctx.topo.max_udp_payload,
        mesh = mesh.display(),
        // More `[tunnel]` settings for an experiment, e.g.
        // `BENCH_EDGE_TUNNEL='congestion = "bbr"'` (both edges).
        extra = std::env::var("BENCH_EDGE_TUNNEL")
            .map(|t| t + "\n")
            .unwrap_or_default(),
    );
    for svc in listeners {
        t += &format!("[[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"{svc}\"\n");
    }
    t
}

/// Starts one edge in `side` and returns it with its JSON ready line.
pub fn start_edge(
    ctx: &Ctx,
    side: &Side,
    name: &str,
    config: &std::path::Path,
) -> Result<(Proc, serde_json::Value)> {
    let mut cmd = side.command(ctx.ferry);
    cmd.args(["edge", "--config"])
        .arg(config)
        // `BENCH_EDGE_LOG` (e.g. `info` for the access log) when debugging
        // a run; the logs stay in the work directory (`BENCH_KEEP_WORK`).
        .env(
            "RUST_LOG",
            std::env::var("BENCH_EDGE_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let (mut p, stdout) = Proc::spawn_piped(name, cmd, &ctx.dir.join(format!("{name}.log")))?;
    let line = p.read_line(stdout, START_TIMEOUT)?;
    let v: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("{name}: ready line {line:?}"))?;
    Ok((p, v))
}

fn addr(v: &serde_json::Value, what: &str) -> Result<SocketAddr> {
    v.as_str()
        .ok_or_else(|| anyhow!("ready line has no {what}"))?
        .parse()
        .with_context(|| format!("ready line: {what}"))
}

/// The server-side edge (and the mesh file naming it): reusable by the
/// scenarios that start several client sides against it.
pub struct ServerEdge {
    pub proc: Proc,
    pub mesh: std::path::PathBuf,
    /// Its admin port (in the server side's namespace).
    pub admin: SocketAddr,
}

/// `web_protocol` is the HTTP service's declared protocol in the mesh file.
pub fn start_server(ctx: &Ctx, transport: &str, web_protocol: &str) -> Result<ServerEdge> {
    let empty = ctx.file("empty-mesh.toml", "")?;
    let listen = SocketAddr::new(ctx.topo.server.ip, 0);
    let cfg = ctx.file(
        "server.toml",
        &edge_config(ctx, "server", listen, &empty, transport, &[], ""),
    )?;
    let (proc, ready) = start_edge(ctx, &ctx.topo.server, "ferry edge (server side)", &cfg)?;
    let tunnel = addr(&ready["tunnel"], "tunnel")?;
    let admin = addr(&ready["admin"], "admin")?;
    let id = ferry_id("server");
    let ip = ctx.topo.server.ip;
    let mut mesh = String::new();
    for (name, port, protocol) in [
        ("web", ctx.app.http_port, web_protocol),
        ("sink", ctx.app.sink_port, "tcp"),
    ] {
        mesh += &format!(
            "[[services]]\nname = \"{name}\"\nnamespace = \"default\"\nport = {port}\nprotocol = \"{protocol}\"\n\
             [[services.endpoints]]\naddress = \"{ip}:{port}\"\ntunnel = \"{tunnel}\"\nid = \"{id}\"\n"
        );
    }
    let mesh = ctx.file("mesh.toml", &mesh)?;
    Ok(ServerEdge { proc, mesh, admin })
}

/// Starts the client-side edge; returns it with its HTTP and sink entries.
/// A client-side edge: its HTTP and sink listeners and its admin port (in
/// the client side's namespace).
pub struct ClientEdge {
    pub proc: Proc,
    pub http: SocketAddr,
    pub sink: SocketAddr,
    pub admin: SocketAddr,
}

pub fn start_client(ctx: &Ctx, server: &ServerEdge, transport: &str) -> Result<ClientEdge> {
    start_client_numbered(ctx, server, transport, None, "")
}

/// [`start_client`] with more `[tunnel]` settings (TOML lines).
pub fn start_client_with(
    ctx: &Ctx,
    server: &ServerEdge,
    transport: &str,
    tunnel_extra: &str,
) -> Result<ClientEdge> {
    start_client_numbered(ctx, server, transport, None, tunnel_extra)
}

/// [`start_client`] for one of several client-side edges: `n` numbers its
/// config file and log; `tunnel_extra` adds `[tunnel]` settings.
pub fn start_client_numbered(
    ctx: &Ctx,
    server: &ServerEdge,
    transport: &str,
    n: Option<usize>,
    tunnel_extra: &str,
) -> Result<ClientEdge> {
    let suffix = n.map(|n| format!("-{n}")).unwrap_or_default();
    let web = format!("web.default:{}", ctx.app.http_port);
    let sink = format!("sink.default:{}", ctx.app.sink_port);
    let listen = "127.0.0.1:0".parse()?;
    let cfg = ctx.file(
        &format!("client{suffix}.toml"),
        &edge_config(
            ctx,
            "client",
            listen,
            &server.mesh,
            transport,
            &[&web, &sink],
            tunnel_extra,
        ),
    )?;
    let (proc, ready) = start_edge(
        ctx,
        &ctx.topo.client,
        &format!("ferry edge (client side{suffix})"),
        &cfg,
    )?;
    let out = ready["outbound"]
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| anyhow!("ready line lists no two outbound listeners: {ready}"))?;
    Ok(ClientEdge {
        http: addr(&out[0]["listen"], "outbound[0]")?,
        sink: addr(&out[1]["listen"], "outbound[1]")?,
        admin: addr(&ready["admin"], "admin")?,
        proc,
    })
}

pub fn start(ctx: &Ctx, kind: PathKind) -> Result<RunningPath> {
    let transport = kind
        .ferry_transport()
        .ok_or_else(|| anyhow!("{} is not a Ferry path", kind.label()))?;
    let web_protocol = if kind.is_opaque_http() { "tcp" } else { "http" };
    let server = start_server(ctx, transport, web_protocol)?;
    let client = start_client(ctx, &server, transport)?;
    Ok(RunningPath {
        kind,
        http: Some(client.http),
        sink: Some(client.sink),
        client: vec![client.proc],
        server: vec![server.proc],
        raw: None,
    })
}
