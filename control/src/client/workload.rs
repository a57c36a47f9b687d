//! A workload's connection to the control plane as written in its config
//! file (`[control]` of an edge or a gateway), and getting its identity
//! from it: the first certificate (retrying until it comes), then renewal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use ferry_transport::identity::{IdentityStore, SpiffeId, TrustBundles};
use ferry_transport::metrics::transport::TransportMetrics;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{Certifier, TrustRefresh};
use crate::config_file::SpiffeIdValue;

/// Where the control plane is and how to prove who we are to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The control plane's gRPC address.
    pub address: SocketAddr,
    /// The SPIFFE ID the control plane must prove (default
    /// `spiffe://<trust domain of workload_id>/ns/ferry-system/sa/control`).
    #[serde(default)]
    pub id: Option<SpiffeIdValue>,
    /// This workload's SPIFFE ID (what the CSR asks for).
    pub workload_id: SpiffeIdValue,
    /// A file holding the workload's bootstrap token.
    pub token_file: PathBuf,
    /// The CA certificate(s) the control plane's certificate chains to.
    pub bundle: PathBuf,
}

/// Why the identity could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadIdentityError {
    #[error("control.token_file {path}: {detail}")]
    Token { path: String, detail: String },
    #[error("control.bundle: {0}")]
    Bundle(String),
    #[error("stopped before the first certificate arrived")]
    Stopped,
}

impl ControlConfig {
    /// Resolves relative paths against `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        for p in [&mut self.token_file, &mut self.bundle] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The SPIFFE ID the control plane must prove.
    pub fn control_id(&self) -> SpiffeId {
        match &self.id {
            Some(id) => id.0.clone(),
            None => SpiffeId::parse(&format!(
                "spiffe://{}/ns/ferry-system/sa/control",
                self.workload_id.0.trust_domain()
            ))
            .expect("built from a valid trust domain"),
        }
    }

    /// The bootstrap trust for the control plane's certificate.
    pub fn bootstrap_bundles(&self) -> Result<Arc<TrustBundles>, WorkloadIdentityError> {
        let mut bundles = TrustBundles::default();
        bundles
            .add_pem_file(&self.bundle)
            .map_err(|e| WorkloadIdentityError::Bundle(e.to_string()))?;
        Ok(Arc::new(bundles))
    }

    /// Gets the first certificate (retrying with backoff until it comes or
    /// `stop` is cancelled) and keeps it renewed until `stop`; the
    /// [`TrustRefresh`] renews it early when the cluster's links change
    /// (feed it the watch's linked trust domains).
    pub async fn certified_identity(
        &self,
        metrics: &TransportMetrics,
        stop: &CancellationToken,
    ) -> Result<(Arc<IdentityStore>, TrustRefresh), WorkloadIdentityError> {
        let token_err = |detail: String| WorkloadIdentityError::Token {
            path: self.token_file.display().to_string(),
            detail,
        };
        let token =
            std::fs::read_to_string(&self.token_file).map_err(|e| token_err(e.to_string()))?;
        if token.trim().is_empty() {
            return Err(token_err("the file is empty".into()));
        }
        let certifier = Arc::new(Certifier::new(
            self.address,
            self.control_id(),
            self.bootstrap_bundles()?,
            self.workload_id.0.clone(),
            token,
            metrics.clone(),
        ));
        tracing::info!(id = %self.workload_id.0, control = %self.address, "asking the control plane for a certificate");
        let material = certifier
            .first(stop)
            .await
            .ok_or(WorkloadIdentityError::Stopped)?;
        let store = IdentityStore::new(material);
        let refresh = TrustRefresh::new(store.clone());
        certifier.spawn_renewal(
            store.clone(),
            SystemTime::now(),
            refresh.clone(),
            stop.clone(),
        );
        Ok((store, refresh))
    }
}
