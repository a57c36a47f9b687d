//! Bad input on every listener of an edge, for each transport: the outbound
//! listener (garbage, connections closed at once, silent clients, malformed
//! and oversized HTTP/1.1 heads, a broken h2c preface), the admin port and
//! the tunnel port (TCP and UDP). Every bad connection is answered or
//! closed promptly, never left hanging (a silent one not even past a
//! drain), and the edge serves a normal request afterwards.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GET: &str = "GET /ok HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n";

struct Setup {
    _mesh: Mesh,
    client: ferry_edge::RunningEdge,
    server: ferry_edge::RunningEdge,
}

impl Setup {
    fn listener(&self, service: &str) -> SocketAddr {
        self.client
            .outbound
            .iter()
            .find(|(_, s)| s == service)
            .unwrap()
            .0
    }

    /// A normal request through both edges still works, and both admin
    /// ports still answer.
    async fn still_serving(&self) {
        let resp = http1_raw(self.listener("web.default:8080"), GET).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("GET /ok id=spiffe://"), "{resp}");
        assert_eq!(admin_get(self.client.admin, "/ready").await.0, 200);
        assert_eq!(admin_get(self.server.admin, "/ready").await.0, 200);
    }
}

/// Server edge "api": HTTP app (web:8080, and decl:8081 declared
/// `protocol = "http"`), banner app on a port that is not server-first
/// (chat:7000), and a service with no endpoints (none:81). Client edge
/// "web" with a 200 ms detection timeout.
async fn setup(transport: &'static str) -> Setup {
    let mesh = Mesh::new();
    let http = http_app().await;
    let banner = banner_app(b"* OK banner\r\n").await;
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
                name: "web",
                port: 8080,
                protocol: "auto",
                endpoints: vec![(http, server.tunnel, api_id.clone())],
            },
            Svc {
                name: "chat",
                port: 7000,
                protocol: "auto",
                endpoints: vec![(banner, server.tunnel, api_id.clone())],
            },
            Svc {
                name: "decl",
                port: 8081,
                protocol: "http",
                endpoints: vec![(http, server.tunnel, api_id.clone())],
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
            listeners: vec![
                "web.default:8080".into(),
                "chat.default:7000".into(),
                "decl.default:8081".into(),
                "none.default:81".into(),
            ],
            force_transport: Some(transport),
            outbound_extra: "detect_timeout = \"200ms\"".into(),
            ..Default::default()
        },
    )
    .await;
    Setup {
        _mesh: mesh,
        client,
        server,
    }
}

/// Reads until EOF or a reset; panics if the connection stays open past
/// `limit`. Returns what arrived.
async fn closed_within(c: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Err(_) => panic!(
                "connection still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(out: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

async fn outbound_garbage(transport: &'static str) {
    let s = setup(transport).await;
    let none = s.listener("none.default:81");
    let web = s.listener("web.default:8080");

    // Garbage to a service with no endpoints: opaque TCP with nowhere to
    // go is reset at once (well within the detection timeout's scale).
    let start = Instant::now();
    let mut c = TcpStream::connect(none).await.unwrap();
    let _ = c.write_all(&[0xff, 0x00, 0x13, 0x37, b'\n']).await;
    let out = closed_within(&mut c, Duration::from_secs(2)).await;
    assert!(out.is_empty(), "{out:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    s.still_serving().await;

    // Connections closed at once, with and without a byte, many times.
    for i in 0..20 {
        let mut c = TcpStream::connect(if i % 2 == 0 { web } else { none })
            .await
            .unwrap();
        if i % 4 < 2 {
            let _ = c.write_all(b"G").await;
        }
        drop(c);
    }
    s.still_serving().await;

    // Garbage to a service with an endpoint: carried as opaque TCP to the
    // HTTP application, which refuses it; the connection ends, no hang.
    let mut c = TcpStream::connect(web).await.unwrap();
    let _ = c.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").await;
    let _ = c.shutdown().await;
    closed_within(&mut c, Duration::from_secs(5)).await;
    s.still_serving().await;

    // The HTTP/2 preface followed by garbage: the h2c server gives up.
    let mut c = TcpStream::connect(web).await.unwrap();
    c.write_all(ferry_edge::outbound::detect::H2_PREFACE)
        .await
        .unwrap();
    let _ = c.write_all(&[0xde; 64]).await;
    closed_within(&mut c, Duration::from_secs(5)).await;
    s.still_serving().await;

    // A client that sends nothing to a service with no endpoints: after
    // the detection timeout it is opaque TCP, and reset.
    let start = Instant::now();
    let mut c = TcpStream::connect(none).await.unwrap();
    closed_within(&mut c, Duration::from_secs(3)).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(2),
        "reset after the 200 ms detection timeout, took {took:?}"
    );

    let (_, metrics) = admin_get(s.client.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_protocol_detections_total{result=\"timeout\"} 1"),
        "{metrics}"
    );
    s.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_garbage_closed_and_silent_connections_quic() {
    outbound_garbage("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_garbage_closed_and_silent_connections_h2() {
    outbound_garbage("h2").await;
}

async fn silent_client_gets_banner(transport: &'static str) {
    let s = setup(transport).await;
    // Port 7000 is not a server-first port: the edge waits for the
    // client's first bytes, then (200 ms later) treats it as opaque TCP and
    // the application's banner arrives.
    let start = Instant::now();
    let mut c = TcpStream::connect(s.listener("chat.default:7000"))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("banner in time")
        .unwrap();
    assert_eq!(&buf[..n], b"* OK banner\r\n");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(3),
        "banner after the detection timeout, took {took:?}"
    );
    // Then it is an ordinary tunnel: the app echoes.
    c.write_all(b"a1 LOGIN\r\n").await.unwrap();
    let mut back = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"a1 LOGIN\r\n");
    s.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_opaque_after_detection_timeout_quic() {
    silent_client_gets_banner("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_opaque_after_detection_timeout_h2() {
    silent_client_gets_banner("h2").await;
}

async fn bad_http1(transport: &'static str) {
    let s = setup(transport).await;
    let web = s.listener("web.default:8080");

    // A header line without a colon: 400 from the edge's HTTP server, or
    // the connection closed; never a hang.
    let mut c = TcpStream::connect(web).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(
        out.is_empty() || status_of(&out) == Some(400),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    s.still_serving().await;

    // A Host that is no authority: 400 from the edge, naming the target.
    let mut c = TcpStream::connect(web).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&out), Some(400), "{text}");
    assert!(
        text.contains("ferry-error: malformed") && text.contains("bad request target"),
        "{text}"
    );
    // No Host at all (HTTP/1.0): the service's name is the authority.
    let mut c = TcpStream::connect(web).await.unwrap();
    c.write_all(b"GET /ok HTTP/1.0\r\n\r\n").await.unwrap();
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    s.still_serving().await;

    // 200 KiB in one header: refused by the edge itself (431) before
    // anything reaches the tunnel.
    let mut c = TcpStream::connect(web).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: web\r\nx-big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let _ = c.write_all(big.as_bytes()).await;
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    assert_eq!(
        status_of(&out),
        Some(431),
        "{:?}",
        String::from_utf8_lossy(&out[..out.len().min(200)])
    );
    s.still_serving().await;

    // 200 KiB in 2,000 small headers.
    let mut c = TcpStream::connect(web).await.unwrap();
    let mut many = String::from("GET / HTTP/1.1\r\nHost: web\r\n");
    for i in 0..2000 {
        many += &format!("x-h{i:04}: {}\r\n", "b".repeat(100));
    }
    many += "\r\n";
    assert!(many.len() > 200 * 1024);
    let _ = c.write_all(many.as_bytes()).await;
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(
        matches!(status_of(&out), Some(431) | Some(400)) || out.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out[..out.len().min(200)])
    );
    s.still_serving().await;

    // Heads near the 64 KiB limit: below it they go through on both
    // transports; just above it (hyper's own limit lets a head overshoot
    // by one read) the edge answers 431 itself, not a 502 blaming the
    // endpoint.
    for (size, want) in [
        (16 * 1024, 200),
        (48 * 1024, 200),
        (63 * 1024, 200),
        (66 * 1024, 431),
        (70 * 1024, 431),
    ] {
        let mut c = TcpStream::connect(web).await.unwrap();
        let req = format!(
            "GET /big HTTP/1.1\r\nHost: web\r\nConnection: close\r\nx-big: {}\r\n\r\n",
            "c".repeat(size)
        );
        let _ = c.write_all(req.as_bytes()).await;
        let out = closed_within(&mut c, Duration::from_secs(5)).await;
        assert_eq!(
            status_of(&out),
            Some(want),
            "{size}: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(300)])
        );
        s.still_serving().await;
    }
    let (_, metrics) = admin_get(s.client.admin, "/metrics").await;
    let line = format!(
        "ferry_requests_total{{direction=\"outbound\",transport=\"{transport}\",status_class=\"5xx\"}}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
        "no 5xx from oversized heads: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_http1_quic() {
    bad_http1("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_http1_h2() {
    bad_http1("h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_bad_input() {
    let s = setup("quic").await;
    for admin in [s.client.admin, s.server.admin] {
        // Garbage (a TLS ClientHello-ish start): closed, maybe after a 400.
        let mut c = TcpStream::connect(admin).await.unwrap();
        let _ = c.write_all(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n").await;
        let out = closed_within(&mut c, Duration::from_secs(5)).await;
        assert!(out.is_empty() || status_of(&out) == Some(400), "{out:?}");
        // Closed at once.
        drop(TcpStream::connect(admin).await.unwrap());
        // An unknown path.
        let (status, body) = admin_get(admin, "/no/such/path").await;
        assert_eq!(status, 404, "{body}");
        // A wrong method on a known path.
        assert_eq!(admin_req(admin, "DELETE", "/ready").await.0, 405);
        // 200 KiB of headers: within hyper's default buffer (about 400
        // KiB) on the admin port, so answered, or refused with 431.
        let mut c = TcpStream::connect(admin).await.unwrap();
        let big = format!(
            "GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-big: {}\r\n\r\n",
            "a".repeat(200 * 1024)
        );
        let _ = c.write_all(big.as_bytes()).await;
        let out = closed_within(&mut c, Duration::from_secs(5)).await;
        assert!(
            matches!(status_of(&out), Some(200) | Some(431)),
            "{:?}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        );
    }
    s.still_serving().await;
}

async fn tunnel_port_bad_input(transport: &'static str) {
    let s = setup(transport).await;
    let tunnel = s.server.tunnel;
    // Plaintext HTTP, garbage, a truncated ClientHello, nothing at all:
    // each connection is closed (the handshake fails or times out later,
    // but never blocks the port).
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8; 512][..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
    ] {
        let mut c = TcpStream::connect(tunnel).await.unwrap();
        let _ = c.write_all(bytes).await;
        let _ = c.shutdown().await;
        closed_within(&mut c, Duration::from_secs(5)).await;
    }
    let _idle = TcpStream::connect(tunnel).await.unwrap();
    drop(TcpStream::connect(tunnel).await.unwrap());
    // UDP garbage to the QUIC side: a long-header-looking datagram, a
    // short one, an empty one.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for d in [&[0xc0u8; 1200][..], &b"x"[..], &[][..], &[0x40u8; 60][..]] {
        udp.send_to(d, tunnel).await.unwrap();
    }
    s.still_serving().await;
    // The three refused TLS attempts are counted as failed handshakes.
    let (_, metrics) = admin_get(s.server.admin, "/metrics").await;
    let failed: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("ferry_transport_handshakes_total{")
                && l.contains("transport=\"h2\"")
                && l.contains("side=\"server\"")
                && (l.contains("result=\"error\"") || l.contains("result=\"rejected\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        failed >= 3,
        "{failed} failed handshakes counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_port_bad_input_quic() {
    tunnel_port_bad_input("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_port_bad_input_h2() {
    tunnel_port_bad_input("h2").await;
}

/// A client of a service declared HTTP that is slower than the detection
/// timeout (a loaded node, a connection opened ahead of its request) is
/// still served request by request (balanced, with the caller's identity),
/// not spliced as opaque TCP to one endpoint for the connection's life.
async fn slow_client_of_an_http_service(transport: &'static str) {
    let s = setup(transport).await;
    let mut c = TcpStream::connect(s.listener("decl.default:8081"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.write_all(GET.as_bytes()).await.unwrap();
    let out = closed_within(&mut c, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("GET /ok id=spiffe://"),
        "forwarded as HTTP with the caller's identity, not as opaque bytes: {text}"
    );
    let (_, metrics) = admin_get(s.client.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_protocol_detections_total{result=\"http1\"} 1")
            && metrics.contains("ferry_protocol_detections_total{result=\"timeout\"} 0"),
        "{metrics}"
    );
    s.still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_of_an_http_service_is_served_as_http_quic() {
    slow_client_of_an_http_service("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_of_an_http_service_is_served_as_http_h2() {
    slow_client_of_an_http_service("h2").await;
}

/// A client of a service declared HTTP that never sends a byte does not
/// hold the edge's drain for the 30 s it may wait: it is closed when the
/// edge shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_of_an_http_service_does_not_hold_the_drain() {
    let s = setup("h2").await;
    let mut c = TcpStream::connect(s.listener("decl.default:8081"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), s.client.shutdown())
        .await
        .expect("the edge drains without waiting for the silent client");
    assert!(start.elapsed() < Duration::from_secs(3));
    closed_within(&mut c, Duration::from_secs(1)).await;
    s.server.shutdown().await;
}
