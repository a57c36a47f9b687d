//! Polls a file for changes (modification time and size) and reports a
//! change only once the file has stopped changing, so a writer that
//! truncates then writes is never read half-way. Used for the mesh files of
//! the control plane and of the edge.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a changed file must stay unchanged before it is reported.
pub const SETTLE: Duration = Duration::from_millis(50);

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

pub struct FilePoller {
    path: PathBuf,
    last: Stamp,
    tick: tokio::time::Interval,
}

impl FilePoller {
    /// Starts from the file as it is now.
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            last: stamp(&path),
            path,
            tick,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until the file has changed and settled.
    pub async fn changed(&mut self) {
        loop {
            self.tick.tick().await;
            let now = stamp(&self.path);
            if now == self.last {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            if stamp(&self.path) != now {
                continue;
            }
            self.last = now;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_a_settled_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a").unwrap();
        let mut poller = FilePoller::new(p.clone(), Duration::from_millis(10));
        let quiet = tokio::time::timeout(Duration::from_millis(100), poller.changed()).await;
        assert!(quiet.is_err(), "no change, no report");
        std::fs::write(&p, "bb").unwrap();
        tokio::time::timeout(Duration::from_secs(2), poller.changed())
            .await
            .expect("the change is seen");
        let again = tokio::time::timeout(Duration::from_millis(100), poller.changed()).await;
        assert!(again.is_err(), "reported once");
    }
}
