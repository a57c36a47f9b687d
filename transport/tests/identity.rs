//! End-to-end identity tests of the tunnel over real sockets on 127.0.0.1,
//! for each transport: who is refused, why (the client's error and the
//! `ferry_tls_rejections_total{side,reason}` counter of the side that
//! refused), that refused peers never reach the stream handler, federation,
//! and certificate rotation under a live stream.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_transport::identity::pki::{CertificateAuthority, IssuedCert};
use ferry_transport::identity::{IdentityFiles, IdentityStore, Material, TrustBundles};
use ferry_transport::metrics::{encode_text, TransportMetrics};
use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::{
    ConnectMeta, PeerKey, TcpTunnel, TunnelClient, TunnelConfig, TunnelError, TunnelServer,
};
use ferry_transport::TransportKind;
use prometheus_client::registry::Registry;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use support::*;

const TD: &str = "test.local";
const OTHER_TD: &str = "other.local";
const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";
const OTHER_CLIENT_ID: &str = "spiffe://other.local/ns/payments/sa/api";

/// How long a refused connection attempt may take at most.
const FAIL_WITHIN: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A trust domain's CA.
fn new_ca(td: &str) -> CertificateAuthority {
    Pki::new(td).ca
}

/// A leaf for `id`, valid now for an hour.
fn leaf(ca: &CertificateAuthority, id_str: &str) -> IssuedCert {
    ca.issue(&id(id_str), Duration::from_secs(3600)).unwrap()
}

/// A leaf for `id` that expired an hour ago.
fn expired_leaf(ca: &CertificateAuthority, id_str: &str) -> IssuedCert {
    let now = time::OffsetDateTime::now_utc();
    ca.issue_with_validity(
        &id(id_str),
        now - time::Duration::hours(2),
        now - time::Duration::hours(1),
    )
    .unwrap()
}

/// The leaf certificate (DER) of an issued chain.
fn leaf_der(issued: &IssuedCert) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(issued.cert_chain_pem.as_bytes())
        .next()
        .expect("a certificate")
        .unwrap()
}

/// A store presenting `issued` and trusting exactly the CAs in `trusted`.
fn store(issued: &IssuedCert, trusted: &[&CertificateAuthority]) -> Arc<IdentityStore> {
    let mut bundles = TrustBundles::default();
    for ca in trusted {
        bundles.add_pem(ca.cert_pem().as_bytes(), "test").unwrap();
    }
    IdentityStore::new(
        Material::from_pem(
            issued.cert_chain_pem.as_bytes(),
            "test-cert",
            issued.key_pem.as_bytes(),
            "test-key",
            bundles,
        )
        .unwrap(),
    )
}

/// TLS configs whose metrics are registered in their own registry.
fn metered(store: Arc<IdentityStore>) -> (Arc<TlsConfigs>, Registry) {
    let metrics = TransportMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    (TlsConfigs::new(store, metrics), registry)
}

/// Every non-zero `ferry_tls_rejections_total` series, as `side/reason`.
fn rejections(registry: &Registry) -> Vec<(String, u64)> {
    let text = encode_text(registry);
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("ferry_tls_rejections_total{side=\"") else {
            continue;
        };
        let (side, rest) = rest.split_once("\",reason=\"").expect("side then reason");
        let (reason, value) = rest.split_once("\"} ").expect("labels then value");
        let value: u64 = value.parse().expect("counter value");
        if value > 0 {
            out.push((format!("{side}/{reason}"), value));
        }
    }
    out
}

/// `ferry_tls_rejections_total{side, reason}`.
fn rejected(registry: &Registry, side: &str, reason: &str) -> u64 {
    rejections(registry)
        .into_iter()
        .find(|(k, _)| k == &format!("{side}/{reason}"))
        .map_or(0, |(_, v)| v)
}

/// Checks that the registry shows `side/reason` refusals and nothing else.
#[track_caller]
fn assert_only_rejection(registry: &Registry, side: &str, reason: &str) {
    let all = rejections(registry);
    assert!(
        !all.is_empty() && all.iter().all(|(k, _)| k == &format!("{side}/{reason}")),
        "expected only {side}/{reason} rejections, got {all:?}\n{}",
        encode_text(registry)
    );
}

/// Waits (briefly) until the registry shows a `side/reason` refusal.
async fn wait_for_rejection(registry: &Registry, side: &str, reason: &str) {
    let deadline = tokio::time::Instant::now() + FAIL_WITHIN;
    while rejected(registry, side, reason) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[track_caller]
fn assert_no_rejections(registry: &Registry, who: &str) {
    let all = rejections(registry);
    assert!(all.is_empty(), "{who} refused something: {all:?}");
}

fn client_cfg(kind: TransportKind) -> TunnelConfig {
    TunnelConfig {
        force_transport: Some(kind),
        handshake_timeout: Duration::from_secs(2),
        ..test_config()
    }
}

fn server_cfg() -> TunnelConfig {
    TunnelConfig {
        handshake_timeout: Duration::from_secs(2),
        ..test_config()
    }
}

/// A tunnel server forwarding CONNECT, with its metrics registry.
struct Server {
    server: TunnelServer,
    seen: Seen,
    registry: Registry,
}

impl Server {
    async fn start(store: Arc<IdentityStore>) -> Self {
        let (tls, registry) = metered(store);
        let (server, seen) = connect_server(tls, server_cfg()).await;
        Self {
            server,
            seen,
            registry,
        }
    }

    fn peer(&self, expected: &str) -> PeerKey {
        PeerKey::new(self.server.local_addr(), id(expected))
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// A tunnel client pinned to `kind`, with its metrics registry.
struct Client {
    client: TunnelClient,
    registry: Registry,
}

impl Client {
    fn new(store: Arc<IdentityStore>, kind: TransportKind) -> Self {
        let (tls, registry) = metered(store);
        Self {
            client: TunnelClient::new(tls, client_cfg(kind)).unwrap(),
            registry,
        }
    }

    /// A CONNECT to `target` through `peer`, bounded in time.
    async fn connect(&self, peer: &PeerKey, target: SocketAddr) -> Result<TcpTunnel, TunnelError> {
        tokio::time::timeout(
            FAIL_WITHIN,
            self.client
                .connect_tcp(peer, target, &ConnectMeta::default()),
        )
        .await
        .expect("connect_tcp finished in time")
    }
}

/// Sends `msg` on the tunnel and reads it back from the echo target.
async fn echo(t: &mut TcpTunnel, msg: &[u8]) {
    t.send.send_data(Bytes::copy_from_slice(msg)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < msg.len() {
        let chunk = tokio::time::timeout(Duration::from_secs(2), t.recv.data())
            .await
            .expect("echo arrives in time")
            .expect("stream still works")
            .expect("stream not ended");
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, msg, "echoed bytes");
}

/// Lets any stray stream reach the handler before checking that none did.
async fn assert_handler_never_ran(seen: &Seen) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        seen.ids().is_empty(),
        "a refused peer reached the stream handler: {:?}",
        seen.ids()
    );
}

/// Like [`assert_handler_never_ran`], for a server that had already served
/// `before` streams.
async fn assert_handler_never_ran_again(seen: &Seen, before: usize) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.ids().len(),
        before,
        "a refused peer reached the stream handler: {:?}",
        seen.ids()
    );
}

fn handshakes(registry: &Registry, kind: TransportKind, side: &str, result: &str) -> u64 {
    let t = match kind {
        TransportKind::Quic => "quic",
        TransportKind::H2 => "h2",
    };
    let key = format!(
        "ferry_transport_handshakes_total{{transport=\"{t}\",side=\"{side}\",result=\"{result}\"}} "
    );
    encode_text(registry)
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

// ---------------------------------------------------------------------------
// 1. The server is not the identity the client expects.
// ---------------------------------------------------------------------------

async fn wrong_server_identity(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let server = Server::start(store(&leaf(&ca, SERVER_ID), &[&ca])).await;
    let client = Client::new(store(&leaf(&ca, CLIENT_ID), &[&ca]), kind);
    let echo_addr = echo_server().await;

    let impostor_expected = "spiffe://test.local/ns/default/sa/database";
    let err = client
        .connect(&server.peer(impostor_expected), echo_addr)
        .await
        .err()
        .expect("connecting to the wrong identity must fail");
    assert!(
        matches!(err, TunnelError::Handshake { .. }),
        "a handshake error, got {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("NotValidForName") || text.to_lowercase().contains("identity"),
        "the client's error names the identity mismatch: {text}"
    );
    assert_eq!(rejected(&client.registry, "client", "wrong_identity"), 1);
    assert_only_rejection(&client.registry, "client", "wrong_identity");
    assert_eq!(handshakes(&client.registry, kind, "client", "rejected"), 1);
    assert_eq!(handshakes(&client.registry, kind, "client", "ok"), 0);
    assert_no_rejections(&server.registry, "the server");
    assert_handler_never_ran(&server.seen).await;
    assert!(client
        .client
        .pooled(&server.peer(impostor_expected))
        .is_empty());

    // The same client reaches the right identity on the same address.
    let mut t = client
        .connect(&server.peer(SERVER_ID), echo_addr)
        .await
        .unwrap();
    echo(&mut t, b"right server").await;
    assert_eq!(server.seen.ids(), [id(CLIENT_ID)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_identity_is_refused_by_client_quic() {
    wrong_server_identity(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_identity_is_refused_by_client_h2() {
    wrong_server_identity(TransportKind::H2).await;
}

// ---------------------------------------------------------------------------
// 2. A client without any certificate.
// ---------------------------------------------------------------------------

/// Accepts any server certificate (the attacker's client does not care).
#[derive(Debug)]
struct AcceptAnyServer(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A TLS 1.3 client config that presents no certificate and trusts anyone.
fn anonymous_client(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let provider = ferry_transport::crypto::provider();
    let algs = provider.signature_verification_algorithms;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(algs)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

fn connect_request(target: SocketAddr) -> http::Request<()> {
    http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(target.to_string())
        .body(())
        .unwrap()
}

/// TLS/TCP without a client certificate: completes the client's side of the
/// handshake, then waits for the server's first word. A server that accepted
/// us would speak HTTP/2 (its SETTINGS); one that refused us sends an alert.
async fn anonymous_tls_verdict(addr: SocketAddr) -> Result<usize, String> {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("tcp: {e}"))?;
    let mut tls = tokio_rustls::TlsConnector::from(anonymous_client(b"h2"))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(FAIL_WITHIN, tls.read(&mut buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(format!("tls: {e}")),
        Err(_) => Err("the server said nothing".into()),
    }
}

/// TLS/TCP + HTTP/2 without a client certificate: CONNECT to `target` and
/// wait for the response. `Ok` would mean the server served us.
async fn anonymous_h2(addr: SocketAddr, target: SocketAddr) -> Result<http::StatusCode, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("tcp: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(anonymous_client(b"h2"))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut send, conn) = h2::client::handshake(tls)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let (resp, mut body) = send
            .send_request(connect_request(target), false)
            .map_err(|e| format!("h2 request: {e}"))?;
        body.send_data(Bytes::from_static(b"anyone there?"), false)
            .map_err(|e| format!("h2 data: {e}"))?;
        let resp = tokio::time::timeout(FAIL_WITHIN, resp)
            .await
            .map_err(|_| "no h2 response".to_string())?
            .map_err(|e| format!("h2 response: {e}"))?;
        Ok(resp.status())
    }
    .await;
    driver.abort();
    result
}

/// QUIC + HTTP/3 without a client certificate, straight through quinn.
async fn anonymous_h3(addr: SocketAddr, target: SocketAddr) -> Result<http::StatusCode, String> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(anonymous_client(b"h3"))
        .map_err(|e| format!("quic config: {e}"))?;
    let endpoint = quinn::Endpoint::client(loopback()).map_err(|e| format!("endpoint: {e}"))?;
    let conn = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            addr,
            &addr.ip().to_string(),
        )
        .map_err(|e| format!("quic connect: {e}"))?
        .await
        .map_err(|e| format!("quic handshake: {e}"))?;
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .map_err(|e| format!("h3 setup: {e}"))?;
    let driver = tokio::spawn(async move {
        std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let result = async {
        let mut stream = send
            .send_request(connect_request(target))
            .await
            .map_err(|e| format!("h3 request: {e}"))?;
        stream
            .send_data(Bytes::from_static(b"anyone there?"))
            .await
            .map_err(|e| format!("h3 data: {e}"))?;
        let resp = stream
            .recv_response()
            .await
            .map_err(|e| format!("h3 response: {e}"))?;
        Ok(resp.status())
    }
    .await;
    driver.abort();
    endpoint.close(0u32.into(), b"done");
    result
}

async fn client_without_certificate(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let server = Server::start(store(&leaf(&ca, SERVER_ID), &[&ca])).await;
    let echo_addr = echo_server().await;

    // TLS 1.3: the server's refusal reaches the client as an alert after
    // the client's Finished; the alert names the reason.
    let (verdict, attempts) = match kind {
        TransportKind::Quic => (
            anonymous_h3(server.addr(), echo_addr)
                .await
                .expect_err("a client without a certificate must not get a response"),
            1,
        ),
        TransportKind::H2 => {
            let verdict = anonymous_tls_verdict(server.addr())
                .await
                .expect_err("the server must refuse a client without a certificate");
            // Going on regardless (HTTP/2 preface, CONNECT, data) gets
            // nowhere either.
            let err = anonymous_h2(server.addr(), echo_addr)
                .await
                .expect_err("a client without a certificate must not get a response");
            assert!(!err.is_empty());
            (verdict, 2)
        }
    };
    let lower = verdict.to_lowercase();
    assert!(
        lower.contains("certificaterequired")
            || lower.contains("certificate required")
            || lower.contains("no certificates"),
        "the client learns a certificate was required: {verdict}"
    );
    // The rejection and the handshake outcome are counted by the accepting
    // task, which may still be finishing when the client has its verdict.
    let deadline = tokio::time::Instant::now() + FAIL_WITHIN;
    while (rejected(&server.registry, "server", "no_certificate") < attempts
        || handshakes(&server.registry, kind, "server", "rejected") < attempts)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        rejected(&server.registry, "server", "no_certificate"),
        attempts
    );
    assert_only_rejection(&server.registry, "server", "no_certificate");
    assert_eq!(
        handshakes(&server.registry, kind, "server", "rejected"),
        attempts
    );
    assert_eq!(handshakes(&server.registry, kind, "server", "ok"), 0);
    assert_handler_never_ran(&server.seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused_quic() {
    client_without_certificate(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused_h2() {
    client_without_certificate(TransportKind::H2).await;
}

// ---------------------------------------------------------------------------
// 3. A client certificate from another CA of the same trust domain name.
// ---------------------------------------------------------------------------

async fn untrusted_ca_same_trust_domain(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let rogue = ca_named_like(TD);
    let server = Server::start(store(&leaf(&ca, SERVER_ID), &[&ca])).await;
    // The client trusts the real CA (it verifies the server fine), but its
    // own certificate is signed by the rogue CA.
    let client = Client::new(store(&leaf(&rogue, CLIENT_ID), &[&ca]), kind);
    let echo_addr = echo_server().await;

    let err = client
        .connect(&server.peer(SERVER_ID), echo_addr)
        .await
        .err()
        .expect("a client of an untrusted CA must be refused");
    wait_for_rejection(&server.registry, "server", "untrusted").await;
    assert!(
        rejected(&server.registry, "server", "untrusted") >= 1,
        "{err}"
    );
    assert_only_rejection(&server.registry, "server", "untrusted");
    assert_no_rejections(&client.registry, "the client");
    assert_handler_never_ran(&server.seen).await;
}

/// A second, independent CA whose certificate claims the same trust domain
/// (and so has the same subject name) as the real one.
fn ca_named_like(td: &str) -> CertificateAuthority {
    new_ca(td)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_from_other_ca_of_same_trust_domain_is_untrusted_quic() {
    untrusted_ca_same_trust_domain(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_from_other_ca_of_same_trust_domain_is_untrusted_h2() {
    untrusted_ca_same_trust_domain(TransportKind::H2).await;
}

/// QUIC-first dialing (no forced transport): the server refusing our
/// certificate over QUIC is a refusal, not UDP being blocked. QUIC must not
/// be remembered as broken, and nothing falls back to TLS/TCP (where the
/// same certificate would be refused the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_cert_does_not_mark_quic_broken() {
    init();
    let ca = new_ca(TD);
    let rogue = ca_named_like(TD);
    let server = Server::start(store(&leaf(&ca, SERVER_ID), &[&ca])).await;
    let (tls, registry) = metered(store(&leaf(&rogue, CLIENT_ID), &[&ca]));
    let client = TunnelClient::new(tls, server_cfg()).unwrap();
    assert_eq!(client.config().force_transport, None);
    let echo_addr = echo_server().await;
    let peer = server.peer(SERVER_ID);
    for attempt in 0..3 {
        let err = tokio::time::timeout(
            FAIL_WITHIN,
            client.connect_tcp(&peer, echo_addr, &ConnectMeta::default()),
        )
        .await
        .expect("refused in time")
        .err()
        .expect("an untrusted client certificate is refused");
        assert!(
            !client.quic_broken(server.addr()),
            "attempt {attempt}: a refused certificate marked QUIC broken ({err})"
        );
        client.forget(&peer);
    }
    let text = encode_text(&registry);
    assert!(
        !text.contains("ferry_transport_fallbacks_total"),
        "no fallback to TLS/TCP:\n{text}"
    );
    assert_eq!(
        handshakes(&server.registry, TransportKind::H2, "server", "error"),
        0
    );
    assert_eq!(
        handshakes(&server.registry, TransportKind::H2, "server", "ok"),
        0
    );
    assert!(rejected(&server.registry, "server", "untrusted") >= 3);
    assert_only_rejection(&server.registry, "server", "untrusted");
    assert_handler_never_ran(&server.seen).await;
}

// ---------------------------------------------------------------------------
// 4. Expired certificates, on each side.
// ---------------------------------------------------------------------------

async fn expired_client_cert(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let server = Server::start(store(&leaf(&ca, SERVER_ID), &[&ca])).await;
    let client = Client::new(store(&expired_leaf(&ca, CLIENT_ID), &[&ca]), kind);
    let echo_addr = echo_server().await;

    let err = client
        .connect(&server.peer(SERVER_ID), echo_addr)
        .await
        .err()
        .expect("an expired client certificate must be refused");
    wait_for_rejection(&server.registry, "server", "expired").await;
    assert!(
        rejected(&server.registry, "server", "expired") >= 1,
        "{err}"
    );
    assert_only_rejection(&server.registry, "server", "expired");
    assert_no_rejections(&client.registry, "the client");
    assert_handler_never_ran(&server.seen).await;
}

async fn expired_server_cert(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let server = Server::start(store(&expired_leaf(&ca, SERVER_ID), &[&ca])).await;
    let client = Client::new(store(&leaf(&ca, CLIENT_ID), &[&ca]), kind);
    let echo_addr = echo_server().await;

    let err = client
        .connect(&server.peer(SERVER_ID), echo_addr)
        .await
        .err()
        .expect("an expired server certificate must be refused");
    assert!(
        matches!(err, TunnelError::Handshake { .. }),
        "a handshake error, got {err:?}"
    );
    assert!(
        err.to_string().to_lowercase().contains("expired"),
        "the client's error says the certificate expired: {err}"
    );
    assert_eq!(rejected(&client.registry, "client", "expired"), 1);
    assert_only_rejection(&client.registry, "client", "expired");
    assert_eq!(handshakes(&client.registry, kind, "client", "rejected"), 1);
    assert_no_rejections(&server.registry, "the server");
    assert_handler_never_ran(&server.seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_cert_is_refused_by_server_quic() {
    expired_client_cert(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_cert_is_refused_by_server_h2() {
    expired_client_cert(TransportKind::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_server_cert_is_refused_by_client_quic() {
    expired_server_cert(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_server_cert_is_refused_by_client_h2() {
    expired_server_cert(TransportKind::H2).await;
}

// ---------------------------------------------------------------------------
// 5. A client of another trust domain: unknown, then federated.
// ---------------------------------------------------------------------------

async fn foreign_trust_domain(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let other = new_ca(OTHER_TD);
    let echo_addr = echo_server().await;
    // The client trusts both domains; its certificate is from the other one.
    let client_leaf = leaf(&other, OTHER_CLIENT_ID);

    // Without a bundle for other.local the server refuses the client.
    let server = Server::start(store(&leaf(&ca, SERVER_ID), &[&ca])).await;
    let client = Client::new(store(&client_leaf, &[&other, &ca]), kind);
    let err = client
        .connect(&server.peer(SERVER_ID), echo_addr)
        .await
        .err()
        .expect("a client of an unknown trust domain must be refused");
    wait_for_rejection(&server.registry, "server", "unknown_trust_domain").await;
    assert!(
        rejected(&server.registry, "server", "unknown_trust_domain") >= 1,
        "{err}"
    );
    assert_only_rejection(&server.registry, "server", "unknown_trust_domain");
    assert_no_rejections(&client.registry, "the client");
    assert_handler_never_ran(&server.seen).await;

    // Federated: the server also trusts other.local's CA. The same client
    // certificate is accepted and the handler sees its exact SPIFFE ID.
    let federated = Server::start(store(&leaf(&ca, SERVER_ID), &[&ca, &other])).await;
    let client = Client::new(store(&client_leaf, &[&other, &ca]), kind);
    let mut t = client
        .connect(&federated.peer(SERVER_ID), echo_addr)
        .await
        .expect("a federated client is accepted");
    echo(&mut t, b"hello from other.local").await;
    assert_eq!(federated.seen.ids(), [id(OTHER_CLIENT_ID)]);
    assert_eq!(federated.seen.0.lock().unwrap()[0].1, kind);
    assert_no_rejections(&federated.registry, "the federated server");
    assert_no_rejections(&client.registry, "the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_trust_domain_is_refused_and_federation_accepts_it_quic() {
    foreign_trust_domain(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_trust_domain_is_refused_and_federation_accepts_it_h2() {
    foreign_trust_domain(TransportKind::H2).await;
}

/// Federation withdrawn: once the server's bundles no longer include
/// other.local, a client of that domain that was accepted before is refused
/// on its next connection (a new connection is a full, verified handshake;
/// nothing from the earlier session lets it in).
async fn withdrawn_federation(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let other = new_ca(OTHER_TD);
    let echo_addr = echo_server().await;
    let server_leaf = leaf(&ca, SERVER_ID);
    let server_store = store(&server_leaf, &[&ca, &other]);
    let server = Server::start(server_store.clone()).await;
    let client = Client::new(store(&leaf(&other, OTHER_CLIENT_ID), &[&other, &ca]), kind);
    let peer = server.peer(SERVER_ID);

    let mut t = client.connect(&peer, echo_addr).await.unwrap();
    echo(&mut t, b"federated").await;
    assert_eq!(server.seen.ids(), [id(OTHER_CLIENT_ID)]);
    drop(t);

    // The server stops trusting other.local.
    let narrowed = store(&server_leaf, &[&ca]).current();
    server_store.set((*narrowed).clone());
    client.client.forget(&peer);
    let err = client
        .connect(&peer, echo_addr)
        .await
        .err()
        .expect("a client of a withdrawn trust domain must be refused");
    wait_for_rejection(&server.registry, "server", "unknown_trust_domain").await;
    assert!(
        rejected(&server.registry, "server", "unknown_trust_domain") >= 1,
        "{err}"
    );
    assert_only_rejection(&server.registry, "server", "unknown_trust_domain");
    assert_handler_never_ran_again(&server.seen, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_federation_refuses_the_next_connection_quic() {
    withdrawn_federation(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_federation_refuses_the_next_connection_h2() {
    withdrawn_federation(TransportKind::H2).await;
}

// ---------------------------------------------------------------------------
// 6. A normal connection: the server sees the client's SPIFFE ID.
// ---------------------------------------------------------------------------

async fn server_sees_client_id(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let server_leaf = leaf(&ca, SERVER_ID);
    let server = Server::start(store(&server_leaf, &[&ca])).await;
    let client = Client::new(store(&leaf(&ca, CLIENT_ID), &[&ca]), kind);
    let echo_addr = echo_server().await;

    let peer = server.peer(SERVER_ID);
    let mut a = client.connect(&peer, echo_addr).await.unwrap();
    let mut b = client.connect(&peer, echo_addr).await.unwrap();
    assert_eq!(a.transport, kind);
    echo(&mut a, b"first").await;
    echo(&mut b, b"second").await;

    let seen = server.seen.0.lock().unwrap().clone();
    assert_eq!(seen, [(id(CLIENT_ID), kind), (id(CLIENT_ID), kind)]);
    let pooled = client.client.pooled(&peer);
    assert_eq!(pooled.len(), 1, "both streams on one connection");
    assert_eq!(pooled[0].transport(), kind);
    assert_eq!(pooled[0].peer_id(), &id(SERVER_ID));
    assert_eq!(pooled[0].peer_chain()[0], leaf_der(&server_leaf));
    assert_eq!(handshakes(&client.registry, kind, "client", "ok"), 1);
    assert_eq!(handshakes(&server.registry, kind, "server", "ok"), 1);
    assert_no_rejections(&server.registry, "the server");
    assert_no_rejections(&client.registry, "the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sees_client_spiffe_id_quic() {
    server_sees_client_id(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sees_client_spiffe_id_h2() {
    server_sees_client_id(TransportKind::H2).await;
}

// ---------------------------------------------------------------------------
// 7. Rotation of the server's files under a live stream.
// ---------------------------------------------------------------------------

/// The leaf the server presents to a brand-new client (a full handshake,
/// nothing cached), after checking the connection carries bytes.
async fn leaf_seen_by_new_client(
    client_store: &Arc<IdentityStore>,
    kind: TransportKind,
    peer: &PeerKey,
    target: SocketAddr,
) -> CertificateDer<'static> {
    let probe = Client::new(client_store.clone(), kind);
    let mut t = probe.connect(peer, target).await.unwrap();
    echo(&mut t, b"probe").await;
    let leaf = probe.client.pooled(peer)[0].peer_chain()[0].clone();
    probe.client.close();
    leaf
}

async fn wait_for_reload(store: &IdentityStore, before: u64, t: &mut TcpTunnel) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut i = 0u32;
    while store.reload_count() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher did not reload the rotated files"
        );
        // Keep the old stream busy across the rotation.
        echo(t, format!("during rotation {i}").as_bytes()).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_garbage(dir: &Path) {
    let tmp = dir.join("cert.pem.tmp");
    std::fs::write(
        &tmp,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::rename(&tmp, dir.join("cert.pem")).unwrap();
}

async fn rotation(kind: TransportKind) {
    init();
    let ca = new_ca(TD);
    let dir = tmpdir();
    let old = leaf(&ca, SERVER_ID);
    old.write(dir.path(), false).unwrap();
    let files = IdentityFiles::in_dir(dir.path());
    let server_store = IdentityStore::load(&files).unwrap();
    let _watch = server_store.watch(files, Duration::from_millis(100));
    let server = Server::start(server_store.clone()).await;
    let client_store = store(&leaf(&ca, CLIENT_ID), &[&ca]);
    let client = Client::new(client_store.clone(), kind);
    let echo_addr = echo_server().await;
    let peer = server.peer(SERVER_ID);

    // A long-lived stream, opened before any rotation.
    let mut live = client.connect(&peer, echo_addr).await.unwrap();
    echo(&mut live, b"before rotation").await;
    let old_der = client.client.pooled(&peer)[0].peer_chain()[0].clone();
    assert_eq!(old_der, leaf_der(&old));
    let reloads = server_store.reload_count();

    // A botched rotation: cert.pem replaced by garbage. The watcher refuses
    // it and keeps the current identity.
    write_garbage(dir.path());
    for i in 0..10 {
        echo(&mut live, format!("garbage on disk {i}").as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server_store.reload_count(),
        reloads,
        "an invalid cert.pem must not be loaded"
    );
    assert_eq!(
        server_store.current().certified_key.cert[0],
        old_der,
        "the old identity is kept"
    );
    assert_eq!(
        leaf_seen_by_new_client(&client_store, kind, &peer, echo_addr).await,
        old_der,
        "new handshakes still work, with the old certificate"
    );
    echo(&mut live, b"after garbage").await;

    // The real rotation: same SPIFFE ID, new key and serial.
    let new = leaf(&ca, SERVER_ID);
    let new_der = leaf_der(&new);
    assert_ne!(new_der, old_der);
    new.write(dir.path(), true).unwrap();
    wait_for_reload(&server_store, reloads, &mut live).await;
    assert_eq!(server_store.current().certified_key.cert[0], new_der);
    assert_eq!(server_store.current().id, id(SERVER_ID));

    // The stream opened before the rotation still carries bytes.
    echo(&mut live, b"after rotation").await;
    echo(&mut live, &[7u8; 100_000]).await;

    // A new connection from the same client sees the new certificate.
    client.client.forget(&peer);
    let mut fresh = client.connect(&peer, echo_addr).await.unwrap();
    echo(&mut fresh, b"new connection").await;
    let pooled = client.client.pooled(&peer);
    assert_eq!(pooled.len(), 1);
    let presented = pooled[0].peer_chain()[0].clone();
    assert_ne!(
        presented, old_der,
        "the new connection must not show the old certificate"
    );
    assert_eq!(presented, new_der, "the new connection shows the new leaf");
    assert_eq!(
        leaf_seen_by_new_client(&client_store, kind, &peer, echo_addr).await,
        new_der
    );
    assert!(server.seen.ids().iter().all(|i| *i == id(CLIENT_ID)));
    assert_no_rejections(&server.registry, "the server");
    assert_no_rejections(&client.registry, "the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rotation_keeps_streams_and_new_handshakes_use_new_cert_quic() {
    rotation(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rotation_keeps_streams_and_new_handshakes_use_new_cert_h2() {
    rotation(TransportKind::H2).await;
}
