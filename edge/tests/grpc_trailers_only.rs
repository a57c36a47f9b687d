//! A gRPC "Trailers-Only" response (an immediate error: `grpc-status` in the
//! response head, no messages) reaches the application exactly as the
//! server sent it: one HEADERS frame with END_STREAM and no DATA frame.
//! grpc-core clients (grpcio, grpc-java, …) reject HEADERS followed by an
//! empty DATA frame with "Stream removed" and lose the status; this was
//! found by the grpcio interop test. The frames the application receives
//! are read off the wire (the client's socket is recorded) on each
//! transport.

mod support;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use support::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A connection that keeps a copy of everything it reads.
struct Recorded {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.seen.lock().unwrap().extend_from_slice(&new);
        r
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An h2c gRPC application that answers every call Trailers-Only:
/// NOT_FOUND "nope".
async fn trailers_only_app() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let resp = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "5")
                        .header("grpc-message", "nope")
                        .body(())
                        .unwrap();
                    let _ = respond.send_response(resp, true);
                }
            });
        }
    });
    addr
}

/// (type, flags) of every frame of stream 1 in `wire` (server → client
/// bytes of an HTTP/2 connection).
fn stream1_frames(wire: &[u8]) -> Vec<(u8, u8)> {
    let mut out = vec![];
    let mut rest = wire;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let (kind, flags) = (rest[3], rest[4]);
        let id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        if id == 1 {
            out.push((kind, flags));
        }
        rest = &rest[(9 + len).min(rest.len())..];
    }
    out
}

async fn trailers_only_through_edges(transport: &'static str) {
    let mesh = Mesh::new();
    let app = trailers_only_app().await;
    let (_server, client) = edge_pair(&mesh, app, "echo", "grpc", transport).await;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let tcp = TcpStream::connect(client.outbound[0].0).await.unwrap();
    let io = Recorded {
        inner: tcp,
        seen: seen.clone(),
    };
    let (mut h2, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://echo.default:{}/ferry.test.Echo/Fail",
            app.port()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut body) = h2.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("response in time")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "5");
    assert_eq!(resp.headers()["grpc-message"], "nope");
    let mut recv = resp.into_body();
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut n = 0;
        while let Some(chunk) = recv.data().await {
            n += chunk.unwrap().len();
        }
        n
    })
    .await
    .expect("stream ends");
    assert_eq!(rest, 0);
    // Let any frame still in flight arrive before reading the wire.
    tokio::time::sleep(Duration::from_millis(100)).await;

    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const END_STREAM: u8 = 1;
    let frames = stream1_frames(&seen.lock().unwrap());
    assert_eq!(
        frames.len(),
        1,
        "{transport}: one frame for the call, got (type, flags) {frames:?}"
    );
    assert_eq!(frames[0].0, HEADERS, "{transport}: {frames:?}");
    assert_eq!(
        frames[0].1 & END_STREAM,
        END_STREAM,
        "{transport}: the HEADERS frame ends the stream"
    );
    assert!(!frames.iter().any(|f| f.0 == DATA));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_trailers_only_over_quic() {
    trailers_only_through_edges("quic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_trailers_only_over_h2() {
    trailers_only_through_edges("h2").await;
}
