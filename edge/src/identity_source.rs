//! Where the edge's certificate comes from: PEM files (reloaded when they
//! change), or the control plane (`Identity.Certify`: the first certificate
//! before the edge is ready, then renewal at ~70% of its lifetime).

use std::sync::Arc;
use std::time::SystemTime;

use ferry_control::client::Certifier;
use ferry_transport::identity::{IdentityFiles, IdentityStore, SpiffeId, TrustBundles};
use ferry_transport::metrics::transport::TransportMetrics;
use tokio_util::sync::CancellationToken;

use crate::config::{ControlConfig, EdgeConfig};
use crate::EdgeError;

/// The SPIFFE ID the control plane must prove.
pub fn control_id(c: &ControlConfig) -> SpiffeId {
    match &c.id {
        Some(id) => id.0.clone(),
        None => SpiffeId::parse(&format!(
            "spiffe://{}/ns/ferry-system/sa/control",
            c.workload_id.0.trust_domain()
        ))
        .expect("built from a valid trust domain"),
    }
}

/// The bootstrap trust for the control plane's certificate.
pub fn bootstrap_bundles(c: &ControlConfig) -> Result<Arc<TrustBundles>, EdgeError> {
    let mut bundles = TrustBundles::default();
    bundles
        .add_pem_file(&c.bundle)
        .map_err(|e| EdgeError::Other(format!("control.bundle: {e}")))?;
    Ok(Arc::new(bundles))
}

/// Loads or obtains the identity; with the control plane, waits (retrying)
/// for the first certificate unless `stop` is cancelled first.
pub async fn start(
    cfg: &EdgeConfig,
    metrics: &TransportMetrics,
    stop: &CancellationToken,
) -> Result<Arc<IdentityStore>, EdgeError> {
    if let Some(id) = &cfg.identity {
        let files = IdentityFiles {
            cert: id.cert.clone(),
            key: id.key.clone(),
            bundles: id.bundles.clone(),
        };
        let store = IdentityStore::load(&files)?;
        store.watch(files, id.reload_interval);
        return Ok(store);
    }
    let c = cfg
        .control
        .as_ref()
        .ok_or_else(|| EdgeError::Other("no [identity] and no [control] section".into()))?;
    let token = std::fs::read_to_string(&c.token_file).map_err(|e| {
        EdgeError::Other(format!(
            "control.token_file {}: {e}",
            c.token_file.display()
        ))
    })?;
    if token.trim().is_empty() {
        return Err(EdgeError::Other(format!(
            "control.token_file {}: the file is empty",
            c.token_file.display()
        )));
    }
    let certifier = Arc::new(Certifier::new(
        c.address,
        control_id(c),
        bootstrap_bundles(c)?,
        c.workload_id.0.clone(),
        token,
        metrics.clone(),
    ));
    tracing::info!(id = %c.workload_id.0, control = %c.address, "asking the control plane for a certificate");
    let material = certifier
        .first(stop)
        .await
        .ok_or_else(|| EdgeError::Other("stopped before the first certificate arrived".into()))?;
    let store = IdentityStore::new(material);
    certifier.spawn_renewal(store.clone(), SystemTime::now(), stop.clone());
    Ok(store)
}
