//! Test support: a throw-away PKI, tunnel servers that forward CONNECT to
//! the authority, a client-side TCP forwarder, and small TCP servers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityStore, Material, SpiffeId, TrustBundles, TrustDomain};
use ferry_transport::metrics::TransportMetrics;
use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::{
    handler, parse_target, refuse, serve_connect, splice, ConnectMeta, PeerKey, TunnelClient,
    TunnelConfig, TunnelServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn init() {
    ferry_transport::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// A CA of one trust domain.
pub struct Pki {
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new(td: &str) -> Self {
        let td = TrustDomain::new(td).unwrap();
        Self {
            ca: CertificateAuthority::generate(&td, Duration::from_secs(86400 * 30)).unwrap(),
        }
    }

    /// A store holding a fresh leaf for `id`, trusting this CA and `extra` CAs.
    pub fn store(&self, id: &str, extra: &[&Pki]) -> Arc<IdentityStore> {
        IdentityStore::new(self.material(id, extra))
    }

    pub fn material(&self, id: &str, extra: &[&Pki]) -> Material {
        let leaf = self
            .ca
            .issue(&SpiffeId::parse(id).unwrap(), Duration::from_secs(3600))
            .unwrap();
        let mut bundles = TrustBundles::default();
        bundles.add_pem(leaf.bundle_pem.as_bytes(), "test").unwrap();
        for p in extra {
            bundles
                .add_pem(p.ca.cert_pem().as_bytes(), "test-extra")
                .unwrap();
        }
        Material::from_pem(
            leaf.cert_chain_pem.as_bytes(),
            "test-cert",
            leaf.key_pem.as_bytes(),
            "test-key",
            bundles,
        )
        .unwrap()
    }
}

pub fn tls(store: Arc<IdentityStore>) -> Arc<TlsConfigs> {
    TlsConfigs::new(store, TransportMetrics::new())
}

/// A loopback listener with a deep accept queue (1,000 concurrent dials).
pub fn listen() -> TcpListener {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(loopback()).unwrap();
    s.listen(4096).unwrap()
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Records the client identity of every stream a server accepted.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<(SpiffeId, ferry_transport::TransportKind)>>>);

impl Seen {
    pub fn ids(&self) -> Vec<SpiffeId> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(i, _)| i.clone())
            .collect()
    }
}

/// A tunnel server forwarding every CONNECT to its authority.
pub async fn connect_server(tls: Arc<TlsConfigs>, cfg: TunnelConfig) -> (TunnelServer, Seen) {
    let seen = Seen::default();
    let s2 = seen.clone();
    let server = TunnelServer::bind(
        loopback(),
        tls,
        cfg,
        handler(move |stream| {
            let seen = s2.clone();
            async move {
                seen.0
                    .lock()
                    .unwrap()
                    .push((stream.peer.id.clone(), stream.peer.transport));
                match parse_target(&stream.request) {
                    Ok(target) => {
                        let _ = serve_connect(
                            stream,
                            target,
                            Duration::from_secs(5),
                            Duration::from_secs(120),
                        )
                        .await;
                    }
                    Err(e) => refuse(stream, http::StatusCode::BAD_REQUEST, "malformed", &e).await,
                }
            }
        }),
    )
    .await
    .unwrap();
    (server, seen)
}

/// A local listener: every accepted TCP connection is carried to `target`
/// through `peer` and spliced (what an outbound edge does).
pub async fn forwarder(client: TunnelClient, peer: PeerKey, target: SocketAddr) -> SocketAddr {
    let l = listen();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let tcp = match l.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("forwarder accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let client = client.clone();
            let peer = peer.clone();
            tokio::spawn(async move {
                match client
                    .connect_tcp(&peer, target, &ConnectMeta::default())
                    .await
                {
                    Ok(t) => {
                        let _ = splice(tcp, t.send, t.recv, Duration::from_secs(120)).await;
                    }
                    Err(e) => {
                        eprintln!("forwarder: connect_tcp failed: {e}");
                        ferry_transport::tunnel::splice::reset_tcp_stream(tcp)
                    }
                }
            });
        }
    });
    addr
}

/// An echo server; returns its address.
pub async fn echo_server() -> SocketAddr {
    let l = listen();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let mut s = match l.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("echo accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if let Err(e) = tokio::io::copy(&mut r, &mut w).await {
                    eprintln!("echo copy: {e}");
                }
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Deterministic pseudo-random bytes (xorshift), so both ends can hash them.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// A server that, per connection, hashes everything it receives and at the
/// same time sends `send_len` pseudo-random bytes, then closes its side.
/// Each connection's received (bytes, sha256) is reported on the channel.
pub async fn sink_source_server(
    send_len: u64,
    seed: u64,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(u64, [u8; 32])>,
) {
    use sha2::{Digest, Sha256};
    let l = listen();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let reader = tokio::spawn(async move {
                    let mut h = Sha256::new();
                    let mut n = 0u64;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => {
                                n += k as u64;
                                h.update(&buf[..k]);
                            }
                        }
                    }
                    (n, h.finalize().into())
                });
                let mut rng = Xorshift::new(seed);
                let mut left = send_len;
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let k = left.min(buf.len() as u64) as usize;
                    rng.fill(&mut buf[..k]);
                    if w.write_all(&buf[..k]).await.is_err() {
                        break;
                    }
                    left -= k as u64;
                }
                let _ = w.shutdown().await;
                if let Ok(r) = reader.await {
                    let _ = tx.send(r);
                }
            });
        }
    });
    (addr, rx)
}

/// The sha256 of `len` bytes of `Xorshift::new(seed)`.
pub fn expected_hash(len: u64, seed: u64) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut rng = Xorshift::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..k]);
        h.update(&buf[..k]);
        left -= k as u64;
    }
    h.finalize().into()
}

/// Connects to `addr` and returns the stream.
pub async fn dial(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Config for tests: short timeouts; `h2_only` makes QUIC look broken.
pub fn test_config() -> TunnelConfig {
    TunnelConfig {
        handshake_timeout: Duration::from_secs(5),
        ..TunnelConfig::default()
    }
}

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
