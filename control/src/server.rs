//! Starts the control plane: loads the mesh file, gives itself an SVID from
//! the mesh CA (renewed at half its lifetime), serves `Identity` and
//! `Discovery` over gRPC on TLS 1.3 (client certificate optional: edges
//! without one may only call `Certify`), the admin port, and the reloader.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_transport::identity::{IdentityStore, Material, SpiffeId};
use ferry_transport::metrics::transport::TransportMetrics;
use ferry_transport::tls::{TlsConfigs, ALPN_H2};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::discovery_server::DiscoveryServer;
use crate::api::identity_server::IdentityServer;
use crate::discovery_service::DiscoveryService;
use crate::identity_service::{IdentityService, MAX_CSR_BYTES};
use crate::metrics::ControlMetrics;
use crate::state::{MeshState, StateHandle};
use crate::{admin, federation, mesh, tls_incoming, ControlError};

/// Where to listen, overriding the mesh file (tests bind port 0).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// A running control plane.
pub struct RunningControl {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub id: SpiffeId,
    state: StateHandle,
    tls: Arc<TlsConfigs>,
    metrics: ControlMetrics,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<()>,
}

/// The control plane's own certificate, from its own CA, trusting this
/// mesh's and every linked cluster's bundle.
fn own_material(state: &MeshState, id: &SpiffeId) -> Result<Material, ControlError> {
    let issued = state.ca.issue(id, state.mesh.cert_ttl).map_err(|e| {
        ControlError::Identity(format!("issuing the control plane's certificate: {e}"))
    })?;
    let bundles = federation::trust(&federation::bundles(&state.mesh, &state.ca))
        .map_err(|e| ControlError::Identity(e.to_string()))?;
    Material::from_pem(
        issued.cert_chain_pem.as_bytes(),
        "the control plane's certificate",
        issued.key_pem.as_bytes(),
        "the control plane's key",
        bundles,
    )
    .map_err(|e| ControlError::Identity(e.to_string()))
}

/// Renews the control plane's own certificate at half its lifetime, and
/// whenever a reload changes the CA or the linked bundles, from the
/// current state.
fn renew_own(state: StateHandle, store: Arc<IdentityStore>, id: SpiffeId, stop: CancellationToken) {
    let mut rx = state.subscribe();
    tokio::spawn(async move {
        let trusted = |s: &MeshState| federation::bundles(&s.mesh, &s.ca);
        let mut last = trusted(&rx.borrow_and_update());
        let renew_at = || tokio::time::Instant::now() + state.current().mesh.cert_ttl / 2;
        let mut deadline = renew_at();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if trusted(&rx.borrow_and_update()) == last {
                        continue;
                    }
                }
                _ = stop.cancelled() => return,
            }
            let current = state.current();
            deadline = renew_at();
            match own_material(&current, &id) {
                Ok(m) => {
                    last = trusted(&current);
                    store.set(m);
                }
                Err(e) => {
                    tracing::error!(error = %e, "renewing the control plane's certificate failed")
                }
            }
        }
    });
}

impl RunningControl {
    /// Starts everything; the control plane is ready when this returns.
    pub async fn start(mesh_path: &Path, overrides: Overrides) -> Result<Self, ControlError> {
        ferry_transport::install_crypto_provider();
        // Tens of milliseconds once per process: beside start-up, not in
        // the first handshake.
        let seeded = ferry_transport::warm_up_crypto();
        let loaded = mesh::load(mesh_path)?;
        let listen = overrides.listen.unwrap_or(loaded.mesh.listen);
        let admin_addr = overrides.admin.unwrap_or(loaded.mesh.admin);
        let id = loaded.mesh.control_id.clone();
        let reload_interval = loaded.mesh.reload_interval;
        let state = StateHandle::new(loaded);
        let material = own_material(&state.current(), &id)?;
        let stop = CancellationToken::new();

        let metrics = ControlMetrics::default();
        metrics.mesh_version.set(1);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let transport_metrics = TransportMetrics::new();
        transport_metrics.register(&mut registry);

        let store = IdentityStore::new(material);
        renew_own(state.clone(), store.clone(), id.clone(), stop.clone());
        let tls = TlsConfigs::new(store, transport_metrics);
        let server_tls = tls.clone();
        let bind = |what: &'static str, addr: SocketAddr| async move {
            ferry_transport::listener::bind(addr).map_err(|source| ControlError::Bind {
                what,
                addr,
                source,
            })
        };
        let listener = bind("the gRPC port", listen).await?;
        let grpc = listener.local_addr().map_err(|source| ControlError::Bind {
            what: "the gRPC port",
            addr: listen,
            source,
        })?;
        let admin_listener = bind("the admin port", admin_addr).await?;
        let admin = admin_listener
            .local_addr()
            .map_err(|source| ControlError::Bind {
                what: "the admin port",
                addr: admin_addr,
                source,
            })?;

        state.reload_loop(
            PathBuf::from(mesh_path),
            reload_interval,
            metrics.clone(),
            stop.clone(),
        );
        tokio::spawn(admin::serve(
            admin_listener,
            Arc::new(admin::AdminState {
                registry,
                state: state.clone(),
            }),
            stop.clone(),
        ));

        let identity = IdentityServer::new(IdentityService {
            state: state.clone(),
            metrics: metrics.clone(),
        })
        .max_decoding_message_size(MAX_CSR_BYTES + 4096);
        let discovery = DiscoveryServer::new(DiscoveryService {
            state: state.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        })
        .max_decoding_message_size(1024 * 1024);
        let incoming = tls_incoming::incoming(
            listener,
            move || tls_incoming::acceptor(server_tls.server_optional_client_auth(ALPN_H2)),
            stop.clone(),
        );
        let shutdown = stop.clone();
        let served = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(20)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .concurrency_limit_per_connection(256)
                .timeout(Duration::from_secs(30))
                .add_service(identity)
                .add_service(discovery)
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "the gRPC server failed");
            }
        });
        seeded.await;
        tracing::info!(%grpc, %admin, %id, "control plane ready");
        Ok(Self {
            grpc,
            admin,
            id,
            state,
            tls,
            metrics,
            stop,
            served,
        })
    }

    /// One JSON line describing the listeners (printed when ready).
    pub fn ready_line(&self) -> String {
        format!(
            "{{\"ready\":true,\"id\":\"{}\",\"grpc\":\"{}\",\"admin\":\"{}\"}}",
            self.id, self.grpc, self.admin
        )
    }

    /// Stops serving: open watch streams end, listeners close, calls in
    /// flight get 5 s to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let abort = self.served.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.served)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// The served state (extensions such as links publish imports here).
    pub fn state(&self) -> &StateHandle {
        &self.state
    }

    /// The control plane's own TLS identity (its SVID, renewed, trusting
    /// this mesh and its linked clusters), for calls to other control planes.
    pub fn tls(&self) -> &Arc<TlsConfigs> {
        &self.tls
    }

    pub fn metrics(&self) -> &ControlMetrics {
        &self.metrics
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) {
        let _ = self.served.await;
    }
}
