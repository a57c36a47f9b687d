//! Ferry's links between clusters, the control-plane half of multicluster:
//! for every `[[links]]` entry of the mesh file, this control plane watches
//! the linked control plane's exported services (mutual TLS with its own
//! SVID, the remote control plane proven under the link's bundle), imports
//! them as `<name>.<namespace>.svc.<cluster>:<port>` with their endpoints
//! marked "via gateway" (and as failover for local `failover = true`
//! services), and probes the linked gateway: while it is down the link's
//! imports are withdrawn.
//!
//! - [`import`]: naming and marking of imported services.
//! - [`probe`]: the gateway health probe.
//! - [`link`]: one link's watch and probe tasks.
//! - [`hub`]: every link's imports, merged into the served state; links
//!   follow the mesh file's reloads.

pub mod hub;
pub mod import;
pub mod link;
pub mod probe;

use ferry_control::RunningControl;

/// Runs the links of `control`'s mesh file (following its reloads) until
/// the control plane stops.
pub fn start(control: &RunningControl) -> tokio::task::JoinHandle<()> {
    let hub = hub::Hub::new(
        control.state().clone(),
        control.tls().clone(),
        control.metrics().clone(),
    );
    tokio::spawn(hub.run(control.shutdown_token()))
}
