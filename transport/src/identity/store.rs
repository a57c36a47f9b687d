//! The live identity of a proxy. Handshakes read the current material
//! lock-free; a reloader swaps in new material when the files change
//! (certificate rotation) without touching established connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::error::IdentityError;
use super::material::{IdentityFiles, Material};

/// Shared, swappable identity material.
#[derive(Debug)]
pub struct IdentityStore {
    current: ArcSwap<Material>,
    reloads: std::sync::atomic::AtomicU64,
}

impl IdentityStore {
    pub fn new(material: Material) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(material),
            reloads: Default::default(),
        })
    }

    /// Loads the files once; call [`IdentityStore::watch`] to follow changes.
    pub fn load(files: &IdentityFiles) -> Result<Arc<Self>, IdentityError> {
        Ok(Self::new(Material::load(files)?))
    }

    pub fn current(&self) -> Arc<Material> {
        self.current.load_full()
    }

    /// Replaces the material; new handshakes use it at once.
    pub fn set(&self, material: Material) {
        tracing::info!(id = %material.id, "identity material updated");
        self.current.store(Arc::new(material));
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times the material was replaced since start.
    pub fn reload_count(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Polls the files every `interval` and reloads them when any of them
    /// changes. An invalid new set is logged and the old one kept. The task
    /// ends when the store is dropped.
    pub fn watch(
        self: &Arc<Self>,
        files: IdentityFiles,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last = fingerprint(&files);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let now = fingerprint(&files);
                if now == last {
                    continue;
                }
                match Material::load(&files) {
                    Ok(m) => {
                        store.set(m);
                        last = now;
                    }
                    Err(e) => {
                        // Files may be mid-rotation; keep the old identity and retry.
                        tracing::warn!(error = %e, "identity files changed but are not valid; keeping the current identity");
                        last = now;
                    }
                }
            }
        })
    }
}

type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

fn fingerprint(files: &IdentityFiles) -> Fingerprint {
    files
        .all_paths()
        .map(|p| {
            let meta = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.clone(), meta)
        })
        .collect()
}
