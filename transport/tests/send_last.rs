//! `SendBody::send_last`: the last chunk ends the stream (over HTTP/2 on
//! the same DATA frame), and the receiver reads the chunk then the end.

mod support;

use std::time::Duration;

use bytes::Bytes;
use ferry_transport::tunnel::{
    handler, IncomingStream, PeerKey, TunnelClient, TunnelConfig, TunnelServer,
};
use ferry_transport::TransportKind;
use support::*;

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

/// A server that answers the whole body with `send_last` without reading
/// the request; over HTTP/2 dropping the unread request resets it with
/// `NO_ERROR` ("send no more", RFC 9113 §8.1).
async fn answering_server(pki: &Pki) -> TunnelServer {
    TunnelServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        tls(pki.store(SERVER_ID, &[])),
        test_config(),
        handler(|s: IncomingStream| async move {
            let ok = http::Response::builder().status(200).body(()).unwrap();
            let mut send = s.responder.send_response(ok).await.unwrap();
            send.send_last(Bytes::from_static(b"the whole body"))
                .await
                .unwrap();
        }),
    )
    .await
    .unwrap()
}

fn client_for(pki: &Pki, kind: TransportKind) -> TunnelClient {
    let cfg = TunnelConfig {
        force_transport: Some(kind),
        ..test_config()
    };
    TunnelClient::new(tls(pki.store(CLIENT_ID, &[])), cfg).unwrap()
}

async fn last_chunk_ends_the_stream(kind: TransportKind) {
    init();
    let pki = Pki::new("test.local");
    let server = answering_server(&pki).await;
    let client = client_for(&pki, kind);
    let peer = PeerKey::new(server.local_addr(), id(SERVER_ID));
    for _ in 0..3 {
        let req = http::Request::get("http://app.test/").body(()).unwrap();
        let opened = client.open(&peer, &req).await.unwrap();
        let mut send = opened.send;
        send.finish().await.unwrap();
        let (head, mut recv) = opened.response.response().await.unwrap();
        assert_eq!(head.status(), 200);
        let mut body = Vec::new();
        let read = async {
            while let Some(chunk) = recv.data().await.unwrap() {
                body.extend_from_slice(&chunk);
            }
            recv.trailers().await.unwrap()
        };
        let trailers = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the stream ended");
        assert!(trailers.is_none());
        assert_eq!(body, b"the whole body");
    }
    assert_eq!(client.pooled(&peer).len(), 1, "one connection, still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_last_ends_the_stream_quic() {
    last_chunk_ends_the_stream(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_last_ends_the_stream_h2() {
    last_chunk_ends_the_stream(TransportKind::H2).await;
}

/// Ending the request after the server has answered in full and said it
/// needs no more is not an error (it was a race in the test above: CI saw
/// `finish` fail with h2's "inactive stream").
async fn finish_after_the_server_is_done(kind: TransportKind) {
    init();
    let pki = Pki::new("test.local");
    let server = answering_server(&pki).await;
    let client = client_for(&pki, kind);
    let peer = PeerKey::new(server.local_addr(), id(SERVER_ID));
    let req = http::Request::get("http://app.test/").body(()).unwrap();
    let opened = client.open(&peer, &req).await.unwrap();
    let (head, mut recv) = opened.response.response().await.unwrap();
    assert_eq!(head.status(), 200);
    while recv.data().await.unwrap().is_some() {}
    // Long enough on loopback for the server's reset to arrive first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut send = opened.send;
    send.finish()
        .await
        .expect("ending a finished exchange succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_after_the_server_is_done_h2() {
    finish_after_the_server_is_done(TransportKind::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_after_the_server_is_done_quic() {
    finish_after_the_server_is_done(TransportKind::Quic).await;
}
