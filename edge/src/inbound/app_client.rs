//! Connections from the inbound edge to its local application: pooled
//! HTTP/1.1 and h2c clients (hyper-util) whose connector always dials the
//! application host at the port carried in the request URI.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::tunnel_body::ProxyBody;

/// Dials `app_host:<uri port>` whatever host the URI names.
#[derive(Clone, Debug)]
pub struct AppConnector {
    host: IpAddr,
    timeout: Duration,
}

impl tower_service::Service<http::Uri> for AppConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let host = self.host;
        let timeout = self.timeout;
        Box::pin(async move {
            let port = uri.port_u16().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no port in URI")
            })?;
            let tcp =
                tokio::time::timeout(timeout, TcpStream::connect(SocketAddr::new(host, port)))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                    })??;
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(tcp))
        })
    }
}

/// The pooled clients, one per application protocol family.
#[derive(Clone, Debug)]
pub struct AppClients {
    pub http1: Client<AppConnector, ProxyBody>,
    pub h2: Client<AppConnector, ProxyBody>,
}

impl AppClients {
    pub fn new(host: IpAddr) -> Self {
        let connector = AppConnector {
            host,
            timeout: Duration::from_secs(5),
        };
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { http1, h2 }
    }
}
