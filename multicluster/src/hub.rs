//! Every link's state in one place: what each linked cluster exports (the
//! last known, kept while its watch is broken) and whether its gateway is
//! up. Any change recomposes the imports of the links that are up and
//! hands them to the served state. [`Hub::run`] follows the mesh file: a
//! new link starts its tasks, a removed one stops and its imports go, a
//! changed one restarts keeping what was known.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_control::api::{Service, WatchUpdate};
use ferry_control::imports::Imports;
use ferry_control::mesh::Link;
use ferry_control::metrics::ControlMetrics;
use ferry_control::state::StateHandle;
use ferry_transport::tls::TlsConfigs;
use tokio_util::sync::CancellationToken;

use crate::import::import;

/// One link as known now.
struct Entry {
    link: Link,
    /// Incremented at every restart: updates from stopped tasks are ignored.
    generation: u64,
    /// The linked cluster's exported services, by their remote authority.
    remote: BTreeMap<String, Service>,
    /// Whether the linked gateway is up (false until its first probe).
    up: bool,
    stop: CancellationToken,
}

struct Inner {
    state: StateHandle,
    tls: Arc<TlsConfigs>,
    metrics: ControlMetrics,
    links: Mutex<BTreeMap<String, Entry>>,
}

/// Shared by the links' tasks; cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

impl Hub {
    pub fn new(state: StateHandle, tls: Arc<TlsConfigs>, metrics: ControlMetrics) -> Self {
        Self(Arc::new(Inner {
            state,
            tls,
            metrics,
            links: Mutex::new(BTreeMap::new()),
        }))
    }

    pub fn tls(&self) -> &Arc<TlsConfigs> {
        &self.0.tls
    }

    pub fn metrics(&self) -> &ControlMetrics {
        &self.0.metrics
    }

    fn links(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.0.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the mesh file's links until `stop`; then stops every link.
    pub async fn run(self, stop: CancellationToken) {
        let mut rx = self.0.state.subscribe();
        loop {
            let links = rx.borrow_and_update().mesh.links.clone();
            self.reconcile(&links, &stop);
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = stop.cancelled() => break,
            }
        }
        for entry in self.links().values() {
            entry.stop.cancel();
        }
    }

    /// Starts, restarts and stops links to match `wanted`.
    fn reconcile(&self, wanted: &[Link], stop: &CancellationToken) {
        let mut links = self.links();
        let before = links.len();
        links.retain(|cluster, entry| {
            let keep = wanted.iter().any(|l| &l.cluster == cluster);
            if !keep {
                tracing::info!(%cluster, "link removed");
                entry.stop.cancel();
                let labels = ControlMetrics::cluster(cluster);
                self.0.metrics.link_up.remove(&labels);
                self.0.metrics.link_probe_seconds.remove(&labels);
                self.0.metrics.link_imported_services.remove(&labels);
            }
            keep
        });
        let mut changed = links.len() != before;
        for link in wanted {
            let generation = match links.get_mut(&link.cluster) {
                Some(e) if e.link == *link => continue,
                Some(e) => {
                    tracing::info!(cluster = %link.cluster, "link changed; restarting it");
                    e.stop.cancel();
                    e.link = link.clone();
                    e.generation += 1;
                    e.stop = stop.child_token();
                    e.generation
                }
                None => {
                    tracing::info!(cluster = %link.cluster, control = %link.control, "link added");
                    links.insert(
                        link.cluster.clone(),
                        Entry {
                            link: link.clone(),
                            generation: 0,
                            remote: BTreeMap::new(),
                            up: false,
                            stop: stop.child_token(),
                        },
                    );
                    0
                }
            };
            changed = true;
            let task_stop = links[&link.cluster].stop.clone();
            crate::link::spawn(self.clone(), link.clone(), generation, task_stop);
        }
        if changed {
            self.publish(&links);
        }
    }

    /// Applies one update from `cluster`'s control plane.
    pub(crate) fn apply(&self, cluster: &str, generation: u64, update: WatchUpdate) {
        self.change(cluster, generation, |e| {
            if update.reset {
                e.remote.clear();
            }
            for s in update.services {
                e.remote.insert(s.authority.clone(), s);
            }
            for a in &update.removed {
                e.remote.remove(a);
            }
        });
    }

    /// Records whether `cluster`'s gateway is up.
    pub(crate) fn set_up(&self, cluster: &str, generation: u64, up: bool) {
        self.change(cluster, generation, |e| e.up = up);
    }

    fn change(&self, cluster: &str, generation: u64, f: impl FnOnce(&mut Entry)) {
        let mut links = self.links();
        match links.get_mut(cluster) {
            Some(e) if e.generation == generation => f(e),
            _ => return,
        }
        self.publish(&links);
    }

    /// Hands the imports of the links that are up to the served state.
    fn publish(&self, links: &BTreeMap<String, Entry>) {
        let mut imports = Imports::default();
        for (cluster, e) in links {
            let count = if e.up {
                import(&e.link, &e.remote, &mut imports)
            } else {
                0
            };
            self.0
                .metrics
                .link_imported_services
                .get_or_create(&ControlMetrics::cluster(cluster))
                .set(count as i64);
        }
        if let Some(version) = self.0.state.set_imports(imports) {
            self.0.metrics.mesh_version.set(version as i64);
        }
    }
}
