//! The mesh file, the control plane's source of truth: the trust domain and
//! its CA, the cluster's name and links, workloads (identity, addresses, ports, bootstrap token hash),
//! services and inbound policies. [`load`] reads and validates it into a
//! [`Mesh`]; an invalid file is refused as a whole with every error located.

pub mod file;
pub mod links;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{SpiffeId, TrustDomain};

pub use links::Link;

use crate::api;
use crate::config_file::{line_of_key, load_toml, ConfigError};

/// A workload as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub id: SpiffeId,
    pub address: IpAddr,
    pub tunnel: SocketAddr,
    pub ports: BTreeMap<String, u16>,
}

/// A validated mesh file.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub trust_domain: TrustDomain,
    /// This cluster's name (`local` unless set).
    pub cluster: String,
    /// Linked clusters, in file order.
    pub links: Vec<Link>,
    /// Authorities of the services backed by linked clusters as failover.
    pub failover: BTreeSet<String>,
    pub ca_dir: PathBuf,
    pub cert_ttl: Duration,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub control_id: SpiffeId,
    pub reload_interval: Duration,
    pub workloads: BTreeMap<String, Workload>,
    /// SHA-256 of a bootstrap token → the identity it may ask for.
    pub tokens: HashMap<[u8; 32], SpiffeId>,
    /// Services by authority (`name.namespace:port`), as sent to edges.
    pub services: BTreeMap<String, api::Service>,
    /// The inbound policy of each workload identity.
    pub policies: HashMap<SpiffeId, api::InboundPolicy>,
}

/// A mesh file with the CA it names, loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub mesh: Mesh,
    pub ca: Arc<CertificateAuthority>,
}

/// Reads, validates and loads the CA of the mesh file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let (parsed, text): (file::MeshFile, String) = load_toml(path)?;
    let mesh = validate::validate(parsed, path, &text)?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.display().to_string(),
        line: line_of_key(&text, "dir"),
        field: "ca.dir".into(),
        message,
    };
    let ca = CertificateAuthority::load(&mesh.ca_dir).map_err(|e| invalid(e.to_string()))?;
    if ca.trust_domain() != &mesh.trust_domain {
        return Err(invalid(format!(
            "the CA in {} is for trust domain {}, the mesh is {}",
            mesh.ca_dir.display(),
            ca.trust_domain(),
            mesh.trust_domain
        )));
    }
    Ok(Loaded {
        mesh,
        ca: Arc::new(ca),
    })
}
