//! Where services and their endpoints come from. Today: the mesh file,
//! re-read when it changes (endpoint sets change while traffic flows;
//! removed endpoints drain: their in-flight streams finish, no new ones
//! start). An invalid new file is logged and the last good state kept.

pub mod control;
pub mod mesh_file;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ferry_control::file_poller::FilePoller;

pub use snapshot::{AddrRoute, Endpoint, Protocol, Service, Snapshot};

use crate::config::ConfigError;

/// The current snapshot, swapped atomically on reload.
#[derive(Debug)]
pub struct Discovery {
    current: ArcSwap<Snapshot>,
    version: AtomicU64,
}

impl Discovery {
    pub fn new(snapshot: Snapshot) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(snapshot),
            version: AtomicU64::new(1),
        })
    }

    pub fn from_mesh_file(path: &std::path::Path) -> Result<Arc<Self>, ConfigError> {
        Ok(Self::new(mesh_file::load(path)?))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Polls the mesh file and reloads it when it changes.
    pub fn watch(
        self: &Arc<Self>,
        path: PathBuf,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        // The state loaded before this call is the baseline.
        let mut poller = FilePoller::new(path.clone(), interval);
        tokio::spawn(async move {
            loop {
                poller.changed().await;
                let Some(me) = weak.upgrade() else { return };
                match mesh_file::load(&path) {
                    Ok(s) => {
                        tracing::info!(path = %path.display(), services = s.services.len(), "mesh file reloaded");
                        me.replace(s);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "mesh file rejected; keeping the last good state")
                    }
                }
            }
        })
    }
}
