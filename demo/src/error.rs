//! What can stop the demo, each naming the file, process or step at fault.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo directory {path}: {detail}")]
    Dir { path: PathBuf, detail: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating the CA of {cluster}: {detail}")]
    Pki { cluster: String, detail: String },
    #[error("starting {what}: {source}")]
    Local {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("starting {name}: {detail} (its log: {log})")]
    Start {
        name: String,
        detail: String,
        log: PathBuf,
    },
    #[error("{name} exited unexpectedly ({status}); its log: {log}")]
    Exited {
        name: String,
        status: String,
        log: PathBuf,
    },
    #[error("the mesh was not ready within {after:?}: {detail}")]
    NotReady { after: Duration, detail: String },
    #[error("{failed} of {total} scenarios failed")]
    Failed { failed: usize, total: usize },
    #[error("interrupted")]
    Interrupted,
}
