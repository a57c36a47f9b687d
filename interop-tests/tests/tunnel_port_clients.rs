//! Third-party clients of a Ferry edge's tunnel port (one port number, UDP
//! and TCP):
//! - aioquic: HTTP/3 over QUIC (ALPN h3), a plain RFC 9114 `CONNECT`;
//! - Python `h2` over TLS 1.3/TCP (ALPN h2), an RFC 9113 `CONNECT`.
//!
//! Each, with a client certificate from the mesh CA, reaches a TCP echo
//! application behind the edge (`:authority` = its `ip:port`), checks the
//! edge's SPIFFE ID, and gets 1 MiB echoed intact (digests compared at the
//! client and at the application). Without a client certificate, or with
//! one from another CA (same trust domain), the handshake is refused,
//! nothing reaches the application, and the edge counts the rejection with
//! its reason.

use std::time::Duration;

use interop_tests::apps::TcpEcho;
use interop_tests::connect_client::{connect, Client, Connect};
use interop_tests::edge::{Edge, EdgeSpec};
use interop_tests::pki::Pki;

const TD: &str = "interop.test";
const SIZE: usize = 1 << 20;

fn tunnel_port_client(which: Client, transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::create(&d.join("ca"), TD);
    let server = pki.issue("server", &d.join("server"));
    let client = pki.issue("client", &d.join("client"));
    let other = Pki::create(&d.join("other-ca"), TD);
    let stranger = other.issue("client", &d.join("stranger"));
    let mesh = d.join("mesh.toml");
    std::fs::write(&mesh, "").unwrap();

    let app = TcpEcho::loopback();
    let edge = Edge::start(&EdgeSpec::new("server", &server, &mesh), d, None);
    let ca = pki.ca_cert();
    let exchange = |id| Connect {
        tunnel: edge.tunnel,
        authority: app.addr,
        ca: &ca,
        expect_id: &server.id,
        client: id,
        size: SIZE,
    };

    // A mesh certificate: connected, echoed, recorded by the application.
    let r = connect(which, &exchange(Some(&client)));
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["server_id"], server.id.as_str(), "{r}");
    assert_eq!(r["hello"], "hello", "an interactive round trip: {r}");
    assert_eq!(r["received"], SIZE, "{r}");
    assert_eq!(r["received_sha256"], r["sent_sha256"], "{r}");
    let got = app.wait_finished(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "one connection reached the application");
    assert_eq!(got[0].bytes, 5 + SIZE as u64);
    assert_eq!(got[0].sha256, r["sent_sha256"].as_str().unwrap());
    let inbound = [("direction", "inbound"), ("transport", transport)];
    assert_eq!(edge.metric("ferry_tcp_connections_total", &inbound), 1.0);
    assert_eq!(
        edge.metric(
            "ferry_tcp_bytes_total",
            &[inbound[0], inbound[1], ("flow", "sent")]
        ),
        (5 + SIZE) as f64,
        "bytes handed to the application"
    );

    // Refused: no client certificate, then one from another CA.
    for (id, reason) in [(None, "no_certificate"), (Some(&stranger), "untrusted")] {
        let r = connect(which, &exchange(id));
        assert_eq!(r["outcome"], "refused", "{reason}: {r}");
        assert_eq!(r["received"], 0, "{r}");
        match which {
            Client::Aioquic => {
                let code = r["error_code"].as_u64().unwrap_or(0);
                assert!(
                    (0x100..0x200).contains(&code),
                    "{reason}: a QUIC CRYPTO_ERROR (a TLS alert), got {r}"
                );
            }
            Client::H2 => {
                let detail = r["detail"].as_str().unwrap_or_default().to_lowercase();
                assert!(
                    detail.contains("alert") || detail.contains("reset") || detail.contains("eof"),
                    "{reason}: a TLS alert or a closed connection, got {r}"
                );
            }
        }
        assert_eq!(
            edge.metric(
                "ferry_tls_rejections_total",
                &[("side", "server"), ("reason", reason)]
            ),
            1.0,
            "{reason}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        app.finished().len(),
        1,
        "refused clients never reach the app"
    );
}

#[test]
fn aioquic_http3_connect() {
    tunnel_port_client(Client::Aioquic, "quic");
}

#[test]
fn python_h2_connect_over_tls_fallback() {
    tunnel_port_client(Client::H2, "h2");
}
