//! Trust bundles: the CA certificates of one or more trust domains (several
//! for federation), indexed by trust domain. A CA's trust domain is read from
//! its `spiffe://<td>` URI SAN, which `ferry certs ca` writes.

use std::collections::BTreeMap;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use super::error::IdentityError;
use super::spiffe::TrustDomain;

/// The trust anchors of every trust domain this proxy accepts.
#[derive(Debug, Default, Clone)]
pub struct TrustBundles {
    anchors: BTreeMap<TrustDomain, Vec<TrustAnchor<'static>>>,
    certs: BTreeMap<TrustDomain, Vec<CertificateDer<'static>>>,
}

impl TrustBundles {
    /// Adds every CA certificate of a PEM file.
    pub fn add_pem_file(&mut self, path: &Path) -> Result<(), IdentityError> {
        let data = std::fs::read(path).map_err(|e| IdentityError::io(path, e))?;
        self.add_pem(&data, &path.display().to_string())
    }

    /// Adds every CA certificate in PEM text; `origin` names it in errors.
    pub fn add_pem(&mut self, pem: &[u8], origin: &str) -> Result<(), IdentityError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| IdentityError::Pem {
                origin: origin.to_string(),
                detail: e.to_string(),
            })?;
            self.add_der(cert, origin)?;
            added += 1;
        }
        if added == 0 {
            return Err(IdentityError::Pem {
                origin: origin.to_string(),
                detail: "no CERTIFICATE block found".into(),
            });
        }
        Ok(())
    }

    pub fn add_der(
        &mut self,
        cert: CertificateDer<'static>,
        origin: &str,
    ) -> Result<(), IdentityError> {
        let td = ca_trust_domain(&cert).map_err(|detail| IdentityError::Bundle {
            origin: origin.to_string(),
            detail,
        })?;
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| IdentityError::Bundle {
                origin: origin.to_string(),
                detail: format!("not a usable trust anchor: {e}"),
            })?
            .to_owned();
        self.anchors.entry(td.clone()).or_default().push(anchor);
        self.certs.entry(td).or_default().push(cert);
        Ok(())
    }

    pub fn anchors(&self, td: &TrustDomain) -> Option<&[TrustAnchor<'static>]> {
        self.anchors.get(td).map(Vec::as_slice)
    }

    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.anchors.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The CA certificates of one trust domain, as PEM (for handing out).
    pub fn certs(&self, td: &TrustDomain) -> &[CertificateDer<'static>] {
        self.certs.get(td).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Reads the trust domain from a CA certificate's `spiffe://td` URI SAN.
fn ca_trust_domain(cert: &CertificateDer<'_>) -> Result<TrustDomain, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let uris = super::san::uri_sans(&parsed)?;
    match uris.as_slice() {
        [one] => one
            .parse::<TrustDomain>()
            .map_err(|e| format!("CA URI SAN {one:?}: {e}")),
        [] => Err("CA certificate has no spiffe://<trust-domain> URI SAN".into()),
        _ => Err("CA certificate has more than one URI SAN".into()),
    }
}
