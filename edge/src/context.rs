//! Everything the edge's listeners share: configuration, identity, the
//! tunnel client, discovery, the balancer, metrics and the shutdown signal.

use std::sync::Arc;

use ferry_transport::identity::{IdentityStore, SpiffeId};
use ferry_transport::tunnel::TunnelClient;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::Balancer;
use crate::config::EdgeConfig;
use crate::discovery::Discovery;
use crate::metrics::EdgeMetrics;

pub struct EdgeContext {
    pub cfg: EdgeConfig,
    pub identity: Arc<IdentityStore>,
    pub client: TunnelClient,
    pub discovery: Arc<Discovery>,
    pub balancer: Balancer,
    pub metrics: EdgeMetrics,
    /// Cancelled when the edge starts shutting down.
    pub shutdown: CancellationToken,
    /// Every outbound connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    pub app_clients: crate::inbound::app_client::AppClients,
    /// Inbound authorization (from the config file, or pushed by the
    /// control plane).
    pub authz: arc_swap::ArcSwap<crate::inbound::authz::Authorizer>,
    /// `inbound.identity_header`, parsed once (validated with the config).
    pub identity_header: http::HeaderName,
}

impl EdgeContext {
    pub fn id(&self) -> SpiffeId {
        self.identity.current().id.clone()
    }
}
