//! The application behind every path, on the server side: an HTTP/1.1
//! server answering every request with a 2-byte body (`ok`; 16 KiB for
//! `/16k`, used by the loss/RTT scenario), and a TCP sink
//! that reads to EOF and counts the bytes (for bulk throughput).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::side::Side;

/// The running application (its tasks live on the server side's runtime).
pub struct App {
    /// Ports on the server side; proxies there reach them at 127.0.0.1.
    pub http_port: u16,
    pub sink_port: u16,
    /// Bytes the sink has read so far (all connections).
    pub sink_bytes: Arc<AtomicU64>,
    /// The server side's address (for the direct path).
    pub ip: IpAddr,
}

impl App {
    pub fn start(side: &Side) -> Result<App> {
        // In a namespace, listen on every address (the direct path comes
        // over veth, proxies come over lo); in the root namespace only lo.
        let bind = if side.ns.is_some() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let sink_bytes = Arc::new(AtomicU64::new(0));
        let counter = sink_bytes.clone();
        let (http_port, sink_port) = side.run(async move {
            // A deep accept queue, like a production server's: bursts of
            // connections (the open-conns scenario) must not measure the
            // application's SYN drops.
            let http = ferry_transport::listener::bind(SocketAddr::new(bind, 0))
                .context("bind the HTTP application")?;
            let sink = ferry_transport::listener::bind(SocketAddr::new(bind, 0))
                .context("bind the TCP sink")?;
            let ports = (http.local_addr()?.port(), sink.local_addr()?.port());
            tokio::spawn(serve_http(http));
            tokio::spawn(serve_sink(sink, counter));
            anyhow::Ok(ports)
        })?;
        Ok(App {
            http_port,
            sink_port,
            sink_bytes,
            ip: side.ip,
        })
    }

    pub fn http_direct(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.http_port)
    }

    pub fn sink_direct(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.sink_port)
    }

    pub fn sink_count(&self) -> u64 {
        self.sink_bytes.load(Ordering::Relaxed)
    }
}

/// The body length the application sends for `path`.
pub fn body_len(path: &str) -> usize {
    if path == "/16k" {
        16 * 1024
    } else {
        2
    }
}

async fn serve_http(l: TcpListener) {
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let body = if req.uri().path() == "/16k" {
                    Bytes::from(vec![b'x'; body_len("/16k")])
                } else {
                    Bytes::from_static(b"ok")
                };
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn serve_sink(l: TcpListener, counter: Arc<AtomicU64>) {
    loop {
        let Ok((mut tcp, _)) = l.accept().await else {
            continue;
        };
        let counter = counter.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
}
