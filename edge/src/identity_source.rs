//! Where the edge's certificate comes from: PEM files (reloaded when they
//! change), or the control plane (`Identity.Certify`: the first certificate
//! before the edge is ready, then renewal at ~70% of its lifetime).

use std::sync::Arc;

use ferry_control::client::TrustRefresh;
use ferry_transport::identity::{IdentityFiles, IdentityStore};
use ferry_transport::metrics::transport::TransportMetrics;
use tokio_util::sync::CancellationToken;

use crate::config::EdgeConfig;
use crate::EdgeError;

/// Loads or obtains the identity; with the control plane, waits (retrying)
/// for the first certificate unless `stop` is cancelled first, and returns
/// the handle that renews it early when the cluster's links change.
pub async fn start(
    cfg: &EdgeConfig,
    metrics: &TransportMetrics,
    stop: &CancellationToken,
) -> Result<(Arc<IdentityStore>, Option<TrustRefresh>), EdgeError> {
    if let Some(id) = &cfg.identity {
        let files = IdentityFiles {
            cert: id.cert.clone(),
            key: id.key.clone(),
            bundles: id.bundles.clone(),
        };
        let store = IdentityStore::load(&files)?;
        store.watch(files, id.reload_interval);
        return Ok((store, None));
    }
    let c = cfg
        .control
        .as_ref()
        .ok_or_else(|| EdgeError::Other("no [identity] and no [control] section".into()))?;
    let (store, refresh) = c
        .certified_identity(metrics, stop)
        .await
        .map_err(|e| EdgeError::Other(e.to_string()))?;
    Ok((store, Some(refresh)))
}
