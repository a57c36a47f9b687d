//! The mesh file as written (TOML): the trust domain and its CA, the
//! control plane's own settings, the cluster's name and its links to other
//! clusters, workloads, services and inbound policies.
//! Only shapes and types here; [`super::validate`] checks the meaning.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config_file::{SpiffeIdValue, TrustDomainValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshFile {
    /// The trust domain of this mesh; the CA's must be the same.
    pub trust_domain: TrustDomainValue,
    /// This cluster's name (a DNS label; default `local`).
    #[serde(default)]
    pub cluster: Option<String>,
    pub ca: CaSection,
    #[serde(default)]
    pub certificates: CertificatesSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub workloads: Vec<WorkloadDecl>,
    #[serde(default)]
    pub services: Vec<ServiceDecl>,
    #[serde(default)]
    pub policies: Vec<PolicyDecl>,
    /// Other clusters whose exported services this one imports.
    #[serde(default)]
    pub links: Vec<LinkDecl>,
}

/// A link to another cluster (its control plane, gateway and CA).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDecl {
    /// The linked cluster's name (a DNS label, unique among links).
    pub cluster: String,
    /// Its trust domain (not this mesh's).
    pub trust_domain: TrustDomainValue,
    /// Its control plane's gRPC address.
    pub control: SocketAddr,
    /// Its control plane's SPIFFE ID (default
    /// `spiffe://<its trust domain>/ns/ferry-system/sa/control`).
    #[serde(default)]
    pub control_id: Option<SpiffeIdValue>,
    /// Its gateway's tunnel address.
    pub gateway: SocketAddr,
    /// Its gateway's SPIFFE ID (default
    /// `spiffe://<its trust domain>/ns/ferry-system/sa/gateway`).
    #[serde(default)]
    pub gateway_id: Option<SpiffeIdValue>,
    /// Its gateway's admin address, probed with `GET /ready`.
    pub gateway_health: SocketAddr,
    /// A PEM file with its CA certificate(s), relative to the mesh file.
    pub bundle: PathBuf,
    /// How often the gateway is probed.
    #[serde(default = "default_probe", with = "humantime_serde")]
    pub probe_interval: Duration,
}

fn default_probe() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// The directory written by `ferry certs ca` (`ca.pem`, `ca.key`).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesSection {
    /// Lifetime of the workload certificates the control plane signs.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for CertificatesSection {
    fn default() -> Self {
        Self { ttl: default_ttl() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// The gRPC port (TLS, ALPN h2).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The admin port (`/ready`, `/metrics`).
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// The control plane's own SPIFFE ID (default
    /// `spiffe://<trust domain>/ns/ferry-system/sa/control`).
    #[serde(default)]
    pub id: Option<SpiffeIdValue>,
    /// How often the mesh file is checked for changes.
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_listen() -> SocketAddr {
    "0.0.0.0:4180".parse().expect("static")
}
fn default_admin() -> SocketAddr {
    "127.0.0.1:4190".parse().expect("static")
}
fn default_reload() -> Duration {
    Duration::from_millis(200)
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin: default_admin(),
            id: None,
            reload_interval: default_reload(),
        }
    }
}

/// One workload: a running instance of an application with its edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDecl {
    /// Unique name, e.g. `api-1`.
    pub name: String,
    /// `spiffe://<trust domain>/ns/<ns>/sa/<sa>` (replicas may share it).
    pub id: SpiffeIdValue,
    /// The application's IP address.
    pub address: IpAddr,
    /// The workload edge's tunnel address.
    pub tunnel: SocketAddr,
    /// Named application ports, e.g. `{ http = 8080 }`.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Hex SHA-256 of the workload's bootstrap token (`ferry control token`).
    pub token_sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    pub name: String,
    pub namespace: String,
    /// Virtual IPs that transparent interception maps to this service (one
    /// address per port).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Names of the workloads serving it.
    #[serde(default)]
    pub workloads: Vec<String>,
    pub ports: Vec<ServicePortDecl>,
    /// Linked clusters may reach it through this cluster's gateway.
    #[serde(default)]
    pub export: bool,
    /// When no local endpoint is available, the linked clusters' services
    /// of the same name and namespace back this one.
    #[serde(default)]
    pub failover: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePortDecl {
    /// The service port (in the authority `name.namespace:port`).
    pub port: u16,
    /// The workloads' port: a number, or the name of one of their ports
    /// (default: the service port).
    #[serde(default)]
    pub target_port: Option<TargetPort>,
    #[serde(default)]
    pub protocol: ProtocolDecl,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolDecl {
    #[default]
    Auto,
    Http,
    Grpc,
    Tcp,
}

/// Who may reach a service's workloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDecl {
    /// `name.namespace` of a service declared above.
    pub service: String,
    /// One service port; absent: every port of the service.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub allow_ids: Vec<SpiffeIdValue>,
    #[serde(default)]
    pub allow_trust_domains: Vec<TrustDomainValue>,
    #[serde(default)]
    pub allow_namespaces: Vec<String>,
}
