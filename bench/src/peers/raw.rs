//! The raw-transport limits for bulk transfer: a quinn connection built
//! with Ferry's own endpoint and transport settings (same datagram size
//! bound as the edges on this link) carrying one stream per flow, or one
//! tokio-rustls TLS 1.3 connection per flow, both with Ferry's mutual-TLS
//! configs. Each end runs on its own runtime (threads `rawcli`/`rawsrv`) in
//! its side's namespace, so their CPU time is measured apart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use ferry_transport::identity::{IdentityFiles, IdentityStore, SpiffeId};
use ferry_transport::metrics::TransportMetrics;
use ferry_transport::tls::{TlsConfigs, ALPN_H2, ALPN_H3};
use ferry_transport::tunnel::{quic_endpoint, TunnelConfig};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;

use super::Ctx;
use crate::loadgen::bulk::Flow;
use crate::paths::PathKind;
use crate::pki::ferry_id;
use crate::procstat;
use crate::side::Side;

pub struct RawPair {
    kind: PathKind,
    client_rt: tokio::runtime::Runtime,
    server_rt: tokio::runtime::Runtime,
    received: Arc<AtomicU64>,
    addr: SocketAddr,
    client_tls: Arc<TlsConfigs>,
    tunnel_cfg: TunnelConfig,
    quic: Option<(quinn::Endpoint, quinn::Connection)>,
    _server_ep: Option<quinn::Endpoint>,
}

fn block<F: std::future::Future + Send + 'static>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    let h = rt.spawn(f);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), h).await })
        .expect("raw transport setup timed out after 15 s")
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

impl RawPair {
    pub fn start(kind: PathKind, ctx: &Ctx) -> Result<RawPair> {
        let topo = ctx.topo;
        let client_rt = Side::runtime("rawcli", topo.client.ns.clone(), 2)?;
        let server_rt = Side::runtime("rawsrv", topo.server.ns.clone(), 2)?;
        let load = |dir: &std::path::Path| {
            IdentityStore::load(&IdentityFiles::in_dir(dir))
                .map(|s| TlsConfigs::new(s, TransportMetrics::new()))
                .map_err(|e| anyhow!("load identity from {}: {e}", dir.display()))
        };
        let server_tls = load(&ctx.ferry_pki.server_dir)?;
        let client_tls = load(&ctx.ferry_pki.client_dir)?;
        let tunnel_cfg = TunnelConfig {
            max_udp_payload: topo.max_udp_payload,
            ..TunnelConfig::default()
        };
        let received = Arc::new(AtomicU64::new(0));
        let bind = SocketAddr::new(topo.server.ip, 0);
        let counter = received.clone();
        let mut pair = match kind {
            PathKind::RawQuic => {
                let cfg = tunnel_cfg.clone();
                let (ep, addr) = block(&server_rt, async move {
                    let ep = quic_endpoint::server_endpoint(bind, server_tls.server(ALPN_H3), &cfg)
                        .context("raw quinn server endpoint")?;
                    let addr = ep.local_addr()?;
                    tokio::spawn(quic_sink(ep.clone(), counter));
                    anyhow::Ok((ep, addr))
                })?;
                RawPair {
                    kind,
                    client_rt,
                    server_rt,
                    received,
                    addr,
                    client_tls,
                    tunnel_cfg,
                    quic: None,
                    _server_ep: Some(ep),
                }
            }
            _ => {
                let addr = block(&server_rt, async move {
                    let l = tokio::net::TcpListener::bind(bind)
                        .await
                        .context("raw TLS listener")?;
                    let addr = l.local_addr()?;
                    tokio::spawn(tls_sink(l, server_tls, counter));
                    anyhow::Ok(addr)
                })?;
                RawPair {
                    kind,
                    client_rt,
                    server_rt,
                    received,
                    addr,
                    client_tls,
                    tunnel_cfg,
                    quic: None,
                    _server_ep: None,
                }
            }
        };
        if kind == PathKind::RawQuic {
            let tls = pair.client_tls.client(&server_id(), ALPN_H3);
            let cfg = pair.tunnel_cfg.clone();
            let addr = pair.addr;
            let local = SocketAddr::new(topo.client.ip, 0);
            pair.quic = Some(block(&pair.client_rt, async move {
                let ep = quic_endpoint::client_endpoint(local, &cfg)
                    .context("raw quinn client endpoint")?;
                let cc = quic_endpoint::client_config(tls, &cfg).map_err(|e| anyhow!(e))?;
                let conn = ep
                    .connect_with(cc, addr, "server.bench")?
                    .await
                    .context("raw quinn handshake")?;
                anyhow::Ok((ep, conn))
            })?);
        }
        Ok(pair)
    }

    pub fn open_flows(&self, n: usize) -> Result<Vec<Flow>> {
        match &self.quic {
            Some((_, conn)) => {
                let conn = conn.clone();
                block(&self.client_rt, async move {
                    let mut flows: Vec<Flow> = Vec::new();
                    for _ in 0..n {
                        let (send, _recv) = conn.open_bi().await.context("raw quinn open_bi")?;
                        flows.push(Box::new(send));
                    }
                    Ok(flows)
                })
            }
            None => {
                let (addr, tls) = (self.addr, self.client_tls.client(&server_id(), ALPN_H2));
                block(&self.client_rt, async move {
                    let connector = tokio_rustls::TlsConnector::from(tls);
                    let mut flows: Vec<Flow> = Vec::new();
                    for _ in 0..n {
                        let tcp = tokio::net::TcpStream::connect(addr)
                            .await
                            .with_context(|| format!("raw TLS connect {addr}"))?;
                        tcp.set_nodelay(true)?;
                        let s = connector
                            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                            .await
                            .context("raw TLS handshake")?;
                        flows.push(Box::new(s));
                    }
                    Ok(flows)
                })
            }
        }
    }

    pub fn client_handle(&self) -> tokio::runtime::Handle {
        self.client_rt.handle().clone()
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// CPU time of both ends' threads.
    pub fn cpu(&self) -> Duration {
        procstat::cpu_threads("rawcli") + procstat::cpu_threads("rawsrv")
    }

    pub fn kind(&self) -> PathKind {
        self.kind
    }

    /// Closes the QUIC connection before the runtimes go.
    pub fn close(&mut self) {
        if let Some((ep, conn)) = self.quic.take() {
            conn.close(0u32.into(), b"done");
            ep.close(0u32.into(), b"done");
        }
        let _ = &self.server_rt;
    }
}

impl Drop for RawPair {
    fn drop(&mut self) {
        self.close();
    }
}

fn server_id() -> SpiffeId {
    SpiffeId::parse(&ferry_id("server")).expect("valid SPIFFE ID")
}

async fn quic_sink(ep: quinn::Endpoint, counter: Arc<AtomicU64>) {
    while let Some(inc) = ep.accept().await {
        let counter = counter.clone();
        tokio::spawn(async move {
            let Ok(conn) = inc.await else { return };
            while let Ok((_send, mut recv)) = conn.accept_bi().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                        counter.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
    }
}

async fn tls_sink(l: tokio::net::TcpListener, tls: Arc<TlsConfigs>, counter: Arc<AtomicU64>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server(ALPN_H2));
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, counter) = (acceptor.clone(), counter.clone());
        tokio::spawn(async move {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
}
