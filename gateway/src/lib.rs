//! Ferry's multicluster gateway: the data plane at a cluster's edge. It
//! accepts tunnels from linked clusters (mutual TLS with the gateway's own
//! identity, QUIC with the TLS/TCP fallback) and relays the end-to-end inner
//! sessions inside them to the destination edges of exported services,
//! over its own tunnel hop. It holds no key of the inner sessions: it sees
//! neither payload nor inner headers, and the destination authorizes the
//! caller by the caller's own SPIFFE ID.

pub mod admin;
pub mod config;
pub mod context;
pub mod metrics;
pub mod relay;
pub mod routes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ferry_control::client::{MeshView, TrustRefresh};
use ferry_transport::identity::{IdentityFiles, IdentityStore};
use ferry_transport::metrics::transport::TransportMetrics;
use ferry_transport::tls::{TlsConfigs, ALPN_H2};
use ferry_transport::tunnel::{handler, TunnelClient, TunnelConfig, TunnelServer};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use config::GatewayConfig;
use context::GatewayContext;
use metrics::GatewayMetrics;
use routes::Routes;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ferry_control::config_file::ConfigError),
    #[error("identity: {0}")]
    Identity(String),
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

pub struct RunningGateway {
    pub tunnel: SocketAddr,
    pub admin: SocketAddr,
    ctx: Arc<GatewayContext>,
    server: TunnelServer,
    admin_state: Arc<admin::AdminState>,
    stop: CancellationToken,
    background: tokio_util::sync::DropGuard,
}

async fn identity(
    cfg: &GatewayConfig,
    metrics: &TransportMetrics,
    stop: &CancellationToken,
) -> Result<(Arc<IdentityStore>, Option<TrustRefresh>), GatewayError> {
    match &cfg.identity {
        Some(files) => {
            let f = IdentityFiles {
                cert: files.cert.clone(),
                key: files.key.clone(),
                bundles: files.bundles.clone(),
            };
            let store =
                IdentityStore::load(&f).map_err(|e| GatewayError::Identity(e.to_string()))?;
            store.watch(f, files.reload_interval);
            Ok((store, None))
        }
        None => cfg
            .control
            .certified_identity(metrics, stop)
            .await
            .map(|(store, refresh)| (store, Some(refresh)))
            .map_err(|e| GatewayError::Identity(e.to_string())),
    }
}

/// Watches the control plane and keeps the routes current; resolves once
/// the first state has arrived.
fn watch_routes(
    ctx: Arc<GatewayContext>,
    tls: Arc<TlsConfigs>,
    trust_refresh: Option<TrustRefresh>,
    stop: CancellationToken,
) -> tokio::sync::oneshot::Receiver<()> {
    let control_id = ctx.cfg.control.control_id();
    let channel = ferry_control::client::channel(ctx.cfg.control.address, move || {
        tls.client(&control_id, ALPN_H2)
    });
    let extra: Vec<_> = ctx
        .cfg
        .allow_trust_domains
        .iter()
        .map(|t| t.0.clone())
        .collect();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let mut first = Some(first_tx);
    let mut view = MeshView::default();
    tokio::spawn(async move {
        let apply = move |update| {
            if view.apply(update).is_none() {
                return;
            }
            if let Some(r) = &trust_refresh {
                r.linked(&view.linked_trust_domains);
            }
            let routes = Routes::from_view(&view, &extra);
            let (targets, admitted) = routes.summary();
            tracing::info!(
                version = routes.version,
                targets,
                ?admitted,
                "gateway routes from the control plane"
            );
            ctx.routes.store(Arc::new(routes));
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
        };
        ferry_control::client::watch(channel, Vec::new(), apply, stop).await;
    });
    first_rx
}

/// Starts the gateway; it is ready (and `/ready` answers 200) when this
/// returns: it has its certificate and its cluster's map.
pub async fn start(
    cfg: GatewayConfig,
    stop: CancellationToken,
) -> Result<RunningGateway, GatewayError> {
    ferry_transport::install_crypto_provider();
    // Tens of milliseconds once per process: beside start-up, not in the
    // first handshake.
    let seeded = ferry_transport::warm_up_crypto();
    let metrics = GatewayMetrics::default();
    let transport_metrics = TransportMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    transport_metrics.register(&mut registry);
    let background = CancellationToken::new();
    let background_guard = background.clone().drop_guard();
    let (identity, trust_refresh) = identity(&cfg, &transport_metrics, &stop).await?;
    // Validated when a file is loaded; a config built in code is checked here.
    let suites = ferry_transport::crypto::parse_cipher_suites(&cfg.tunnel.cipher_suites)
        .map_err(|e| GatewayError::Other(format!("tunnel.cipher_suites: {e}")))?;
    let tls = TlsConfigs::with_cipher_suites(identity.clone(), transport_metrics, &suites)
        .map_err(|e| GatewayError::Other(format!("tunnel.cipher_suites: {e}")))?;
    let tcfg = TunnelConfig {
        max_udp_payload: cfg.tunnel.max_udp_payload,
        max_connections: cfg.limits.max_connections,
        // Relay inner sessions; never terminate them.
        inner_sessions: false,
        ..TunnelConfig::default()
    };
    let client =
        TunnelClient::new(tls.clone(), tcfg.clone()).map_err(|source| GatewayError::Bind {
            what: "the QUIC client endpoint",
            addr: "0.0.0.0:0".parse().expect("static"),
            source,
        })?;
    let ctx = Arc::new(GatewayContext {
        cfg: cfg.clone(),
        identity,
        client,
        routes: ArcSwap::from_pointee(Routes::default()),
        metrics,
        per_caller: Default::default(),
    });
    let first = watch_routes(ctx.clone(), tls.clone(), trust_refresh, background.clone());
    tokio::select! {
        _ = first => {}
        _ = stop.cancelled() => return Err(GatewayError::Other("stopped before the first routes arrived".into())),
    }
    let total = Arc::new(Semaphore::new(cfg.limits.relays_total));
    let server = {
        let ctx = ctx.clone();
        TunnelServer::bind(
            cfg.tunnel.listen,
            tls,
            tcfg,
            handler(move |stream| relay::handle(stream, ctx.clone(), total.clone())),
        )
        .await
        .map_err(|source| GatewayError::Bind {
            what: "the tunnel port",
            addr: cfg.tunnel.listen,
            source,
        })?
    };
    let admin_listener =
        ferry_transport::listener::bind(cfg.admin.listen).map_err(|source| GatewayError::Bind {
            what: "the admin port",
            addr: cfg.admin.listen,
            source,
        })?;
    let admin = admin_listener
        .local_addr()
        .map_err(|e| GatewayError::Other(e.to_string()))?;
    let admin_state = Arc::new(admin::AdminState {
        ctx: ctx.clone(),
        registry,
        ready: Default::default(),
    });
    {
        let state = admin_state.clone();
        tokio::spawn(ferry_control::admin::serve_http(
            admin_listener,
            move |req| admin::route(req, &state),
            background.clone(),
        ));
    }
    seeded.await;
    admin_state.ready.store(true, Ordering::Release);
    tracing::info!(id = %ctx.identity.current().id, tunnel = %server.local_addr(), %admin, "gateway ready");
    Ok(RunningGateway {
        tunnel: server.local_addr(),
        admin,
        ctx,
        server,
        admin_state,
        stop,
        background: background_guard,
    })
}

impl RunningGateway {
    /// One JSON line describing the listeners (printed when ready).
    pub fn ready_line(&self) -> String {
        format!(
            "{{\"ready\":true,\"id\":\"{}\",\"tunnel\":\"{}\",\"admin\":\"{}\"}}",
            self.ctx.identity.current().id,
            self.tunnel,
            self.admin
        )
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.ctx.metrics
    }

    /// Waits for the stop token, then drains: `/ready` 503, GOAWAY, relays
    /// in flight get the grace period.
    pub async fn wait(self) {
        self.stop.cancelled().await;
        self.shutdown().await;
    }

    pub async fn shutdown(self) {
        self.admin_state.ready.store(false, Ordering::Release);
        self.server.shutdown(self.ctx.cfg.shutdown_grace).await;
        self.ctx.client.close();
        drop(self.background);
        tracing::info!("gateway stopped");
    }
}

/// `ferry gateway --config FILE`: runs until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), GatewayError> {
    use tokio::signal::unix::{signal, SignalKind};
    let cfg = GatewayConfig::load(config_path)?;
    let handler = |kind, name: &str| {
        signal(kind).map_err(|e| GatewayError::Other(format!("installing the {name} handler: {e}")))
    };
    let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        on_signal.cancel();
    });
    let gateway = start(cfg, stop).await?;
    println!("{}", gateway.ready_line());
    gateway.wait().await;
    Ok(())
}
