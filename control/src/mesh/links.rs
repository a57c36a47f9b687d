//! Links to other clusters, validated: unique DNS-label names, a trust
//! domain other than this mesh's, SPIFFE IDs in the linked trust domain,
//! and a bundle file (relative to the mesh file) holding CA certificates of
//! exactly that trust domain.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_transport::identity::{SpiffeId, TrustBundles, TrustDomain};

use super::file::LinkDecl;
use super::validate::{valid_label, Errors};

/// A validated link to another cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub cluster: String,
    pub trust_domain: TrustDomain,
    pub control: SocketAddr,
    pub control_id: SpiffeId,
    pub gateway: SocketAddr,
    pub gateway_id: SpiffeId,
    pub gateway_health: SocketAddr,
    pub bundle_path: PathBuf,
    /// The linked cluster's CA certificates (DER), from `bundle_path`.
    pub roots_der: Vec<Vec<u8>>,
    pub probe_interval: Duration,
}

/// The default ID of a system component (`control`, `gateway`) of `td`.
pub fn system_id(td: &TrustDomain, sa: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{td}/ns/ferry-system/sa/{sa}"))
        .expect("a valid trust domain makes a valid ID")
}

/// Validates the `[[links]]` of a mesh whose trust domain is `own` and
/// whose name is `cluster`.
pub(super) fn validate_links(
    decls: &[LinkDecl],
    own: &TrustDomain,
    cluster: &str,
    base: &Path,
    errors: &mut Errors<'_>,
) -> Vec<Link> {
    let mut names = BTreeSet::new();
    let mut domains = BTreeSet::new();
    let mut links = Vec::new();
    for (i, l) in decls.iter().enumerate() {
        let mut error = |key: &str, message: String| {
            errors.in_table("links", i, key, format!("links[{i}].{key}"), message)
        };
        if !valid_label(&l.cluster) {
            error(
                "cluster",
                format!("{:?} is not a DNS label (a-z, 0-9, '-')", l.cluster),
            );
        } else if l.cluster == cluster {
            error(
                "cluster",
                format!("{:?} is this cluster's own name", l.cluster),
            );
        } else if !names.insert(l.cluster.clone()) {
            error(
                "cluster",
                format!("cluster {:?} is linked twice", l.cluster),
            );
        }
        let td = l.trust_domain.0.clone();
        if &td == own {
            error(
                "trust_domain",
                format!("{td} is this mesh's own trust domain: a linked cluster has its own"),
            );
        } else if !domains.insert(td.clone()) {
            error("trust_domain", format!("{td} is linked twice"));
        }
        let mut id_in_td =
            |key: &str, value: &Option<crate::config_file::SpiffeIdValue>, sa| match value {
                Some(v) if v.0.trust_domain() != &td => {
                    error(key, format!("{} is not in the trust domain {td}", v.0));
                    v.0.clone()
                }
                Some(v) => v.0.clone(),
                None => system_id(&td, sa),
            };
        let control_id = id_in_td("control_id", &l.control_id, "control");
        let gateway_id = id_in_td("gateway_id", &l.gateway_id, "gateway");
        if l.probe_interval < Duration::from_millis(10) {
            error("probe_interval", "must be at least 10ms".into());
        }
        let bundle_path = base.join(&l.bundle);
        let mut bundles = TrustBundles::default();
        let roots_der = match bundles.add_pem_file(&bundle_path) {
            Err(e) => {
                error("bundle", e.to_string());
                Vec::new()
            }
            Ok(()) => {
                let found: Vec<String> = bundles.trust_domains().map(ToString::to_string).collect();
                if found != [td.to_string()] {
                    error(
                        "bundle",
                        format!(
                            "{} holds CAs of {found:?}, the link's trust domain is {td}",
                            bundle_path.display()
                        ),
                    );
                }
                bundles.certs(&td).iter().map(|c| c.to_vec()).collect()
            }
        };
        links.push(Link {
            cluster: l.cluster.clone(),
            trust_domain: td,
            control: l.control,
            control_id,
            gateway: l.gateway,
            gateway_id,
            gateway_health: l.gateway_health,
            bundle_path,
            roots_der,
            probe_interval: l.probe_interval,
        });
    }
    links
}
