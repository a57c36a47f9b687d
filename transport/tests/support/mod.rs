//! Test support: a throw-away PKI, tunnel servers that forward CONNECT to
//! the authority, a client-side TCP forwarder, and small TCP servers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        self.material_for(id, extra, Duration::from_secs(3600))
    }

    /// [`Pki::material`] with a leaf valid for `ttl`.
    pub fn material_for(&self, id: &str, extra: &[&Pki], ttl: Duration) -> Material {
        let leaf = self.ca.issue(&SpiffeId::parse(id).unwrap(), ttl).unwrap();
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

// ---------------------------------------------------------------------------
// Fallback and bad-input helpers (tests/fallback.rs, tests/bad_input.rs).
// ---------------------------------------------------------------------------

/// TLS configs whose metrics are registered in a registry the test can read.
pub fn tls_with_registry(
    store: Arc<IdentityStore>,
) -> (Arc<TlsConfigs>, prometheus_client::registry::Registry) {
    let metrics = TransportMetrics::new();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    (TlsConfigs::new(store, metrics), registry)
}

/// The value of one series (`name{labels}` exactly as exposed), 0 if absent.
pub fn metric(registry: &prometheus_client::registry::Registry, series: &str) -> u64 {
    let text = ferry_transport::metrics::encode_text(registry);
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Polls `f` every 20 ms until it is true or `within` has passed.
pub async fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// `ferry_transport_fallbacks_total{reason="..."}`.
pub fn fallbacks(registry: &prometheus_client::registry::Registry, reason: &str) -> u64 {
    metric(
        registry,
        &format!("ferry_transport_fallbacks_total{{reason=\"{reason}\"}}"),
    )
}

/// `ferry_transport_handshakes_total{transport,side,result}`.
pub fn handshakes(
    registry: &prometheus_client::registry::Registry,
    transport: &str,
    side: &str,
    result: &str,
) -> u64 {
    metric(
        registry,
        &format!(
            "ferry_transport_handshakes_total{{transport=\"{transport}\",side=\"{side}\",result=\"{result}\"}}"
        ),
    )
}

/// Opens a CONNECT stream to `target` (an echo server) through `peer`, sends
/// `msg`, half-closes, reads everything back and checks it is `msg`.
/// Returns the transport that carried the stream.
pub async fn echo_once(
    client: &TunnelClient,
    peer: &PeerKey,
    target: SocketAddr,
    msg: &[u8],
) -> Result<ferry_transport::TransportKind, String> {
    let mut t = client
        .connect_tcp(peer, target, &ConnectMeta::default())
        .await
        .map_err(|e| format!("connect_tcp: {e}"))?;
    let kind = t.transport;
    t.send
        .send_data(bytes::Bytes::copy_from_slice(msg))
        .await
        .map_err(|e| format!("send over {kind:?}: {e}"))?;
    t.send
        .finish()
        .await
        .map_err(|e| format!("finish over {kind:?}: {e}"))?;
    let mut got = Vec::with_capacity(msg.len());
    while let Some(b) = t
        .recv
        .data()
        .await
        .map_err(|e| format!("recv over {kind:?}: {e}"))?
    {
        got.extend_from_slice(&b);
    }
    if got != msg {
        return Err(format!(
            "echo over {kind:?} corrupted: sent {} bytes, got {} bytes back",
            msg.len(),
            got.len()
        ));
    }
    Ok(kind)
}

/// A simulated network path to a tunnel server, on one port number Q of
/// 127.0.0.1: TCP connections to Q are forwarded byte-for-byte to the
/// server's TCP port; UDP datagrams to Q are either relayed to the server's
/// UDP port and back (one upstream socket per client source address) or
/// silently dropped (a UDP black hole), switchable at any time.
pub struct UdpPath {
    /// Q: what clients dial (both TCP and UDP).
    pub addr: SocketAddr,
    relay: Arc<std::sync::atomic::AtomicBool>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    relayed: Arc<std::sync::atomic::AtomicU64>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl UdpPath {
    /// Binds UDP and TCP on one free port; `relay` picks the initial mode.
    pub async fn new(server: SocketAddr, relay: bool) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let (udp, tcp) = bind_udp_tcp_pair();
        let addr = tcp.local_addr().unwrap();
        let relay = Arc::new(AtomicBool::new(relay));
        let dropped = Arc::new(AtomicU64::new(0));
        let relayed = Arc::new(AtomicU64::new(0));
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();

        // TCP: always forwarded.
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(server).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
            }
        });
        tasks.lock().unwrap().push(tcp_task.abort_handle());

        // UDP: relayed or dropped, per the switch, in both directions.
        let udp = Arc::new(udp);
        let (r, d, rl, t) = (
            relay.clone(),
            dropped.clone(),
            relayed.clone(),
            tasks.clone(),
        );
        let udp_task = tokio::spawn(async move {
            let mut upstreams: std::collections::HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> =
                Default::default();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                if !r.load(Ordering::Acquire) {
                    d.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let up = match upstreams.get(&from) {
                    Some(u) => u.clone(),
                    None => {
                        let u = Arc::new(tokio::net::UdpSocket::bind(loopback()).await.unwrap());
                        u.connect(server).await.unwrap();
                        let (u2, udp2, r2, d2, rl2) =
                            (u.clone(), udp.clone(), r.clone(), d.clone(), rl.clone());
                        let back = tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            loop {
                                // ICMP errors (server gone) surface here; keep going.
                                let Ok(n) = u2.recv(&mut buf).await else {
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                    continue;
                                };
                                if r2.load(Ordering::Acquire) {
                                    rl2.fetch_add(1, Ordering::Relaxed);
                                    let _ = udp2.send_to(&buf[..n], from).await;
                                } else {
                                    d2.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        });
                        t.lock().unwrap().push(back.abort_handle());
                        upstreams.insert(from, u.clone());
                        u
                    }
                };
                rl.fetch_add(1, Ordering::Relaxed);
                let _ = up.send(&buf[..n]).await;
            }
        });
        tasks.lock().unwrap().push(udp_task.abort_handle());
        Self {
            addr,
            relay,
            dropped,
            relayed,
            tasks,
        }
    }

    /// `true`: relay UDP; `false`: black-hole it.
    pub fn set_relay(&self, on: bool) {
        self.relay.store(on, std::sync::atomic::Ordering::Release);
    }

    /// Datagrams dropped so far (either direction).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Datagrams relayed so far (either direction).
    pub fn relayed(&self) -> u64 {
        self.relayed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for UdpPath {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_udp_tcp_pair() -> (tokio::net::UdpSocket, TcpListener) {
    for _ in 0..64 {
        let udp = std::net::UdpSocket::bind(loopback()).unwrap();
        let addr = udp.local_addr().unwrap();
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if s.bind(addr).is_err() {
            continue;
        }
        let Ok(l) = s.listen(1024) else { continue };
        udp.set_nonblocking(true).unwrap();
        return (tokio::net::UdpSocket::from_std(udp).unwrap(), l);
    }
    panic!("no free UDP+TCP port pair on 127.0.0.1");
}

/// One QUIC connection over loopback built with the tunnel's own endpoint
/// builders (no HTTP/3 on top): both ends, and the endpoints they live on.
pub struct QuicPair {
    pub dialed: quinn::Connection,
    pub accepted: quinn::Connection,
    pub server: quinn::Endpoint,
    pub client: quinn::Endpoint,
}

pub const QUIC_SERVER_ID: &str = "spiffe://test.local/ns/a/sa/server";
pub const QUIC_CLIENT_ID: &str = "spiffe://test.local/ns/a/sa/client";

impl QuicPair {
    /// `QUIC_CLIENT_ID` dials `QUIC_SERVER_ID`, both with `cfg`.
    pub async fn connect(cfg: &TunnelConfig) -> Self {
        use ferry_transport::tls::ALPN_H3;
        use ferry_transport::tunnel::quic_endpoint::{
            client_config, client_endpoint, server_endpoint,
        };
        let pki = Pki::new("test.local");
        let server_tls = tls(pki.store(QUIC_SERVER_ID, &[]));
        let server = server_endpoint(loopback(), server_tls.server(ALPN_H3), cfg).unwrap();
        let client = client_endpoint(loopback(), cfg).unwrap();
        let client_tls = tls(pki.store(QUIC_CLIENT_ID, &[]));
        let dial_cfg = client_config(client_tls.client(&id(QUIC_SERVER_ID), ALPN_H3), cfg).unwrap();
        let addr = server.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(
            async {
                client
                    .connect_with(dial_cfg, addr, "server")
                    .unwrap()
                    .await
                    .unwrap()
            },
            async { server.accept().await.unwrap().await.unwrap() }
        );
        Self {
            dialed,
            accepted,
            server,
            client,
        }
    }
}
