//! Reading a counter from a `ferry edge`'s admin port (`GET /metrics`,
//! Prometheus text), for scenarios that check what the edge did (e.g.
//! whether a reconnect resumed its TLS session).

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::loadgen::http1::REQUEST_TIMEOUT;

/// The value of `series` (exactly as exposed, labels included) on the
/// admin port `admin`; 0 when the edge exposes no such series.
pub async fn counter(admin: SocketAddr, series: &str) -> Result<u64> {
    let text = tokio::time::timeout(REQUEST_TIMEOUT, metrics_text(admin))
        .await
        .map_err(|_| anyhow!("GET http://{admin}/metrics: timed out"))??;
    Ok(value_of(&text, series).unwrap_or(0))
}

async fn metrics_text(admin: SocketAddr) -> Result<String> {
    let tcp = TcpStream::connect(admin)
        .await
        .with_context(|| format!("connect to the admin port {admin}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "admin")
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    if resp.status() != 200 {
        bail!("GET http://{admin}/metrics: {}", resp.status());
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn value_of(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(series)?.strip_prefix(' ')?;
        v.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_found_by_its_whole_name() {
        let text =
            "# TYPE x counter\nx_total{result=\"resumed\"} 3\nx_total{result=\"unknown\"} 1\n";
        assert_eq!(value_of(text, "x_total{result=\"resumed\"}"), Some(3));
        assert_eq!(value_of(text, "x_total{result=\"unknown\"}"), Some(1));
        assert_eq!(value_of(text, "x_total{result=\"stale\"}"), None);
        assert_eq!(value_of(text, "x_total"), None);
    }
}
