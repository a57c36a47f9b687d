//! The state the control plane serves, versioned: every valid mesh file
//! becomes a new [`MeshState`] published on a watch channel, with the delta
//! from the previous version computed once for every watcher. The reloader
//! polls the file; an invalid file is logged and the last good state kept.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::SpiffeId;
use tokio::sync::watch;

use crate::file_poller::FilePoller;
use crate::mesh::{self, Loaded, Mesh};
use crate::metrics::ControlMetrics;

/// What changed from one version to the next.
#[derive(Debug, Default, Clone)]
pub struct Delta {
    /// The version this delta applies to.
    pub from: u64,
    /// Authorities added or changed.
    pub changed: BTreeSet<String>,
    /// Authorities removed.
    pub removed: BTreeSet<String>,
    /// Identities whose inbound policy changed.
    pub policies: BTreeSet<SpiffeId>,
}

impl Delta {
    /// The difference between two meshes.
    pub fn between(from: u64, old: &Mesh, new: &Mesh) -> Delta {
        let changed = new
            .services
            .iter()
            .filter(|(k, v)| old.services.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        let removed = old
            .services
            .keys()
            .filter(|k| !new.services.contains_key(*k))
            .cloned()
            .collect();
        let policies = old
            .policies
            .keys()
            .chain(new.policies.keys())
            .filter(|id| old.policies.get(*id) != new.policies.get(*id))
            .cloned()
            .collect();
        Delta {
            from,
            changed,
            removed,
            policies,
        }
    }
}

/// One version of the served state.
#[derive(Debug)]
pub struct MeshState {
    pub version: u64,
    pub mesh: Mesh,
    pub ca: Arc<CertificateAuthority>,
    /// From the previous version (absent for the first).
    pub delta: Option<Delta>,
}

/// The publisher of [`MeshState`]s.
#[derive(Debug, Clone)]
pub struct StateHandle {
    tx: Arc<watch::Sender<Arc<MeshState>>>,
}

impl StateHandle {
    pub fn new(loaded: Loaded) -> Self {
        let state = MeshState {
            version: 1,
            mesh: loaded.mesh,
            ca: loaded.ca,
            delta: None,
        };
        Self {
            tx: Arc::new(watch::channel(Arc::new(state)).0),
        }
    }

    pub fn current(&self) -> Arc<MeshState> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MeshState>> {
        self.tx.subscribe()
    }

    /// Publishes a new version; returns it.
    pub fn publish(&self, loaded: Loaded) -> u64 {
        let old = self.current();
        let version = old.version + 1;
        let delta = Delta::between(old.version, &old.mesh, &loaded.mesh);
        tracing::info!(
            version,
            changed = delta.changed.len(),
            removed = delta.removed.len(),
            policies = delta.policies.len(),
            "mesh state published"
        );
        self.tx.send_replace(Arc::new(MeshState {
            version,
            mesh: loaded.mesh,
            ca: loaded.ca,
            delta: Some(delta),
        }));
        version
    }

    /// Polls the mesh file every `interval` and publishes every valid
    /// change. Ends when `stop` is cancelled.
    pub fn reload_loop(
        &self,
        path: PathBuf,
        interval: Duration,
        metrics: ControlMetrics,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        // The state loaded before this call is the baseline.
        let mut poller = FilePoller::new(path.clone(), interval);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = poller.changed() => {}
                    _ = stop.cancelled() => return,
                }
                match mesh::load(&path) {
                    Ok(loaded) => {
                        let version = me.publish(loaded);
                        metrics.reloaded(true, version);
                    }
                    Err(e) => {
                        metrics.reloaded(false, me.current().version);
                        tracing::error!(error = %e, "mesh file rejected; keeping the last good state");
                    }
                }
            }
        })
    }
}
