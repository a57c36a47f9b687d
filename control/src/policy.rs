//! Inbound authorization of one application port: which SPIFFE IDs,
//! trust domains or namespaces may reach it. Written in edge config files
//! and mesh files, and sent by the control plane to each edge.

use serde::Deserialize;

use crate::config_file::{SpiffeIdValue, TrustDomainValue};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortPolicy {
    pub port: u16,
    /// Exact SPIFFE IDs allowed.
    #[serde(default)]
    pub allow_ids: Vec<SpiffeIdValue>,
    /// Whole trust domains allowed.
    #[serde(default)]
    pub allow_trust_domains: Vec<TrustDomainValue>,
    /// Namespaces (from `/ns/<ns>/...` IDs) allowed, in any trust domain
    /// this edge trusts.
    #[serde(default)]
    pub allow_namespaces: Vec<String>,
}
