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
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

pub use snapshot::{AddrRoute, Endpoint, Protocol, Service, Snapshot};

use crate::config::ConfigError;

/// How long a changed mesh file must stay unchanged before it is read.
const SETTLE: Duration = Duration::from_millis(50);

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
        tokio::spawn(async move {
            let stamp = |p: &PathBuf| -> Option<(SystemTime, u64)> {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            };
            let mut last = stamp(&path);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                let now = stamp(&path);
                if now == last {
                    continue;
                }
                // Let a writer finish: load only once the file has stopped
                // changing (a truncate-then-write must not read as empty).
                tokio::time::sleep(SETTLE).await;
                if stamp(&path) != now {
                    continue;
                }
                last = now;
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
