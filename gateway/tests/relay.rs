//! A gateway relaying end-to-end inner sessions, with real processes'
//! worth of parts in one test process on 127.0.0.1: the destination
//! cluster's control plane, its edge (certified by it) and its gateway
//! (certified by it, routes from it); the source edge reaches the remote
//! service through the gateway. HTTP and opaque TCP get through, the
//! destination application sees the source's own SPIFFE ID, an unexported
//! service is refused (at the gateway, or at the destination edge when that
//! edge also serves exported ones), inner sessions are pooled (one
//! handshake for many requests and connections), and the gateway restarted
//! under load recovers.

#[path = "../../edge/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ferry_control::{Overrides, RunningControl};
use ferry_edge::RunningEdge;
use ferry_gateway::config::GatewayConfig;
use ferry_gateway::RunningGateway;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const NOWHERE: &str = "127.0.0.1:9";

fn hash(token: &str) -> String {
    ferry_control::token::sha256_hex(token)
}

/// The destination cluster's mesh file: api (HTTP, exported), echo (TCP,
/// exported) and db (TCP, not exported), all served by `api-1`.
fn west_mesh(api_tunnel: SocketAddr, http: SocketAddr, echo: SocketAddr, db: SocketAddr) -> String {
    format!(
        r#"trust_domain = "{TD}"
[ca]
dir = "ca"
[control]
reload_interval = "50ms"

[[workloads]]
name = "api-1"
id = "spiffe://{TD}/ns/default/sa/api"
address = "127.0.0.1"
tunnel = "{api_tunnel}"
ports = {{ http = {}, echo = {}, db = {} }}
token_sha256 = "{}"

[[workloads]]
name = "gateway"
id = "spiffe://{TD}/ns/ferry-system/sa/gateway"
address = "127.0.0.1"
tunnel = "{NOWHERE}"
token_sha256 = "{}"

[[services]]
name = "api"
namespace = "default"
workloads = ["api-1"]
export = true
[[services.ports]]
port = 80
target_port = "http"
protocol = "http"

[[services]]
name = "echo"
namespace = "default"
workloads = ["api-1"]
export = true
[[services.ports]]
port = 7
target_port = "echo"
protocol = "tcp"

[[services]]
name = "db"
namespace = "default"
workloads = ["api-1"]
[[services.ports]]
port = 5432
target_port = "db"
protocol = "tcp"
"#,
        http.port(),
        echo.port(),
        db.port(),
        hash("api-token"),
        hash("gateway-token"),
    )
}

struct West {
    mesh: Mesh,
    control: RunningControl,
    api: RunningEdge,
    gateway: Option<RunningGateway>,
    gateway_stop: CancellationToken,
    http: SocketAddr,
    echo: SocketAddr,
    db: SocketAddr,
}

async fn wait_version(control: &RunningControl, at_least: u64) {
    assert!(
        wait_until(Duration::from_secs(3), || async {
            let (_, body) = admin_get(control.admin, "/mesh").await;
            serde_json::from_str::<serde_json::Value>(&body)
                .map(|v| v["version"].as_u64().unwrap_or(0) >= at_least)
                .unwrap_or(false)
        })
        .await,
        "the control plane took the mesh file"
    );
}

fn control_section(mesh: &Mesh, grpc: SocketAddr, sa_path: &str, token_file: &str) -> String {
    format!(
        "[control]\naddress = \"{grpc}\"\nworkload_id = \"spiffe://{TD}/{sa_path}\"\ntoken_file = \"{}\"\nbundle = \"{}\"\n",
        mesh.path(token_file).display(),
        mesh.path("ca/ca.pem").display()
    )
}

async fn start_gateway(
    mesh: &Mesh,
    grpc: SocketAddr,
    listen: &str,
    stop: CancellationToken,
) -> RunningGateway {
    // Top-level keys first, then the tables.
    let text = format!(
        "allow_trust_domains = [\"{TD}\"]\nshutdown_grace = \"2s\"\n{}[tunnel]\nlisten = \"{listen}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        control_section(mesh, grpc, "ns/ferry-system/sa/gateway", "gateway.token")
    );
    let path = mesh.write("gateway.toml", &text);
    let cfg = GatewayConfig::load(&path).unwrap();
    tokio::time::timeout(Duration::from_secs(10), ferry_gateway::start(cfg, stop))
        .await
        .expect("the gateway is ready within 10 s")
        .unwrap()
}

async fn west() -> West {
    let mesh = Mesh::new();
    mesh.ca.write(&mesh.path("ca"), true).unwrap();
    mesh.write("api.token", "api-token");
    mesh.write("gateway.token", "gateway-token");
    let http = http_app().await;
    let echo = tcp_echo_app().await;
    let db = tcp_echo_app().await;
    mesh.write(
        "mesh.toml",
        &west_mesh(NOWHERE.parse().unwrap(), http, echo, db),
    );
    let control = RunningControl::start(
        &mesh.path("mesh.toml"),
        Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap();
    let api_cfg = mesh.write(
        "api.toml",
        &format!(
            "shutdown_grace = \"2s\"\n{}[tunnel]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            control_section(&mesh, control.grpc, "ns/default/sa/api", "api.token")
        ),
    );
    let api = ferry_edge::start(ferry_edge::config::EdgeConfig::load(&api_cfg).unwrap())
        .await
        .unwrap();
    mesh.write("mesh.toml", &west_mesh(api.tunnel, http, echo, db));
    wait_version(&control, 2).await;
    let gateway_stop = CancellationToken::new();
    let gateway = start_gateway(&mesh, control.grpc, "127.0.0.1:0", gateway_stop.clone()).await;
    West {
        mesh,
        control,
        api,
        gateway: Some(gateway),
        gateway_stop,
        http,
        echo,
        db,
    }
}

/// The source edge ("east"): its own certificate files, and a mesh file
/// naming the remote services with the gateway in front.
async fn source(w: &West, gateway: SocketAddr) -> RunningEdge {
    let gw_id = format!("spiffe://{TD}/ns/ferry-system/sa/gateway");
    let api_id = format!("spiffe://{TD}/ns/default/sa/api");
    let remote = |name: &str, port: u16, app: SocketAddr, protocol: &str| {
        format!(
            "[[services]]\nname = \"{name}\"\nnamespace = \"default\"\nport = {port}\nprotocol = \"{protocol}\"\n\
             [[services.endpoints]]\naddress = \"{app}\"\ntunnel = \"{}\"\nid = \"{api_id}\"\ngateway = \"{gateway}\"\ngateway_id = \"{gw_id}\"\n",
            w.api.tunnel
        )
    };
    // ghost: an edge address that serves no exported service.
    let ghost = format!(
        "[[services]]\nname = \"ghost-west\"\nnamespace = \"default\"\nport = 1\nprotocol = \"tcp\"\n\
         [[services.endpoints]]\naddress = \"127.0.0.1:1\"\ntunnel = \"{NOWHERE}\"\nid = \"{api_id}\"\ngateway = \"{gateway}\"\ngateway_id = \"{gw_id}\"\n"
    );
    let text = remote("api-west", 80, w.http, "http")
        + &remote("echo-west", 7, w.echo, "tcp")
        + &remote("db-west", 5432, w.db, "tcp")
        + &ghost;
    let file = w.mesh.write("east-mesh.toml", &text);
    start_edge(
        &w.mesh,
        "web",
        &file,
        &EdgeOpts {
            listeners: vec![
                "api-west.default:80".into(),
                "echo-west.default:7".into(),
                "db-west.default:5432".into(),
                "ghost-west.default:1".into(),
            ],
            ..Default::default()
        },
    )
    .await
}

async fn metric(admin: SocketAddr, line_prefix: &str) -> u64 {
    let (_, body) = admin_get(admin, "/metrics").await;
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn echo_roundtrip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    try_echo(addr, payload).await.expect("the echo succeeds")
}

/// Sends `payload`, half-closes, reads everything back (or the error: a
/// refused connection is reset).
async fn try_echo(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(payload).await?;
    s.shutdown().await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer or a reset within 10 s")?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_cross_the_gateway_end_to_end() {
    let w = west().await;
    let gw = w.gateway.as_ref().unwrap();
    let web = source(&w, gw.tunnel).await;
    let (api_l, echo_l, db_l) = (web.outbound[0].0, web.outbound[1].0, web.outbound[2].0);
    let client = http_client();

    // HTTP: the destination application sees the caller's own identity,
    // not the gateway's.
    let (status, _, body) = get(&client, api_l, "/hello").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("id=spiffe://{TD}/ns/default/sa/web")),
        "the destination authenticated the source itself: {body}"
    );

    // Opaque TCP, 1 MiB both ways.
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(echo_roundtrip(echo_l, &payload).await, payload);

    // Many requests and new application connections: one inner session.
    for i in 0..30 {
        let fresh = http_client();
        let (status, _, _) = get(&fresh, api_l, &format!("/n{i}")).await.unwrap();
        assert_eq!(status, 200);
    }
    for _ in 0..5 {
        assert_eq!(echo_roundtrip(echo_l, b"ping").await, b"ping");
    }
    let inner_handshakes = metric(
        w.api.admin,
        "ferry_transport_handshakes_total{transport=\"h2\",side=\"server\",result=\"ok\"}",
    )
    .await;
    assert_eq!(
        inner_handshakes, 1,
        "one end-to-end handshake for 31 requests and 6 connections"
    );
    assert_eq!(
        metric(gw.admin, "ferry_gateway_open_relays").await,
        1,
        "one pooled inner session"
    );

    // db is not exported. Its edge also serves exported services, so the
    // gateway (which sees only the edge's address) relays the session, and
    // the destination edge refuses the stream: a caller from another
    // cluster reaches exported services only.
    let out = try_echo(db_l, b"secret").await;
    assert!(
        out.as_ref().map_or(true, |o| o.is_empty()),
        "nothing from an unexported service: {out:?}"
    );
    assert!(metric(w.api.admin, "ferry_authz_denied_total{kind=\"tcp\"}").await >= 1);
    // An edge address serving no exported service: refused at the gateway.
    let out = try_echo(web.outbound[3].0, b"x").await;
    assert!(out.as_ref().map_or(true, |o| o.is_empty()), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(3), || async {
            metric(
                gw.admin,
                "ferry_gateway_refused_total{reason=\"not_exported\"}",
            )
            .await
                >= 1
        })
        .await
    );
    // Linked trust domains are all the gateway admits.
    let (_, routes) = admin_get(gw.admin, "/routes").await;
    assert!(routes.contains(&format!("\"{TD}\"")), "{routes}");
    web.shutdown().await;
    w.api.shutdown().await;
    drop(w.control);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_under_load_recovers() {
    let mut w = west().await;
    let gw_addr = w.gateway.as_ref().unwrap().tunnel;
    let web = source(&w, gw_addr).await;
    let api_l = web.outbound[0].0;
    let client = http_client();
    assert_eq!(get(&client, api_l, "/").await.unwrap().0, 200);
    w.gateway_stop.cancel();
    w.gateway.take().unwrap().shutdown().await;
    // While it is down, requests fail fast (no hang).
    let started = std::time::Instant::now();
    let down = get(&client, api_l, "/down").await;
    assert!(started.elapsed() < Duration::from_secs(8), "{down:?}");
    // Back on the same port.
    let mut back = None;
    for _ in 0..40 {
        let stop = CancellationToken::new();
        let text = w.mesh.path("gateway.toml");
        let cfg = GatewayConfig::load(&text).unwrap();
        let mut cfg = cfg;
        cfg.tunnel.listen = gw_addr;
        match ferry_gateway::start(cfg, stop).await {
            Ok(g) => {
                back = Some(g);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let back = back.expect("the gateway restarts on its port");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            matches!(get(&client, api_l, "/again").await, Ok((200, _, _)))
        })
        .await,
        "traffic recovers through the restarted gateway"
    );
    for i in 0..20 {
        assert_eq!(
            get(&client, api_l, &format!("/after{i}")).await.unwrap().0,
            200
        );
    }
    back.shutdown().await;
    web.shutdown().await;
    w.api.shutdown().await;
}
