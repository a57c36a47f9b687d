//! Ferry's edge: the sidecar beside every workload. Outbound, it takes the
//! application's plaintext HTTP and TCP and carries them over the tunnel to
//! the destination's edge; inbound, it serves the tunnel port, authorizes
//! callers by SPIFFE ID and forwards to the local application. An admin
//! port exposes metrics, readiness, the effective configuration and
//! shutdown.

pub mod admin;
pub mod balance;
pub mod config;
pub mod context;
pub mod discovery;
pub mod identity_source;
pub mod inbound;
pub mod iptables;
pub mod metrics;
pub mod outbound;
pub mod prefixed_io;
pub mod tunnel_body;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::{Congestion, TunnelClient, TunnelConfig, TunnelServer};
use ferry_transport::TransportKind;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::{CongestionChoice, EdgeConfig, ForceTransport};
use context::EdgeContext;
use discovery::Discovery;
use metrics::EdgeMetrics;

/// Connections to the local application idle this long are closed.
const APP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("identity: {0}")]
    Identity(#[from] ferry_transport::identity::IdentityError),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// A running edge.
pub struct RunningEdge {
    pub tunnel: SocketAddr,
    pub admin: SocketAddr,
    /// Explicit outbound listeners as bound, with their service.
    pub outbound: Vec<(SocketAddr, String)>,
    pub transparent: Option<SocketAddr>,
    ctx: Arc<EdgeContext>,
    server: TunnelServer,
    /// Closes the admin port once the drain is over.
    admin_stopped: CancellationToken,
    /// Certificate renewal and the control-plane watch (stopped last).
    background: tokio_util::sync::DropGuard,
}

fn tunnel_config(cfg: &EdgeConfig) -> TunnelConfig {
    TunnelConfig {
        head_start: cfg.tunnel.head_start,
        force_transport: cfg.tunnel.force_transport.map(|f| match f {
            ForceTransport::Quic => TransportKind::Quic,
            ForceTransport::H2 => TransportKind::H2,
        }),
        max_udp_payload: cfg.tunnel.max_udp_payload,
        congestion: match cfg.tunnel.congestion {
            None => TunnelConfig::default().congestion,
            Some(CongestionChoice::Cubic) => Congestion::Cubic,
            Some(CongestionChoice::NewReno) => Congestion::NewReno,
            Some(CongestionChoice::Bbr) => Congestion::Bbr,
        },
        max_concurrent_streams: cfg
            .tunnel
            .max_concurrent_streams
            .unwrap_or(TunnelConfig::default().max_concurrent_streams),
        pool_idle_timeout: cfg
            .tunnel
            .pool_idle_timeout
            .unwrap_or(TunnelConfig::default().pool_idle_timeout),
        early_data: cfg.tunnel.early_data,
        ..TunnelConfig::default()
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, EdgeError> {
    ferry_transport::listener::bind(addr).map_err(|source| EdgeError::Bind { what, addr, source })
}

/// Starts every listener. The edge is ready when this returns.
pub async fn start(cfg: EdgeConfig) -> Result<RunningEdge, EdgeError> {
    start_with_shutdown(cfg, CancellationToken::new()).await
}

/// [`start`], with the token that starts the drain (cancelling it while
/// the edge still waits for its first certificate or discovery state makes
/// `start` give up).
pub async fn start_with_shutdown(
    cfg: EdgeConfig,
    shutdown: CancellationToken,
) -> Result<RunningEdge, EdgeError> {
    ferry_transport::install_crypto_provider();
    // Tens of milliseconds once per process: beside start-up, not in the
    // first handshake.
    let seeded = ferry_transport::warm_up_crypto();
    let metrics = EdgeMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    // Renewal and the control-plane watch run until the edge has stopped;
    // if starting fails half-way they stop with it.
    let background = CancellationToken::new();
    let background_guard = background.clone().drop_guard();
    let (identity, trust_refresh) =
        identity_source::start(&cfg, &metrics.transport, &shutdown).await?;
    let discovery = match &cfg.discovery.mesh_file {
        Some(mesh_file) => {
            let d = Discovery::from_mesh_file(mesh_file)?;
            d.watch(mesh_file.clone(), cfg.discovery.reload_interval);
            d
        }
        // Filled by the control-plane watch below.
        None => Discovery::new(discovery::Snapshot::default()),
    };

    // Validated when a file is loaded; a config built in code is checked here.
    let suites = ferry_transport::crypto::parse_cipher_suites(&cfg.tunnel.cipher_suites)
        .map_err(|e| EdgeError::Other(format!("tunnel.cipher_suites: {e}")))?;
    let tls = TlsConfigs::with_cipher_suites(identity.clone(), metrics.transport.clone(), &suites)
        .map_err(|e| EdgeError::Other(format!("tunnel.cipher_suites: {e}")))?;
    let tcfg = tunnel_config(&cfg);
    let client = TunnelClient::new(tls.clone(), tcfg.clone()).map_err(|e| EdgeError::Bind {
        what: "the QUIC client endpoint",
        addr: "0.0.0.0:0".parse().expect("static"),
        source: e,
    })?;
    // Validated when a file is loaded; a config built in code is checked here.
    let identity_header = cfg
        .inbound
        .identity_header_name()
        .map_err(|e| EdgeError::Other(format!("inbound.identity_header {e}")))?;
    let ctx = Arc::new(EdgeContext {
        app_clients: inbound::app_client::AppClients::new(
            cfg.inbound.app_host,
            tcfg.target_connect_timeout,
            APP_IDLE_TIMEOUT,
        ),
        authz: arc_swap::ArcSwap::from_pointee(inbound::authz::Authorizer::new(&cfg.inbound.ports)),
        identity_header,
        cfg: cfg.clone(),
        identity,
        client,
        discovery,
        balancer: Default::default(),
        metrics,
        shutdown,
        tasks: TaskTracker::new(),
    });
    if let (None, Some(control)) = (&cfg.discovery.mesh_file, &cfg.control) {
        let first = discovery::control::spawn_watch(
            control,
            ctx.clone(),
            tls.clone(),
            trust_refresh,
            background.clone(),
        );
        tokio::select! {
            _ = first => {}
            _ = ctx.shutdown.cancelled() => {
                return Err(EdgeError::Other("stopped before the first discovery state arrived".into()));
            }
        }
    }

    let server = {
        let ctx = ctx.clone();
        TunnelServer::bind(
            cfg.tunnel.listen,
            tls,
            tcfg,
            Arc::new(move |stream| inbound::handle(stream, ctx.clone())),
        )
        .await
        .map_err(|source| EdgeError::Bind {
            what: "the tunnel port",
            addr: cfg.tunnel.listen,
            source,
        })?
    };

    let mut outbound_addrs = Vec::new();
    for l in &cfg.outbound.listeners {
        let listener = bind("an outbound listener", l.listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| EdgeError::Other(e.to_string()))?;
        outbound_addrs.push((addr, l.service.clone()));
        tokio::spawn(outbound::serve(
            listener,
            Some(l.service.clone()),
            ctx.clone(),
        ));
    }
    let transparent = match cfg.outbound.transparent {
        Some(a) => {
            let listener = bind("the transparent listener", a).await?;
            let addr = listener
                .local_addr()
                .map_err(|e| EdgeError::Other(e.to_string()))?;
            tokio::spawn(outbound::serve(listener, None, ctx.clone()));
            Some(addr)
        }
        None => None,
    };
    let admin_listener = bind("the admin listener", cfg.admin.listen).await?;
    let admin = admin_listener
        .local_addr()
        .map_err(|e| EdgeError::Other(e.to_string()))?;
    let listeners = serde_json::json!({
        "tunnel": server.local_addr(),
        "admin": admin,
        "outbound": outbound_addrs.iter().map(|(a, s)| serde_json::json!({"listen": a, "service": s})).collect::<Vec<_>>(),
        "transparent": transparent,
    });
    let state = Arc::new(admin::AdminState {
        ctx: ctx.clone(),
        registry,
        ready: Default::default(),
        stopped: CancellationToken::new(),
        listeners,
    });
    tokio::spawn(admin::serve(admin_listener, state.clone()));
    seeded.await;
    state.ready.store(true, Ordering::Release);
    tracing::info!(id = %ctx.id(), tunnel = %server.local_addr(), %admin, "edge ready");
    Ok(RunningEdge {
        tunnel: server.local_addr(),
        admin,
        outbound: outbound_addrs,
        transparent,
        ctx,
        server,
        admin_stopped: state.stopped.clone(),
        background: background_guard,
    })
}

impl RunningEdge {
    /// The token that starts a graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.ctx.shutdown.clone()
    }

    /// One JSON line describing the listeners (printed when ready).
    pub fn ready_line(&self) -> String {
        serde_json::json!({
            "ready": true,
            "id": self.ctx.id().to_string(),
            "tunnel": self.tunnel,
            "admin": self.admin,
            "outbound": self.outbound.iter().map(|(a, s)| serde_json::json!({"listen": a, "service": s})).collect::<Vec<_>>(),
            "transparent": self.transparent,
        })
        .to_string()
    }

    /// Waits until shutdown is requested, then drains.
    pub async fn wait(self) {
        self.ctx.shutdown.cancelled().await;
        self.drain().await;
    }

    /// Graceful shutdown: stop accepting, GOAWAY to peers, let in-flight
    /// requests and streams finish within the grace period, then close.
    pub async fn shutdown(self) {
        self.ctx.shutdown.cancel();
        self.drain().await;
    }

    async fn drain(self) {
        let grace = self.ctx.cfg.shutdown_grace;
        tracing::info!(?grace, "draining");
        self.ctx.tasks.close();
        let outbound = async {
            if tokio::time::timeout(grace, self.ctx.tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!("grace period over with outbound connections still open");
            }
        };
        tokio::join!(self.server.shutdown(grace), outbound);
        self.ctx.client.close();
        self.admin_stopped.cancel();
        drop(self.background);
        tracing::info!("edge stopped");
    }
}

/// `ferry edge --config FILE`: runs until SIGTERM, SIGINT or `/shutdown`.
pub async fn run(config_path: &Path) -> Result<(), EdgeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let cfg = EdgeConfig::load(config_path)?;
    // Signal handlers are in place before anyone can learn we are ready.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| EdgeError::Other(format!("installing the SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| EdgeError::Other(format!("installing the SIGINT handler: {e}")))?;
    // A signal also ends a start still waiting for the control plane.
    let token = CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        on_signal.cancel();
    });
    let edge = start_with_shutdown(cfg, token).await?;
    println!("{}", edge.ready_line());
    edge.wait().await;
    Ok(())
}

#[cfg(test)]
mod tunnel_config_tests {
    use super::*;

    fn with_tunnel(section: &str) -> EdgeConfig {
        toml::from_str(&format!(
            "[identity]\ncert = \"c\"\nkey = \"k\"\nbundles = [\"b\"]\n[tunnel]\n{section}"
        ))
        .expect("valid edge config")
    }

    #[test]
    fn congestion_defaults_to_the_transport_default() {
        let cfg = tunnel_config(&with_tunnel(""));
        assert_eq!(cfg.congestion, TunnelConfig::default().congestion);
        assert_eq!(cfg.congestion, Congestion::Bbr);
    }

    #[test]
    fn congestion_is_configurable() {
        for (name, c) in [
            ("cubic", Congestion::Cubic),
            ("newreno", Congestion::NewReno),
            ("bbr", Congestion::Bbr),
        ] {
            let cfg = tunnel_config(&with_tunnel(&format!("congestion = \"{name}\"")));
            assert_eq!(cfg.congestion, c, "{name}");
        }
        assert!(toml::from_str::<EdgeConfig>("[tunnel]\ncongestion = \"reno\"").is_err());
    }
}
