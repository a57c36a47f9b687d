//! HTTP/1.1 requests that leave HTTP behind become opaque tunnels through
//! the mesh, for each transport: a WebSocket `Upgrade` (the application's
//! 101 and then raw frames both ways, the upgrade request reaching the
//! application verbatim) and an HTTP `CONNECT` from the application (the
//! edge answers it, routes by the requested authority, and the application
//! behind it sees only the bytes after the CONNECT head).

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    _mesh: Mesh,
    client: ferry_edge::RunningEdge,
    _server: ferry_edge::RunningEdge,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    http_listener: std::net::SocketAddr,
}

/// Server edge with the upgrade app (ws:8080) and an HTTP app (web:8081);
/// client edge with one listener per service.
async fn setup(transport: &'static str) -> Setup {
    let mesh = Mesh::new();
    let (ws, heads) = upgrade_echo_app().await;
    let http = http_app().await;
    let empty = mesh.write("empty-mesh.toml", "");
    let server = start_edge(
        &mesh,
        "api",
        &empty,
        &EdgeOpts {
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let (api_id, _) = mesh.identity("api");
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[
            Svc {
                name: "ws",
                port: 8080,
                protocol: "auto",
                endpoints: vec![(ws, server.tunnel, api_id.clone())],
            },
            Svc {
                name: "web",
                port: 8081,
                protocol: "auto",
                endpoints: vec![(http, server.tunnel, api_id.clone())],
            },
        ]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["ws.default:8080".into(), "web.default:8081".into()],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let http_listener = client.outbound[1].0;
    Setup {
        _mesh: mesh,
        client,
        _server: server,
        heads,
        http_listener,
    }
}

/// Reads until `\r\n\r\n`; returns the head.
async fn read_head(c: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .expect("response head in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed early after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

async fn read_exact_in_time(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .unwrap();
    buf
}

/// A few WebSocket-like frames (raw bytes: the mesh never parses them).
fn frames() -> Vec<Vec<u8>> {
    vec![
        b"\x81\x05hello".to_vec(),
        b"\x82\x04\x00\x01\x02\xff".to_vec(),
        (0..70_000u32).map(|i| (i % 251) as u8).collect(),
    ]
}

async fn websocket(transport: &'static str) {
    let s = setup(transport).await;
    let ws = s.client.outbound[0].0;
    let mut c = TcpStream::connect(ws).await.unwrap();
    let request = "GET /chat HTTP/1.1\r\nHost: ws.default:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    c.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut c).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols"),
        "{head}"
    );
    for f in frames() {
        c.write_all(&f).await.unwrap();
        let back = read_exact_in_time(&mut c, f.len()).await;
        assert_eq!(back, f);
    }
    // The application got the upgrade request byte for byte (hop-by-hop
    // headers included: it is a tunnel, not a proxied HTTP request).
    assert_eq!(s.heads.lock().unwrap().as_slice(), &[request.to_string()]);
    // Half-close travels: the app sees EOF and closes its side.
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("close propagates")
        .unwrap();
    assert!(rest.is_empty());

    // Counted as an opaque TCP connection over the forced transport, when
    // it ends: the edge finishes its bookkeeping just after the close
    // reached us, so the count may take a moment to appear.
    let line =
        format!("ferry_tcp_connections_total{{direction=\"outbound\",transport=\"{transport}\"}}");
    let admin = s.client.admin;
    let counted = wait_until(Duration::from_secs(5), || {
        let line = line.clone();
        async move {
            let (_, metrics) = admin_get(admin, "/metrics").await;
            metrics.lines().any(|l| l.starts_with(&line))
        }
    })
    .await;
    assert!(
        counted,
        "{line} not exposed: {}",
        admin_get(admin, "/metrics").await.1
    );
    // Plain HTTP on the same edge still works.
    let resp = http1_raw(
        s.http_listener,
        "GET /after HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_a_tunnel_quic() {
    websocket("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_a_tunnel_h2() {
    websocket("h2").await;
}

/// The application uses the edge as its HTTP proxy: the edge itself
/// answers the CONNECT (`200 Connection Established`), routes by the
/// requested authority (not by the listener's service), and the service's
/// application receives only the bytes after the CONNECT head: here a TCP
/// echo returns exactly what was sent after the head, never the head.
async fn connect(transport: &'static str) {
    let mesh = Mesh::new();
    let echo = tcp_echo_app().await;
    let http = http_app().await;
    let empty = mesh.write("empty-mesh.toml", "");
    let server = start_edge(
        &mesh,
        "api",
        &empty,
        &EdgeOpts {
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let (api_id, _) = mesh.identity("api");
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[
            Svc {
                name: "echo",
                port: 9000,
                protocol: "auto",
                endpoints: vec![(echo, server.tunnel, api_id.clone())],
            },
            Svc {
                name: "web",
                port: 8081,
                protocol: "auto",
                endpoints: vec![(http, server.tunnel, api_id.clone())],
            },
        ]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            // Only a listener for `web`: CONNECT names `echo`.
            listeners: vec!["web.default:8081".into()],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let web = client.outbound[0].0;
    let mut c = TcpStream::connect(web).await.unwrap();
    // Bytes pipelined behind the head in the same write travel too.
    c.write_all(b"CONNECT echo.default:9000 HTTP/1.1\r\nHost: echo.default:9000\r\n\r\nEARLY")
        .await
        .unwrap();
    let head = read_head(&mut c).await;
    assert_eq!(head, "HTTP/1.1 200 Connection Established\r\n\r\n");
    assert_eq!(read_exact_in_time(&mut c, 5).await, b"EARLY");
    for f in frames() {
        c.write_all(&f).await.unwrap();
        assert_eq!(read_exact_in_time(&mut c, f.len()).await, f);
    }
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("close propagates")
        .unwrap();
    assert!(rest.is_empty(), "nothing but the echo: {rest:?}");

    // A name neither discovery nor DNS knows is answered, not tunneled.
    let mut c = TcpStream::connect(web).await.unwrap();
    c.write_all(
        b"CONNECT no-such-host.invalid:443 HTTP/1.1\r\nHost: no-such-host.invalid:443\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 502") && out.contains("ferry-error: unresolvable"),
        "{out}"
    );

    let (_, metrics) = admin_get(client.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_protocol_detections_total{result=\"connect\"} 2"),
        "{metrics}"
    );
    // The listener still serves plain HTTP.
    let resp = http1_raw(
        web,
        "GET /x HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_is_answered_by_the_edge_then_tunneled_quic() {
    connect("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_is_answered_by_the_edge_then_tunneled_h2() {
    connect("h2").await;
}

/// An upgrade to a service with no endpoints: there is no HTTP exchange to
/// answer (the connection is already a tunnel), so it is reset promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_without_endpoints_is_reset_promptly() {
    let mesh = Mesh::new();
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "ws",
            port: 8080,
            protocol: "auto",
            endpoints: vec![],
        }]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["ws.default:8080".into()],
            ..Default::default()
        },
    )
    .await;
    let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
    c.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out))
        .await
        .expect("closed promptly");
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    assert!(
        r.is_err() || r.unwrap() == 0,
        "reset or closed without an answer"
    );
}
