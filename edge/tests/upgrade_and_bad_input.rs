//! WebSocket-style `Upgrade` and application `CONNECT` carried as tunnels,
//! and bad input on every edge listener: the edge answers or closes
//! promptly and keeps serving.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ferry_transport::identity::SpiffeId;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers an HTTP/1.1 Upgrade with 101, then echoes raw bytes.
async fn upgrade_app() -> SocketAddr {
    raw_app(|mut s| async move {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !head.contains("upgrade: websocket") {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await;
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

async fn pair(
    transport: &'static str,
    app: SocketAddr,
    extra_outbound: &str,
) -> (Mesh, ferry_edge::RunningEdge, ferry_edge::RunningEdge) {
    let mesh = Mesh::new();
    let empty = mesh.write("empty.toml", "");
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
    let api = SpiffeId::parse(&format!("spiffe://{TD}/ns/default/sa/api")).unwrap();
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[
            Svc {
                name: "ws",
                port: 80,
                protocol: "auto",
                endpoints: vec![(app, server.tunnel, api.clone())],
            },
            Svc {
                name: "none",
                port: 81,
                protocol: "auto",
                endpoints: vec![],
            },
        ]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["ws.default:80".into(), "none.default:81".into()],
            force_transport: Some(transport),
            outbound_extra: extra_outbound.to_string(),
            ..Default::default()
        },
    )
    .await;
    (mesh, client, server)
}

async fn websocket(transport: &'static str) {
    let app = upgrade_app().await;
    let (_mesh, client, _server) = pair(transport, app, "").await;
    let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
    c.write_all(b"GET /chat HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for i in 0..10u8 {
        let frame = [0x81, 0x02, b'h', b'0' + i];
        c.write_all(&frame).await.unwrap();
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, frame, "frame {i} echoed through the tunnel");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_a_tunnel_quic() {
    websocket("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_a_tunnel_h2() {
    websocket("h2").await;
}

/// After each bad input, a normal exchange still works.
async fn still_serving(client: &ferry_edge::RunningEdge) {
    let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    assert_eq!(admin_get(client.admin, "/ready").await.0, 200);
}

/// Reads until EOF or error; panics if the peer keeps the connection open.
async fn closed_within(c: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, c.read_to_end(&mut out)).await;
    assert!(
        r.is_ok(),
        "connection not closed within {limit:?}; got {:?}",
        String::from_utf8_lossy(&out)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_listener() {
    let app = upgrade_app().await;
    let (_mesh, client, server) = pair("quic", app, "detect_timeout = \"200ms\"").await;
    let none = client.outbound[1].0;

    // Garbage to a service with no endpoints: reset promptly, never a hang.
    let mut c = TcpStream::connect(none).await.unwrap();
    let _ = c.write_all(&[0xff, 0x00, 0x13, 0x37]).await;
    closed_within(&mut c, Duration::from_secs(3)).await;
    still_serving(&client).await;

    // Connect and close at once; connect and send nothing (detection
    // timeout → opaque → no endpoints → reset).
    drop(TcpStream::connect(none).await.unwrap());
    let mut c = TcpStream::connect(none).await.unwrap();
    closed_within(&mut c, Duration::from_secs(3)).await;
    still_serving(&client).await;

    // A malformed HTTP/1.1 request: 400 or closed, never a hang.
    let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    still_serving(&client).await;

    // 200 KiB of headers.
    let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: ws\r\nx-big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let _ = c.write_all(big.as_bytes()).await;
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&out[..out.len().min(100)])
    );
    still_serving(&client).await;

    // Garbage to the admin port, and an unknown path.
    for admin in [client.admin, server.admin] {
        let mut c = TcpStream::connect(admin).await.unwrap();
        let _ = c.write_all(b"\x16\x03\x01garbage\r\n\r\n").await;
        closed_within(&mut c, Duration::from_secs(5)).await;
        assert_eq!(admin_get(admin, "/nope").await.0, 404);
    }

    // Garbage to the tunnel port (TCP and UDP).
    let mut c = TcpStream::connect(server.tunnel).await.unwrap();
    let _ = c.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    closed_within(&mut c, Duration::from_secs(5)).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(&[0xc0; 1200], server.tunnel).await.unwrap();
    udp.send_to(b"x", server.tunnel).await.unwrap();
    still_serving(&client).await;
}

/// The application uses the edge as an HTTP proxy (`CONNECT`): a mesh
/// service by name, an endpoint by address, and a service with no endpoints.
async fn app_connect(transport: &'static str) {
    let app = upgrade_app().await;
    let (_mesh, client, _server) = pair(transport, app, "").await;
    for authority in ["ws.default:80".to_string(), app.to_string()] {
        let mut c = TcpStream::connect(client.outbound[1].0).await.unwrap();
        c.write_all(
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 128];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{authority}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        // Inside the tunnel: the application's own protocol, end to end.
        c.write_all(
            b"GET / HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        )
        .await
        .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 101"),
            "{authority}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
    c.write_all(b"CONNECT none.default:81 HTTP/1.1\r\nHost: none.default:81\r\n\r\n")
        .await
        .unwrap();
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("ferry-error: no_endpoints"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_connect_is_a_tunnel_quic() {
    app_connect("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_connect_is_a_tunnel_h2() {
    app_connect("h2").await;
}

/// Destinations outside the mesh: forwarded as the app asked
/// (passthrough, the default) or refused, by configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_mesh_destinations_passthrough_or_refused() {
    let outside = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    };
    let app = upgrade_app().await;
    for (policy, expect) in [("passthrough", "HTTP/1.1 200"), ("refuse", "HTTP/1.1 403")] {
        let (_mesh, client, _server) = pair("quic", app, &format!("non_mesh = \"{policy}\"")).await;
        let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
        c.write_all(format!("CONNECT {outside} HTTP/1.1\r\nHost: {outside}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with(expect), "{policy}: {head}");
        if policy == "passthrough" {
            c.write_all(b"direct bytes").await.unwrap();
            let mut back = [0u8; 12];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"direct bytes");
        } else {
            assert!(head.contains("ferry-error: non_mesh_refused"), "{head}");
        }
    }
}
