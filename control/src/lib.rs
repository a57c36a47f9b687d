//! Ferry's control plane: it gives a mesh its identities and its map.
//!
//! - [`mesh`]: the mesh file (TOML), the embedded source of truth, validated
//!   with every error located, reloaded when it changes.
//! - [`identity_service`]: `Identity.Certify`, short-lived SVIDs for CSRs
//!   authorized by bootstrap tokens.
//! - [`discovery_service`]: `Discovery.Watch`, the endpoint sets and each
//!   workload's inbound policy, streamed with every change.
//! - [`federation`] and [`imports`]: linked clusters' trust bundles, and
//!   the services imported from them (by `ferry-multicluster`).
//! - [`client`]: what edges use: certification with renewal, and watching.
//! - [`server`]: `ferry control`, serving all of it on TLS 1.3.
//!
//! [`config_file`] and [`policy`] are shared with the edge's own config.

pub mod admin;
pub mod api;
pub mod client;
pub mod config_file;
pub mod discovery_service;
pub mod federation;
pub mod file_poller;
pub mod identity_service;
pub mod imports;
pub mod mesh;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod state;
pub mod tls_incoming;
pub mod token;

use std::net::SocketAddr;
use std::path::Path;

pub use server::{Overrides, RunningControl};

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] config_file::ConfigError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Identity(String),
    #[error("{0}")]
    Other(String),
}

/// `ferry control --config FILE`: serves until SIGTERM or SIGINT.
pub async fn run(mesh_path: &Path, overrides: Overrides) -> Result<(), ControlError> {
    run_with(mesh_path, overrides, |_| {}).await
}

/// [`run`], calling `extend` once the control plane is ready (the CLI
/// starts the multicluster links there).
pub async fn run_with(
    mesh_path: &Path,
    overrides: Overrides,
    extend: impl FnOnce(&RunningControl),
) -> Result<(), ControlError> {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = |kind, name: &str| {
        signal(kind).map_err(|e| ControlError::Other(format!("installing the {name} handler: {e}")))
    };
    let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
    let control = RunningControl::start(mesh_path, overrides).await?;
    extend(&control);
    println!("{}", control.ready_line());
    let token = control.shutdown_token();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
    control.wait().await;
    tracing::info!("control plane stopped");
    Ok(())
}
