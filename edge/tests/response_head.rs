//! A response head reaches the client before a body that is slow to come:
//! the application here writes a head declaring four bytes and writes them
//! only after the client has received that head. An edge holding the head
//! back for the body would deadlock the exchange (and the test times out).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Reads from `tcp` until a blank line ends an HTTP/1 head; `None` if the
/// connection ends first. Returns everything read.
async fn read_head(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Some(seen)
}

/// An HTTP/1.1 application that answers every request with a head
/// (`content-length: 4`) and sends the body `"body"` once `go` is notified.
async fn late_body_app(go: Arc<Notify>) -> SocketAddr {
    raw_app(move |mut tcp| {
        let go = go.clone();
        async move {
            if read_head(&mut tcp).await.is_none() {
                return;
            }
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nx-late: yes\r\n\r\n";
            if tcp.write_all(head).await.is_err() {
                return;
            }
            go.notified().await;
            let _ = tcp.write_all(b"body").await;
            // Keep the connection until the edge closes it.
            let _ = tcp.read(&mut [0u8; 64]).await;
        }
    })
    .await
}

async fn head_before_late_body(transport: &'static str) {
    let mesh = Mesh::new();
    let go = Arc::new(Notify::new());
    let app = late_body_app(go.clone()).await;
    let (_server, client) = edge_pair(&mesh, app, "late", "http", transport).await;

    let mut c = TcpStream::connect(client.outbound[0].0).await.unwrap();
    c.write_all(b"GET /late HTTP/1.1\r\nHost: late.default\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut c))
        .await
        .unwrap_or_else(|_| panic!("{transport}: the head was held back for the body"))
        .expect("closed before the head");
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-late: yes"), "{head}");
    go.notify_one();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_string(&mut rest))
        .await
        .expect("the body arrives")
        .unwrap();
    let whole = head + &rest;
    assert!(whole.ends_with("\r\n\r\nbody"), "{transport}: {whole:?}");
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_is_not_held_for_a_late_body_over_quic() {
    head_before_late_body("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_is_not_held_for_a_late_body_over_h2() {
    head_before_late_body("h2").await;
}
