//! Bad input on the tunnel port: garbage UDP and TCP, silent connections,
//! TLS clients with the wrong ALPN, malformed and oversized CONNECTs, and
//! CONNECTs to closed ports. After each, the server must still serve normal
//! CONNECT streams over both transports.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_transport::tls::{TlsConfigs, ALPN_H2};
use ferry_transport::tunnel::{PeerKey, TunnelClient, TunnelConfig, TunnelError, TunnelServer};
use ferry_transport::TransportKind;
use prometheus_client::registry::Registry;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);

struct Setup {
    server: TunnelServer,
    server_metrics: Registry,
    quic: TunnelClient,
    h2: TunnelClient,
    client_tls: Arc<TlsConfigs>,
    peer: PeerKey,
    echo: SocketAddr,
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn clients(&self) -> [(&TunnelClient, TransportKind); 2] {
        [
            (&self.quic, TransportKind::Quic),
            (&self.h2, TransportKind::H2),
        ]
    }

    /// The server still serves: an echo stream on each transport over the
    /// pooled connection, then over a fresh connection.
    async fn assert_serving(&self, after: &str) {
        for (client, kind) in self.clients() {
            for fresh in [false, true] {
                if fresh {
                    client.forget(&self.peer);
                }
                let msg = format!("still serving after {after} ({kind:?}, fresh: {fresh})");
                let got = tokio::time::timeout(
                    Duration::from_secs(5),
                    echo_once(client, &self.peer, self.echo, msg.as_bytes()),
                )
                .await
                .unwrap_or_else(|_| panic!("echo over {kind:?} after {after} hung"))
                .unwrap_or_else(|e| panic!("echo over {kind:?} after {after} failed: {e}"));
                assert_eq!(got, kind);
            }
        }
    }
}

async fn setup() -> Setup {
    init();
    let pki = Pki::new("test.local");
    let (stls, server_metrics) = tls_with_registry(pki.store(SERVER_ID, &[]));
    let (server, _seen) = connect_server(
        stls,
        TunnelConfig {
            handshake_timeout: SERVER_HANDSHAKE_TIMEOUT,
            ..test_config()
        },
    )
    .await;
    let client_tls = tls(pki.store(CLIENT_ID, &[]));
    let client = |kind| {
        TunnelClient::new(
            client_tls.clone(),
            TunnelConfig {
                force_transport: Some(kind),
                ..test_config()
            },
        )
        .unwrap()
    };
    let s = Setup {
        peer: PeerKey::new(server.local_addr(), id(SERVER_ID)),
        quic: client(TransportKind::Quic),
        h2: client(TransportKind::H2),
        client_tls: client_tls.clone(),
        server,
        server_metrics,
        echo: echo_server().await,
    };
    s.assert_serving("setup").await;
    s
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut b = vec![0u8; len];
    Xorshift::new(seed).fill(&mut b);
    b
}

/// Reads until the server closes (EOF or error); returns what was read and
/// how long it took. Panics if the server keeps the connection open.
async fn read_until_closed<R: AsyncReadExt + Unpin>(r: &mut R, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, r.read(&mut buf)).await {
            Err(_) => panic!(
                "server kept the connection open for {within:?} (read {} bytes)",
                got.len()
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_udp_datagrams() {
    let s = setup().await;
    let sock = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let mut datagrams: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0xff],
        random(1, 1),
        random(7, 2),
        random(20, 3),
        random(100, 4),
        random(1199, 5),
        random(1200, 6),
        random(1350, 7),
        random(1500, 8),
        random(9000, 9),
        vec![0u8; 1500],
    ];
    // Fake QUIC long headers: an Initial (version 1) with plausible
    // connection IDs and a garbage, undecryptable payload; the same padded
    // to 1200 bytes (a size a server must consider); and an unknown version
    // (the server may answer with Version Negotiation).
    for (first, version, len) in [
        (0xc3u8, 0x0000_0001u32, 64usize),
        (0xc3, 0x0000_0001, 1200),
        (0xc0, 0x1a2a_3a4a, 1200),
        (0xe0, 0x0000_0001, 1200), // a 0-RTT packet out of nowhere
        (0xf0, 0x0000_0001, 1200), // a Retry sent to a server
    ] {
        let mut p = vec![first];
        p.extend_from_slice(&version.to_be_bytes());
        p.push(8);
        p.extend_from_slice(&random(8, 10));
        p.push(8);
        p.extend_from_slice(&random(8, 11));
        p.push(0); // token length
        p.extend_from_slice(&[0x44, 0x00]); // length (varint), wrong on purpose
        let pad = len.saturating_sub(p.len());
        p.extend_from_slice(&random(pad, 12));
        datagrams.push(p);
    }
    // A short-header packet for a connection that does not exist.
    let mut short = vec![0x40];
    short.extend_from_slice(&random(60, 13));
    datagrams.push(short);
    for round in 0..5 {
        for d in &datagrams {
            sock.send_to(d, s.addr()).await.unwrap();
        }
        // Random sizes too.
        for k in 0..50u64 {
            let len = 1 + (random(2, round * 100 + k + 1)[0] as usize) * 6;
            sock.send_to(&random(len, round * 1000 + k), s.addr())
                .await
                .unwrap();
        }
    }
    // Whatever the server answers (version negotiation, stateless reset),
    // it must not be a connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open_quic = "ferry_transport_open_connections{transport=\"quic\",side=\"server\"}";
    assert!(
        wait_until(Duration::from_secs(2), || metric(
            &s.server_metrics,
            open_quic
        ) == 1)
        .await,
        "only the good QUIC client's connection is open: {}",
        metric(&s.server_metrics, open_quic)
    );
    assert_eq!(
        handshakes(&s.server_metrics, "quic", "server", "ok"),
        2,
        "only the good client's two handshakes"
    );
    s.assert_serving("garbage UDP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tcp() {
    let s = setup().await;

    // Random bytes, then close.
    for (len, seed) in [(1usize, 1u64), (5, 2), (100, 3), (5000, 4), (100_000, 5)] {
        let mut t = dial(s.addr()).await;
        let _ = t.write_all(&random(len, seed)).await;
        let _ = t.shutdown().await;
        let got = read_until_closed(&mut t, Duration::from_secs(2)).await;
        // At most a TLS alert comes back.
        assert!(got.len() < 64, "{len} random bytes got {got:?}");
    }
    // Random bytes and an abrupt close (RST).
    let mut t = dial(s.addr()).await;
    t.write_all(&random(3000, 6)).await.unwrap();
    socket2::SockRef::from(&t)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(t);
    // A TLS record header announcing more than is sent, then close.
    let mut t = dial(s.addr()).await;
    t.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    t.shutdown().await.unwrap();
    read_until_closed(&mut t, Duration::from_secs(2)).await;

    // Plaintext HTTP/1.1.
    let mut t = dial(s.addr()).await;
    t.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut t, Duration::from_secs(2)).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/"),
        "plaintext HTTP was answered: {got:?}"
    );
    // A plaintext CONNECT, as a forward proxy would get.
    let mut t = dial(s.addr()).await;
    let target = s.echo.to_string();
    t.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_until_closed(&mut t, Duration::from_secs(2)).await;
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/"), "{got:?}");
    // The HTTP/2 preface in plaintext (h2c prior knowledge).
    let mut t = dial(s.addr()).await;
    t.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut t, Duration::from_secs(2)).await;

    // A connection that sends nothing: the handshake timeout closes it.
    let timeouts_before = handshakes(&s.server_metrics, "h2", "server", "timeout");
    let mut t = dial(s.addr()).await;
    let t0 = Instant::now();
    let got = read_until_closed(&mut t, Duration::from_secs(2)).await;
    let waited = t0.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(
        waited >= SERVER_HANDSHAKE_TIMEOUT - Duration::from_millis(50),
        "closed after {waited:?}, before the handshake timeout"
    );
    assert_eq!(
        handshakes(&s.server_metrics, "h2", "server", "timeout"),
        timeouts_before + 1
    );

    s.assert_serving("garbage TCP").await;
}

/// A TLS client with a valid certificate from the same CA but the wrong
/// (or no) ALPN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_without_h2_alpn_is_not_served() {
    let s = setup().await;
    let server_id = id(SERVER_ID);
    let connect = |cfg: Arc<rustls::ClientConfig>| {
        let addr = s.addr();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(cfg)
                .connect(
                    rustls_pki_types::ServerName::IpAddress(addr.ip().into()),
                    tcp,
                )
                .await
        }
    };

    // ALPN http/1.1 only: rustls refuses the handshake (no_application_protocol).
    let http11 = s.client_tls.client(&server_id, b"http/1.1");
    assert_eq!(http11.alpn_protocols, vec![b"http/1.1".to_vec()]);
    match tokio::time::timeout(Duration::from_secs(2), connect(http11))
        .await
        .expect("handshake ends promptly")
    {
        Err(e) => eprintln!("http/1.1-only client refused: {e}"),
        Ok(mut tls) => {
            // If the handshake went through, the server must not serve it.
            let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let got = read_until_closed(&mut tls, Duration::from_secs(2)).await;
            assert!(got.is_empty(), "http/1.1 client was served: {got:?}");
        }
    }

    // No ALPN at all: the handshake completes, then the server closes.
    let rejected_before = handshakes(&s.server_metrics, "h2", "server", "rejected");
    let mut none = (*s.client_tls.client(&server_id, ALPN_H2)).clone();
    none.alpn_protocols.clear();
    match tokio::time::timeout(Duration::from_secs(2), connect(Arc::new(none)))
        .await
        .expect("handshake ends promptly")
    {
        Err(e) => eprintln!("no-ALPN client refused: {e}"),
        Ok(mut tls) => {
            assert_eq!(tls.get_ref().1.alpn_protocol(), None);
            // An HTTP/2 preface and SETTINGS must not get an answer.
            let _ = tls
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await;
            let got = read_until_closed(&mut tls, Duration::from_secs(2)).await;
            assert!(got.is_empty(), "no-ALPN client was served: {got:?}");
            assert!(
                wait_until(Duration::from_secs(1), || handshakes(
                    &s.server_metrics,
                    "h2",
                    "server",
                    "rejected"
                ) == rejected_before + 1)
                .await,
                "server counted the no-ALPN handshake as rejected"
            );
        }
    }

    s.assert_serving("TLS clients without h2").await;
}

/// Sends `req` and returns the response head and body text.
async fn request(
    client: &TunnelClient,
    peer: &PeerKey,
    req: http::Request<()>,
) -> Result<(http::Response<()>, String), TunnelError> {
    let opened = client.open(peer, &req).await?;
    let _send = opened.send; // keep the request side open until the answer
    let (resp, mut body) = tokio::time::timeout(Duration::from_secs(5), opened.response.response())
        .await
        .expect("response arrives")?;
    let mut text = Vec::new();
    while let Ok(Some(b)) = tokio::time::timeout(Duration::from_secs(5), body.data())
        .await
        .expect("body ends")
    {
        text.extend_from_slice(&b);
    }
    Ok((resp, String::from_utf8_lossy(&text).into_owned()))
}

fn ferry_error(resp: &http::Response<()>) -> Option<&str> {
    resp.headers()
        .get("ferry-error")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connect_authority_and_wrong_method() {
    let s = setup().await;
    for (client, kind) in s.clients() {
        for authority in ["not-an-address:80", "1.2.3.4", "localhost:5432", "[::1]"] {
            let req = http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(authority)
                .body(())
                .unwrap();
            let (resp, text) = request(client, &s.peer, req)
                .await
                .unwrap_or_else(|e| panic!("CONNECT {authority} over {kind:?}: {e}"));
            assert_eq!(
                resp.status(),
                http::StatusCode::BAD_REQUEST,
                "CONNECT {authority} over {kind:?}: {text}"
            );
            assert_eq!(ferry_error(&resp), Some("malformed"), "{kind:?}");
        }
        let req = http::Request::builder()
            .method(http::Method::GET)
            .uri(format!("https://{}/", s.echo))
            .body(())
            .unwrap();
        let (resp, text) = request(client, &s.peer, req).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::BAD_REQUEST, "{text}");
        assert_eq!(ferry_error(&resp), Some("malformed"));
        assert!(text.contains("expected CONNECT"), "{text}");
        // The refused streams did not cost the connection.
        assert_eq!(client.pooled(&s.peer).len(), 1, "{kind:?}");
    }
    s.assert_serving("malformed CONNECTs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers() {
    let s = setup().await;
    let big = "x".repeat(100 << 10);
    for (client, kind) in s.clients() {
        // A stream in flight on the same connection before the bad one.
        let mut live = client
            .connect_tcp(&s.peer, s.echo, &Default::default())
            .await
            .unwrap();
        assert_eq!(live.transport, kind);
        let conns_before = client.pooled(&s.peer);
        assert_eq!(conns_before.len(), 1);

        let req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(s.echo.to_string())
            .header("x-big", big.as_str())
            .body(())
            .unwrap();
        match request(client, &s.peer, req).await {
            Ok((resp, _)) => assert_eq!(
                resp.status(),
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "oversized CONNECT over {kind:?} was answered"
            ),
            Err(e) => eprintln!("oversized CONNECT over {kind:?} failed: {e}"),
        }

        // The stream in flight is unaffected ...
        live.send
            .send_data(bytes::Bytes::from_static(b"after the big header"))
            .await
            .unwrap_or_else(|e| panic!("live stream over {kind:?} broken: {e}"));
        live.send.finish().await.unwrap();
        let mut got = Vec::new();
        while let Some(b) = live
            .recv
            .data()
            .await
            .unwrap_or_else(|e| panic!("live stream over {kind:?} broken: {e}"))
        {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"after the big header");
        // ... and so is the connection: still the same one, still open.
        let conns_after = client.pooled(&s.peer);
        assert_eq!(conns_after.len(), 1, "{kind:?}: {conns_after:?}");
        assert!(!conns_before[0].is_closed(), "{kind:?} connection closed");
        let echoed = echo_once(client, &s.peer, s.echo, b"same connection")
            .await
            .unwrap();
        assert_eq!(echoed, kind);
        assert_eq!(client.pooled(&s.peer).len(), 1);
    }
    s.assert_serving("oversized headers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_closed_port_is_502() {
    let s = setup().await;
    let closed = {
        let l = std::net::TcpListener::bind(loopback()).unwrap();
        l.local_addr().unwrap()
    };
    for (client, kind) in s.clients() {
        match client
            .connect_tcp(&s.peer, closed, &Default::default())
            .await
        {
            Err(TunnelError::Refused { status, detail }) => {
                assert_eq!(status, http::StatusCode::BAD_GATEWAY, "{kind:?}");
                assert_eq!(detail, "upstream_refused", "{kind:?}");
            }
            Err(e) => panic!("CONNECT to a closed port over {kind:?}: {e}"),
            Ok(_) => panic!("CONNECT to a closed port over {kind:?} succeeded"),
        }
        assert_eq!(client.pooled(&s.peer).len(), 1, "{kind:?}");
    }
    s.assert_serving("CONNECT to a closed port").await;
}

/// The QUIC client refuses oversized headers itself (the server's
/// SETTINGS_MAX_FIELD_SECTION_SIZE), so the server's own limit is checked
/// with a hand-made HEADERS frame on a raw stream of an otherwise normal
/// HTTP/3 connection that also carries a live CONNECT stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_on_raw_quic_stream() {
    use bytes::{Buf, Bytes};
    use ferry_transport::tls::ALPN_H3;
    use ferry_transport::tunnel::quic_endpoint;

    let s = setup().await;
    let cfg = test_config();
    let endpoint = quic_endpoint::client_endpoint(loopback(), &cfg).unwrap();
    let qcfg =
        quic_endpoint::client_config(s.client_tls.client(&id(SERVER_ID), ALPN_H3), &cfg).unwrap();
    let conn = endpoint
        .connect_with(qcfg, s.addr(), "127.0.0.1")
        .unwrap()
        .await
        .unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });

    // A live CONNECT stream on the connection.
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(s.echo.to_string())
        .body(())
        .unwrap();
    let mut live = send.send_request(req).await.unwrap();
    let resp = live.recv_response().await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);

    // CONNECT with a 100 KiB header value, QPACK-encoded by hand (static
    // table and literals only).
    let authority = s.echo.to_string();
    let mut block = vec![0x00, 0x00]; // required insert count 0, base 0
    block.push(0xc0 | 15); // indexed, static: :method CONNECT
    block.push(0x50); // literal with static name ref 0 (:authority)
    block.push(authority.len() as u8);
    block.extend_from_slice(authority.as_bytes());
    block.push(0x20 | 5); // literal name, 5 bytes
    block.extend_from_slice(b"x-big");
    let value_len = 100usize << 10;
    block.push(0x7f); // 7-bit prefix integer, continued
    let mut rest = value_len - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend(std::iter::repeat_n(b'x', value_len));
    let mut frame = vec![0x01]; // HEADERS
    frame.extend_from_slice(&(0x8000_0000u32 | block.len() as u32).to_be_bytes());
    frame.extend_from_slice(&block);
    let (mut raw_send, mut raw_recv) = conn.open_bi().await.unwrap();
    raw_send.write_all(&frame).await.unwrap();
    let _ = raw_send.finish();
    let answer = tokio::time::timeout(Duration::from_secs(5), raw_recv.read_to_end(1 << 20))
        .await
        .expect("the oversized stream ends promptly");
    match answer {
        Ok(bytes) => {
            // A HEADERS frame whose :status is 431, as a plain or a
            // Huffman-coded (0x69 0x90 0xff) literal.
            assert_eq!(bytes.first(), Some(&0x01), "not a HEADERS frame: {bytes:?}");
            assert!(
                bytes
                    .windows(3)
                    .any(|w| w == b"431" || w == [0x69, 0x90, 0xff]),
                "expected a 431 response, got {bytes:?}"
            );
        }
        Err(e) => eprintln!("oversized raw HTTP/3 request reset: {e}"),
    }

    // The live stream and the connection are unaffected.
    live.send_data(Bytes::from_static(b"still alive"))
        .await
        .unwrap();
    live.finish().await.unwrap();
    let mut got = Vec::new();
    while let Some(mut b) = live.recv_data().await.unwrap() {
        got.extend_from_slice(&b.copy_to_bytes(b.remaining()));
    }
    assert_eq!(got, b"still alive");
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(s.echo.to_string())
        .body(())
        .unwrap();
    let mut again = send.send_request(req).await.unwrap();
    assert_eq!(
        again.recv_response().await.unwrap().status(),
        http::StatusCode::OK
    );
    again.finish().await.unwrap();
    while again.recv_data().await.unwrap().is_some() {}
    conn.close(0u32.into(), b"done");
    s.assert_serving("a raw oversized HTTP/3 request").await;
}

/// A request the client cannot send as asked (no authority, or a Host
/// header contradicting it) fails on its own: the connection and its other
/// streams are unaffected, and no new connection is dialed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsendable_request_fails_alone() {
    let s = setup().await;
    for (client, kind) in s.clients() {
        let mut live = client
            .connect_tcp(&s.peer, s.echo, &Default::default())
            .await
            .unwrap();
        let conn = client.pooled(&s.peer)[0].clone();
        let bad = [
            http::Request::builder()
                .method(http::Method::GET)
                .uri("/")
                .body(())
                .unwrap(),
            http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(s.echo.to_string())
                .header(http::header::HOST, "elsewhere:1")
                .body(())
                .unwrap(),
        ];
        for req in bad {
            let what = format!("{} {} over {kind:?}", req.method(), req.uri());
            match client.open(&s.peer, &req).await {
                // HTTP/2 sends both: the server refuses the GET and (it
                // goes by :authority) connects the CONNECT.
                Ok(opened) => {
                    let (resp, _body) =
                        tokio::time::timeout(Duration::from_secs(5), opened.response.response())
                            .await
                            .expect("response arrives")
                            .unwrap();
                    eprintln!("{what}: sent, answered {}", resp.status());
                }
                Err(e) => eprintln!("{what}: refused locally: {e}"),
            }
            assert!(!conn.is_closed(), "{what} closed the connection");
            let pooled = client.pooled(&s.peer);
            assert_eq!(pooled.len(), 1, "{what}: {pooled:?}");
        }
        live.send
            .send_data(bytes::Bytes::from_static(b"live"))
            .await
            .unwrap_or_else(|e| panic!("live stream over {kind:?} broken: {e}"));
        live.send.finish().await.unwrap();
        let mut got = Vec::new();
        while let Some(b) = live.recv.data().await.unwrap() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"live");
    }
    s.assert_serving("unsendable requests").await;
}
