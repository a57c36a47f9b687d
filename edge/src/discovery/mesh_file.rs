//! The mesh file (TOML): services, their ports, protocol hints, virtual
//! addresses and endpoints (application address, the edge's tunnel address
//! and its SPIFFE ID). This is the discovery source until the control plane
//! serves the same data over gRPC.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use ferry_transport::tunnel::Via;

use super::snapshot::{Endpoint, Protocol, Service, Snapshot};
use crate::config::{line_of_array_key, load_toml, ConfigError, SpiffeIdValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshFile {
    #[serde(default)]
    services: Vec<ServiceDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDecl {
    name: String,
    namespace: String,
    port: u16,
    #[serde(default)]
    protocol: Protocol,
    /// Virtual addresses (for transparent interception).
    #[serde(default)]
    addresses: Vec<SocketAddr>,
    #[serde(default)]
    endpoints: Vec<EndpointDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointDecl {
    /// The workload's application address.
    address: SocketAddr,
    /// The workload edge's tunnel address.
    tunnel: SocketAddr,
    /// The workload's SPIFFE ID.
    id: SpiffeIdValue,
    /// For a remote endpoint: the gateway's tunnel address and identity.
    #[serde(default)]
    gateway: Option<SocketAddr>,
    #[serde(default)]
    gateway_id: Option<SpiffeIdValue>,
    /// Only used when no other endpoint is available.
    #[serde(default)]
    failover: bool,
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Reads and validates a mesh file into a snapshot.
pub fn load(path: &Path) -> Result<Snapshot, ConfigError> {
    let (file, text): (MeshFile, String) = load_toml(path)?;
    let mut snapshot = Snapshot::default();
    for (i, s) in file.services.iter().enumerate() {
        let invalid = |field: &str, key: &str, message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            line: line_of_array_key(&text, "services", i, key),
            field: format!("services[{i}].{field}"),
            message,
        };
        if !valid_label(&s.name) {
            return Err(invalid(
                "name",
                "name",
                format!("{:?} is not a DNS label (a-z, 0-9, '-')", s.name),
            ));
        }
        if !valid_label(&s.namespace) {
            return Err(invalid(
                "namespace",
                "namespace",
                format!("{:?} is not a DNS label", s.namespace),
            ));
        }
        if s.port == 0 {
            return Err(invalid("port", "port", "port must not be 0".into()));
        }
        if s.endpoints
            .iter()
            .any(|e| e.gateway.is_some() != e.gateway_id.is_some())
        {
            return Err(invalid(
                "endpoints",
                "gateway",
                "an endpoint's gateway and gateway_id go together".into(),
            ));
        }
        let service = Service {
            authority: format!("{}.{}:{}", s.name, s.namespace, s.port),
            protocol: s.protocol,
            endpoints: s
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    address: e.address,
                    tunnel: e.tunnel,
                    id: e.id.0.clone(),
                    via: e.gateway.zip(e.gateway_id.as_ref()).map(|(addr, id)| Via {
                        addr,
                        id: id.0.clone(),
                    }),
                    failover: e.failover,
                })
                .collect(),
            addresses: s.addresses.clone(),
            exported: false,
        };
        if snapshot.services.contains_key(&service.authority) {
            return Err(invalid(
                "name",
                "name",
                format!("service {} is declared twice", service.authority),
            ));
        }
        snapshot.insert(service);
    }
    Ok(snapshot)
}
