//! SPIFFE federation: the trust bundles of this mesh and of every linked
//! cluster, handed out by `Certify` (own first) and trusted by the control
//! plane's own TLS identity (so linked control planes can call `Watch`).

use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityError, TrustBundles};
use rustls_pki_types::CertificateDer;

use crate::api::TrustBundle;
use crate::mesh::Mesh;

/// The bundles to trust: this mesh's CA first, then each link's.
pub fn bundles(mesh: &Mesh, ca: &CertificateAuthority) -> Vec<TrustBundle> {
    let own = TrustBundle {
        trust_domain: mesh.trust_domain.to_string(),
        roots_der: vec![ca.cert_der()],
    };
    std::iter::once(own)
        .chain(mesh.links.iter().map(|l| TrustBundle {
            trust_domain: l.trust_domain.to_string(),
            roots_der: l.roots_der.clone(),
        }))
        .collect()
}

/// The same bundles, as the trust anchors of a TLS identity.
pub fn trust(bundles: &[TrustBundle]) -> Result<TrustBundles, IdentityError> {
    let mut trust = TrustBundles::default();
    for b in bundles {
        for root in &b.roots_der {
            trust.add_der(
                CertificateDer::from(root.clone()),
                &format!("the {} bundle", b.trust_domain),
            )?;
        }
    }
    Ok(trust)
}
