//! One HTTP/1.1 keep-alive client connection (hyper) and one small GET on
//! it, each bounded by a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Any single request or connect taking longer than this is an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Connects to `addr` (TCP_NODELAY) and completes the HTTP/1.1 handshake.
pub async fn connect(addr: SocketAddr) -> Result<Conn> {
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        anyhow::Ok(send)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("connect to {addr}: timed out"))?
}

/// One GET / expecting 200 and the body `ok`.
pub async fn get(send: &mut Conn) -> Result<()> {
    get_path(send, "/").await
}

/// One GET of `path` expecting 200 and the application's body for it
/// (`ok`, or 16 KiB for `/16k`).
pub async fn get_path(send: &mut Conn, path: &'static str) -> Result<()> {
    let expected = crate::app::body_len(path);
    let fut = async {
        send.ready().await?;
        let req = http::Request::get(path)
            .header("host", "app")
            .body(Empty::new())?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != 200 || body.len() != expected || (expected == 2 && &body[..] != b"ok") {
            bail!(
                "unexpected response {status} {:?}",
                String::from_utf8_lossy(&body)
            );
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("request timed out after {REQUEST_TIMEOUT:?}"))?
}
