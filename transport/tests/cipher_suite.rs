//! What two Ferry peers negotiate with the TLS configs every tunnel uses
//! (QUIC takes the same rustls configs): TLS 1.3 with AES-128-GCM and
//! SHA-256, and the X25519MLKEM768 post-quantum hybrid key exchange.

mod support;

use ferry_transport::tls::{ALPN_H2, ALPN_H3};
use rustls::{CipherSuite, NamedGroup, ProtocolVersion};
use support::*;

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

/// A mutual TLS handshake in memory between Ferry's client and server
/// configs for `alpn`; returns the client side once both are done.
fn handshake(alpn: &'static [u8]) -> rustls::ClientConnection {
    init();
    let pki = Pki::new("test.local");
    let server_tls = tls(pki.store(SERVER_ID, &[]));
    let client_tls = tls(pki.store(CLIENT_ID, &[]));
    let name = rustls_pki_types::ServerName::try_from("peer.invalid").unwrap();
    let mut client =
        rustls::ClientConnection::new(client_tls.client(&id(SERVER_ID), alpn), name).unwrap();
    let mut server = rustls::ServerConnection::new(server_tls.server(alpn)).unwrap();
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return client;
        }
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        server.read_tls(&mut wire.as_slice()).unwrap();
        server
            .process_new_packets()
            .expect("server accepts the client");
        wire.clear();
        server.write_tls(&mut wire).unwrap();
        client.read_tls(&mut wire.as_slice()).unwrap();
        client
            .process_new_packets()
            .expect("client accepts the server");
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
