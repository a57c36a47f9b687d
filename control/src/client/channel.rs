//! A tonic channel to the control plane over Ferry's rustls configs: the
//! server must prove the control plane's SPIFFE ID; the client presents its
//! SVID when the config has one. HTTP/2 keep-alive detects a dead peer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

type TlsConfigSource = Arc<dyn Fn() -> Arc<ClientConfig> + Send + Sync>;

/// Dials the control plane: TCP, then TLS with the config of the moment.
#[derive(Clone)]
struct Connector {
    addr: SocketAddr,
    tls: TlsConfigSource,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.addr;
        let tls = (self.tls)();
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            // The name is not checked: the verifier checks the SPIFFE ID.
            let name = ServerName::try_from("ferry-control").expect("static name");
            let stream = TlsConnector::from(tls).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// A lazily connecting channel to `addr`; `tls` is asked for the client
/// config at every new connection (so a renewed SVID is used).
pub fn channel(
    addr: SocketAddr,
    tls: impl Fn() -> Arc<ClientConfig> + Send + Sync + 'static,
) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    endpoint.connect_with_connector_lazy(Connector {
        addr,
        tls: Arc::new(tls),
    })
}
