//! What the gateway's handlers share.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ferry_transport::identity::IdentityStore;
use ferry_transport::tunnel::TunnelClient;

use crate::config::GatewayConfig;
use crate::metrics::GatewayMetrics;
use crate::relay::PerCaller;
use crate::routes::Routes;

pub struct GatewayContext {
    pub cfg: GatewayConfig,
    pub identity: Arc<IdentityStore>,
    pub client: TunnelClient,
    pub routes: ArcSwap<Routes>,
    pub metrics: GatewayMetrics,
    pub per_caller: Arc<PerCaller>,
}
