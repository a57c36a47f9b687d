//! The sample applications beside each cluster's `api` edge, served by the
//! demo process on loopback: an HTTP/1.1 server answering
//! `<cluster> <caller identity>`, the standard gRPC health service
//! (`grpc.health.v1.Health`, reporting `demo.<cluster>` as serving) and an
//! opaque TCP echo. Each bounds what it accepts (header and idle timeouts).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::layout::AppPorts;

/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);

/// The gRPC health service name an application reports as serving.
pub fn health_service(cluster: &str) -> String {
    format!("demo.{cluster}")
}

/// What the HTTP application answers a caller with this identity.
pub fn http_answer(cluster: &str, caller: &str) -> String {
    format!("{cluster} {caller}\n")
}

/// The three applications of one cluster; they stop when dropped.
pub struct Apps {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub echo: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Apps {
    pub async fn start(cluster: &'static str) -> std::io::Result<Self> {
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let echo = TcpListener::bind("127.0.0.1:0").await?;
        let addrs = (http.local_addr()?, grpc.local_addr()?, echo.local_addr()?);
        let tasks = vec![
            tokio::spawn(serve_http(http, cluster)),
            tokio::spawn(serve_grpc(grpc, cluster)),
            tokio::spawn(serve_echo(echo)),
        ];
        Ok(Self {
            http: addrs.0,
            grpc: addrs.1,
            echo: addrs.2,
            tasks,
        })
    }

    pub fn ports(&self) -> AppPorts {
        AppPorts {
            http: self.http.port(),
            grpc: self.grpc.port(),
            echo: self.echo.port(),
        }
    }
}

impl Drop for Apps {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve_http(listener: TcpListener, cluster: &'static str) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| async move {
                    let caller = req
                        .headers()
                        .get("x-ferry-client-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    let _ = req.into_body().collect().await;
                    let body = Bytes::from(http_answer(cluster, &caller));
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(body)))
                },
            );
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE);
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

async fn serve_grpc(listener: TcpListener, cluster: &'static str) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(
            health_service(cluster),
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let _ = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(IDLE))
        .timeout(IDLE)
        .add_service(service)
        .serve_with_incoming(incoming)
        .await;
}

async fn serve_echo(listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(echo(tcp));
    }
}

/// Writes back what it reads until the peer finishes or goes idle.
async fn echo(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match tokio::time::timeout(IDLE, tcp.read(&mut buf)).await {
            Ok(Ok(0)) => {
                let _ = tcp.shutdown().await;
                return;
            }
            Ok(Ok(n)) => {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}
