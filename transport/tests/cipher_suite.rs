//! What two Ferry peers negotiate with the TLS configs every tunnel uses
//! (QUIC takes the same rustls configs): TLS 1.3 with AES-128-GCM and
//! SHA-256, and the X25519MLKEM768 post-quantum hybrid key exchange; with
//! `tunnel.cipher_suites` narrowed to AES-256-GCM, that suite, over an
//! in-memory handshake and over a real QUIC tunnel (whose Initial packets
//! keep AES-128-GCM).

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry_transport::identity::IdentityStore;
use ferry_transport::metrics::TransportMetrics;
use ferry_transport::tls::{TlsConfigs, ALPN_H2, ALPN_H3};
use ferry_transport::tunnel::{ConnectMeta, PeerKey, TunnelClient, TunnelConfig};
use ferry_transport::TransportKind;
use rustls::{CipherSuite, NamedGroup, ProtocolVersion};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

/// Ferry's TLS configs for `store`, offering `suites` (`None`: the default).
fn configs(store: Arc<IdentityStore>, suites: Option<&[CipherSuite]>) -> Arc<TlsConfigs> {
    match suites {
        Some(s) => TlsConfigs::with_cipher_suites(store, TransportMetrics::new(), s).unwrap(),
        None => tls(store),
    }
}

/// A mutual TLS handshake in memory between Ferry's client and server
/// configs for `alpn`; returns the client side once both are done.
fn handshake(alpn: &'static [u8]) -> rustls::ClientConnection {
    handshake_with(alpn, None, None).expect("handshake")
}

/// [`handshake`] with each side's suites; the error of the side that
/// refused, if one did.
fn handshake_with(
    alpn: &'static [u8],
    server_suites: Option<&[CipherSuite]>,
    client_suites: Option<&[CipherSuite]>,
) -> Result<rustls::ClientConnection, rustls::Error> {
    init();
    let pki = Pki::new("test.local");
    let server_tls = configs(pki.store(SERVER_ID, &[]), server_suites);
    let client_tls = configs(pki.store(CLIENT_ID, &[]), client_suites);
    let name = rustls_pki_types::ServerName::try_from("peer.invalid").unwrap();
    let mut client =
        rustls::ClientConnection::new(client_tls.client(&id(SERVER_ID), alpn), name).unwrap();
    let mut server = rustls::ServerConnection::new(server_tls.server(alpn)).unwrap();
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(client);
        }
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        server.read_tls(&mut wire.as_slice()).unwrap();
        server.process_new_packets()?;
        wire.clear();
        server.write_tls(&mut wire).unwrap();
        client.read_tls(&mut wire.as_slice()).unwrap();
        client.process_new_packets()?;
    }
    panic!("handshake did not complete in 10 flights");
}

fn check(alpn: &'static [u8]) {
    let c = handshake(alpn);
    assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(
        c.negotiated_cipher_suite().map(|s| s.suite()),
        Some(CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    assert_eq!(
        c.negotiated_key_exchange_group().map(|g| g.name()),
        Some(NamedGroup::X25519MLKEM768)
    );
    assert_eq!(c.alpn_protocol(), Some(alpn));
}

#[test]
fn peers_negotiate_aes128_gcm_and_the_post_quantum_hybrid_over_quic() {
    check(ALPN_H3);
}

#[test]
fn peers_negotiate_aes128_gcm_and_the_post_quantum_hybrid_over_tls_tcp() {
    check(ALPN_H2);
}

const AES256: &[CipherSuite] = &[CipherSuite::TLS13_AES_256_GCM_SHA384];
const AES128: &[CipherSuite] = &[CipherSuite::TLS13_AES_128_GCM_SHA256];

fn negotiated(c: &rustls::ClientConnection) -> Option<CipherSuite> {
    c.negotiated_cipher_suite().map(|s| s.suite())
}

#[test]
fn suites_narrowed_to_aes256_negotiate_aes256() {
    for alpn in [ALPN_H3, ALPN_H2] {
        let both = handshake_with(alpn, Some(AES256), Some(AES256)).unwrap();
        assert_eq!(
            negotiated(&both),
            Some(CipherSuite::TLS13_AES_256_GCM_SHA384)
        );
        // One side narrowed is enough: the other offers it second.
        let server = handshake_with(alpn, Some(AES256), None).unwrap();
        assert_eq!(
            negotiated(&server),
            Some(CipherSuite::TLS13_AES_256_GCM_SHA384)
        );
        let client = handshake_with(alpn, None, Some(AES256)).unwrap();
        assert_eq!(
            negotiated(&client),
            Some(CipherSuite::TLS13_AES_256_GCM_SHA384)
        );
    }
}

#[test]
fn peers_without_a_common_suite_do_not_connect() {
    let e = handshake_with(ALPN_H3, Some(AES128), Some(AES256)).unwrap_err();
    assert!(
        matches!(
            e,
            rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon)
        ),
        "the server refuses: {e}"
    );
}

/// A real QUIC tunnel with AES-256-GCM only on both ends: the handshake
/// completes (Initial packets use AES-128-GCM whatever the configs offer)
/// and bytes flow.
#[tokio::test]
async fn a_quic_tunnel_runs_with_aes256_only() {
    init();
    let pki = Pki::new("test.local");
    let server_tls = configs(pki.store(SERVER_ID, &[]), Some(AES256));
    let client_tls = configs(pki.store(CLIENT_ID, &[]), Some(AES256));
    let cfg = TunnelConfig {
        force_transport: Some(TransportKind::Quic),
        ..test_config()
    };
    let (server, _) = connect_server(server_tls, cfg.clone()).await;
    let echo = echo_server().await;
    let client = TunnelClient::new(client_tls, cfg).unwrap();
    let peer = PeerKey::new(server.local_addr(), id(SERVER_ID));
    let t = tokio::time::timeout(
        Duration::from_secs(10),
        client.connect_tcp(&peer, echo, &ConnectMeta::default()),
    )
    .await
    .expect("in time")
    .expect("connected over QUIC with AES-256-GCM only");
    assert_eq!(t.transport, TransportKind::Quic);
    let (mut r, mut w) = tokio::io::split(ferry_transport::tunnel::stream_io(t.send, t.recv));
    w.write_all(b"aes-256").await.unwrap();
    w.shutdown().await.unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"aes-256");
}

#[test]
fn configs_without_a_tls13_suite_are_refused_not_built() {
    init();
    let pki = Pki::new("test.local");
    for suites in [
        &[][..],
        &[CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384][..],
    ] {
        let e = TlsConfigs::with_cipher_suites(
            pki.store(SERVER_ID, &[]),
            TransportMetrics::new(),
            suites,
        )
        .expect_err("refused");
        assert!(e.contains("TLS 1.3 suite"), "{e}");
    }
}
