//! Two edges on 127.0.0.1 (real listeners, port 0), applications behind
//! them, for each transport: HTTP/1.1 (keep-alive, chunked, expect
//! 100-continue), h2c with trailers, opaque TCP with half-close, a
//! server-speaks-first port, authorization, failures answered with the
//! documented status, and the admin endpoints.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    mesh: Mesh,
    client: ferry_edge::RunningEdge,
    server: ferry_edge::RunningEdge,
    client_id: ferry_transport::identity::SpiffeId,
}

/// Server edge "api" with an HTTP app (web:8080), a TCP echo app
/// (echo:9000) and a banner app (smtp:25); client edge "web" with one
/// listener per service.
async fn setup(transport: &'static str, server_extra: &str) -> Setup {
    let mesh = Mesh::new();
    let http = http_app().await;
    let echo = tcp_echo_app().await;
    let banner = banner_app(b"220 banner ready\r\n").await;
    let empty = mesh.write("empty-mesh.toml", "");
    let server = start_edge(
        &mesh,
        "api",
        &empty,
        &EdgeOpts {
            force_transport: Some(transport),
            extra: server_extra.to_string(),
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
                name: "echo",
                port: 9000,
                protocol: "auto",
                endpoints: vec![(echo, server.tunnel, api_id.clone())],
            },
            Svc {
                name: "smtp",
                port: 25,
                protocol: "auto",
                endpoints: vec![(banner, server.tunnel, api_id.clone())],
            },
            Svc {
                name: "empty",
                port: 80,
                protocol: "auto",
                endpoints: vec![],
            },
            Svc {
                name: "dead",
                port: 81,
                protocol: "auto",
                endpoints: vec![(http, "127.0.0.1:9".parse().unwrap(), api_id.clone())],
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
                "echo.default:9000".into(),
                "smtp.default:25".into(),
                "empty.default:80".into(),
                "dead.default:81".into(),
                "missing.default:1".into(),
            ],
            force_transport: Some(transport),
            outbound_extra: "detect_timeout = \"3s\"\nconnect_timeout = \"2s\"\n".into(),
            ..Default::default()
        },
    )
    .await;
    let (client_id, _) = (
        ferry_transport::identity::SpiffeId::parse(&format!("spiffe://{TD}/ns/default/sa/web"))
            .unwrap(),
        (),
    );
    Setup {
        mesh,
        client,
        server,
        client_id,
    }
}

fn listener(s: &Setup, service: &str) -> std::net::SocketAddr {
    s.client
        .outbound
        .iter()
        .find(|(_, n)| n == service)
        .unwrap()
        .0
}

async fn http1(transport: &'static str) {
    let s = setup(transport, "").await;
    let web = listener(&s, "web.default:8080");
    // Keep-alive: two requests on one connection, the second chunked, and a
    // spoofed identity header that must not reach the application. A
    // `ferry-protocol` from the application must not steer the far edge
    // (HTTP/1.1 travels without one): the app still sees HTTP/1.1.
    let mut c = TcpStream::connect(web).await.unwrap();
    c.write_all(b"GET /one?a=1&b=%20 HTTP/1.1\r\nHost: web.default:8080\r\nx-ferry-client-id: spiffe://evil/ns/x/sa/y\r\nferry-protocol: h2c\r\n\r\n")
        .await
        .unwrap();
    let first = read_http1_response(&mut c).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.contains(&format!("GET /one?a=1&b=%20 id={} v=HTTP/1.1", s.client_id)),
        "{first}"
    );
    assert!(
        !first.contains("evil"),
        "spoofed identity stripped: {first}"
    );
    c.write_all(b"POST /two HTTP/1.1\r\nHost: web.default:8080\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut rest = String::new();
    c.read_to_string(&mut rest).await.unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(
        rest.contains("POST /two id=") && rest.contains("hello world"),
        "{rest}"
    );

    // Expect: 100-continue.
    let mut c = TcpStream::connect(web).await.unwrap();
    c.write_all(b"PUT /exp HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    c.write_all(b"data").await.unwrap();
    let mut rest = String::new();
    c.read_to_string(&mut rest).await.unwrap();
    assert!(rest.contains("PUT /exp") && rest.contains("data"), "{rest}");

    // The request went over the forced transport.
    let (_, metrics) = admin_get(s.client.admin, "/metrics").await;
    let line = format!("ferry_requests_total{{direction=\"outbound\",transport=\"{transport}\",status_class=\"2xx\"}}");
    assert!(
        metrics.lines().any(|l| l.starts_with(&line)),
        "{line} missing in\n{metrics}"
    );
    let (_, metrics) = admin_get(s.server.admin, "/metrics").await;
    let line = format!("ferry_requests_total{{direction=\"inbound\",transport=\"{transport}\",status_class=\"2xx\"}}");
    assert!(
        metrics.lines().any(|l| l.starts_with(&line)),
        "{line} missing in\n{metrics}"
    );
    drop(s.mesh);
}

async fn read_http1_response(c: &mut TcpStream) -> String {
    // Reads one response with Content-Length (what hyper sends for a Full body).
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut tmp))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keepalive_chunked_expect_quic() {
    http1("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keepalive_chunked_expect_h2() {
    http1("h2").await;
}

async fn h2c_trailers(transport: &'static str) {
    let s = setup(transport, "").await;
    let web = listener(&s, "web.default:8080");
    let tcp = TcpStream::connect(web).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    use http_body_util::BodyExt;
    let req = http::Request::post("http://web.default:8080/trailers?q=1")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"ping",
        )))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("x-trailer").unwrap(), "yes");
    let body = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
    assert!(
        body.contains("POST /trailers?q=1 ")
            && body.contains("v=HTTP/2.0")
            && body.ends_with("ping"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_trailers_quic() {
    h2c_trailers("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_trailers_h2() {
    h2c_trailers("h2").await;
}

async fn opaque_tcp(transport: &'static str) {
    let s = setup(transport, "").await;
    // Client speaks first with non-HTTP bytes: detected as opaque at once.
    let mut c = TcpStream::connect(listener(&s, "echo.default:9000"))
        .await
        .unwrap();
    c.write_all(b"\x00\x01binary protocol").await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"\x00\x01binary protocol");

    // Server speaks first on a server-first port: no detection stall even
    // though the detection timeout is 3 s.
    let start = Instant::now();
    let mut c = TcpStream::connect(listener(&s, "smtp.default:25"))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"220 banner ready\r\n");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "banner took {:?}",
        start.elapsed()
    );

    let (_, metrics) = admin_get(s.client.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_protocol_detections_total{result=\"server_first\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_protocol_detections_total{result=\"opaque\"} 1"),
        "{metrics}"
    );
    let line =
        format!("ferry_tcp_connections_total{{direction=\"outbound\",transport=\"{transport}\"}}");
    assert!(metrics.lines().any(|l| l.starts_with(&line)), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_and_server_first_quic() {
    opaque_tcp("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_and_server_first_h2() {
    opaque_tcp("h2").await;
}

async fn authz(transport: &'static str) {
    // Only some other identity may call the application ports.
    let mesh_http_port_policy = |port: u16| {
        format!("[[inbound.ports]]\nport = {port}\nallow_ids = [\"spiffe://{TD}/ns/default/sa/someone-else\"]\n")
    };
    // Simpler and exact: start apps, then a server edge whose policy names their ports.
    let mesh = Mesh::new();
    let http = http_app().await;
    let echo = tcp_echo_app().await;
    let empty = mesh.write("empty-mesh.toml", "");
    let extra = mesh_http_port_policy(http.port()) + &mesh_http_port_policy(echo.port());
    let server = start_edge(
        &mesh,
        "api",
        &empty,
        &EdgeOpts {
            force_transport: Some(transport),
            extra,
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
                name: "echo",
                port: 9000,
                protocol: "tcp",
                endpoints: vec![(echo, server.tunnel, api_id.clone())],
            },
        ]),
    );
    let client = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["web.default:8080".into(), "echo.default:9000".into()],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let web = client.outbound[0].0;
    let resp = http1_raw(
        web,
        "GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("ferry-error: forbidden"),
        "{resp}"
    );

    // The denied connection is reset so fast that even connect() may
    // already report it.
    if let Ok(mut c) = TcpStream::connect(client.outbound[1].0).await {
        let _ = c.write_all(b"hello").await;
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "denied TCP must be closed, got {r:?}"
        );
    }

    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_authz_denied_total{kind=\"http\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_authz_denied_total{kind=\"tcp\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_denies_http_and_tcp_quic() {
    authz("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_denies_http_and_tcp_h2() {
    authz("h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_answered_not_hung() {
    let s = setup("quic", "").await;
    let get = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let resp = http1_raw(listener(&s, "empty.default:80"), get).await;
    assert!(
        resp.starts_with("HTTP/1.1 503") && resp.contains("ferry-error: no_endpoints"),
        "{resp}"
    );
    let resp = http1_raw(listener(&s, "missing.default:1"), get).await;
    assert!(
        resp.starts_with("HTTP/1.1 503") && resp.contains("ferry-error: no_endpoints"),
        "{resp}"
    );
    let start = Instant::now();
    let resp = http1_raw(listener(&s, "dead.default:81"), get).await;
    assert!(
        resp.starts_with("HTTP/1.1 502") || resp.starts_with("HTTP/1.1 504"),
        "{resp}"
    );
    assert!(resp.contains("ferry-error: "), "{resp}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "answered in {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let s = setup("quic", "").await;
    let resp = http1_raw(
        listener(&s, "web.default:8080"),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(admin_get(s.client.admin, "/ready").await.0, 200);
    assert_eq!(admin_get(s.client.admin, "/live").await.0, 200);
    let (status, cfg) = admin_get(s.client.admin, "/config").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(v["identity"]["id"], s.client_id.to_string());
    // This test's runtime has two workers.
    assert_eq!(v["runtime"]["threads"], 2);
    assert!(v["discovery"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["authority"] == "web.default:8080"));
    let (status, metrics) = admin_get(s.client.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE ferry_request_duration_seconds histogram"),
        "{metrics}"
    );
    // The request went over QUIC: the path to the server edge is exposed.
    let rtt = format!(
        "ferry_transport_quic_rtt_seconds{{side=\"client\",peer=\"{}\"}} ",
        s.mesh.identity("api").0
    );
    assert!(metrics.contains(&rtt), "no {rtt:?} in {metrics}");
    let sent = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "ferry_transport_quic_datagrams_total{side=\"client\",direction=\"sent\"} ",
            )
        })
        .and_then(|v| v.parse::<u64>().ok());
    assert!(sent.is_some_and(|n| n > 0), "{metrics}");
    assert_eq!(admin_get(s.client.admin, "/nope").await.0, 404);
    assert_eq!(admin_req(s.client.admin, "GET", "/shutdown").await.0, 405);
    let token = s.client.shutdown_token();
    assert_eq!(admin_req(s.client.admin, "POST", "/shutdown").await.0, 200);
    assert!(token.is_cancelled());
}
