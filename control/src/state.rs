//! The state the control plane serves, versioned: every valid mesh file
//! becomes a new [`MeshState`] published on a watch channel, with the delta
//! from the previous version computed once for every watcher. The served
//! services are the mesh file's merged with the imports from linked
//! clusters; a new mesh file or new imports each make a new version. The
//! reloader polls the file; an invalid file is logged and the last good
//! state kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::SpiffeId;
use tokio::sync::watch;

use crate::api;
use crate::file_poller::FilePoller;
use crate::imports::{merge, Imports};
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
    /// Whether the linked trust domains changed.
    pub links: bool,
}

impl Delta {
    /// The difference between two states.
    pub fn between(old: &MeshState, new: &MeshState) -> Delta {
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
        let (old_p, new_p) = (&old.mesh.policies, &new.mesh.policies);
        let policies = old_p
            .keys()
            .chain(new_p.keys())
            .filter(|id| old_p.get(*id) != new_p.get(*id))
            .cloned()
            .collect();
        Delta {
            from: old.version,
            changed,
            removed,
            policies,
            links: old.linked_trust_domains() != new.linked_trust_domains(),
        }
    }
}

/// One version of the served state.
#[derive(Debug)]
pub struct MeshState {
    pub version: u64,
    pub mesh: Mesh,
    pub ca: Arc<CertificateAuthority>,
    /// What the links currently bring in.
    pub imports: Arc<Imports>,
    /// What is served: the mesh file's services merged with the imports.
    pub services: BTreeMap<String, api::Service>,
    /// From the previous version (absent for the first).
    pub delta: Option<Delta>,
}

impl MeshState {
    fn new(version: u64, mesh: Mesh, ca: Arc<CertificateAuthority>, imports: Arc<Imports>) -> Self {
        Self {
            version,
            services: merge(&mesh, &imports),
            mesh,
            ca,
            imports,
            delta: None,
        }
    }

    /// The trust domains of the linked clusters.
    pub fn linked_trust_domains(&self) -> Vec<String> {
        self.mesh
            .links
            .iter()
            .map(|l| l.trust_domain.to_string())
            .collect()
    }

    /// Whether `id` belongs to a linked cluster.
    pub fn is_linked(&self, id: &SpiffeId) -> bool {
        self.mesh
            .links
            .iter()
            .any(|l| &l.trust_domain == id.trust_domain())
    }
}

/// The publisher of [`MeshState`]s.
#[derive(Debug, Clone)]
pub struct StateHandle {
    tx: Arc<watch::Sender<Arc<MeshState>>>,
}

impl StateHandle {
    pub fn new(loaded: Loaded) -> Self {
        let state = MeshState::new(1, loaded.mesh, loaded.ca, Arc::default());
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

    /// Publishes the next version, built by `next` from the current one
    /// (atomically: reloads and imports never lose each other's changes),
    /// unless `next` returns `None`. Returns the version published.
    fn advance(
        &self,
        next: impl FnOnce(&MeshState) -> Option<(Mesh, Arc<CertificateAuthority>, Arc<Imports>)>,
    ) -> Option<u64> {
        let mut published = None;
        self.tx.send_if_modified(|current| {
            let Some((mesh, ca, imports)) = next(current) else {
                return false;
            };
            let mut state = MeshState::new(current.version + 1, mesh, ca, imports);
            let delta = Delta::between(current, &state);
            tracing::info!(
                version = state.version,
                changed = delta.changed.len(),
                removed = delta.removed.len(),
                policies = delta.policies.len(),
                "mesh state published"
            );
            state.delta = Some(delta);
            published = Some(state.version);
            *current = Arc::new(state);
            true
        });
        published
    }

    /// Publishes a new mesh file (the imports stay); returns its version.
    pub fn publish(&self, loaded: Loaded) -> u64 {
        self.advance(|current| Some((loaded.mesh, loaded.ca, current.imports.clone())))
            .expect("a mesh file is always published")
    }

    /// Replaces the imports; publishes a new version (returned) if they
    /// changed (watchers hear only of the services that did).
    pub fn set_imports(&self, imports: Imports) -> Option<u64> {
        self.advance(|current| {
            if *current.imports == imports {
                return None;
            }
            Some((current.mesh.clone(), current.ca.clone(), Arc::new(imports)))
        })
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
