//! One loaded identity: this proxy's SVID (certificate chain and key), its
//! SPIFFE ID and the trust bundles it verifies peers against.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::bundle::TrustBundles;
use super::error::IdentityError;
use super::san::leaf_spiffe_id;
use super::spiffe::SpiffeId;

/// Where the identity files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    /// Leaf certificate then its chain (PEM).
    pub cert: PathBuf,
    /// PKCS#8, SEC1 or PKCS#1 private key (PEM).
    pub key: PathBuf,
    /// One or more trust bundles (PEM CA certificates).
    pub bundles: Vec<PathBuf>,
}

impl IdentityFiles {
    /// The layout written by `ferry certs issue`: `cert.pem`, `key.pem`, `bundle.pem`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            bundles: vec![dir.join("bundle.pem")],
        }
    }

    pub fn all_paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key]
            .into_iter()
            .chain(self.bundles.iter())
    }
}

/// A complete, validated identity.
#[derive(Clone)]
pub struct Material {
    pub id: SpiffeId,
    pub certified_key: Arc<CertifiedKey>,
    pub bundles: Arc<TrustBundles>,
    /// When the leaf expires.
    pub not_after: std::time::SystemTime,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("id", &self.id.to_string())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Material {
    pub fn load(files: &IdentityFiles) -> Result<Self, IdentityError> {
        let cert = std::fs::read(&files.cert).map_err(|e| IdentityError::io(&files.cert, e))?;
        let key = std::fs::read(&files.key).map_err(|e| IdentityError::io(&files.key, e))?;
        let mut bundles = TrustBundles::default();
        for b in &files.bundles {
            bundles.add_pem_file(b)?;
        }
        Self::from_pem(
            &cert,
            &files.cert.display().to_string(),
            &key,
            &files.key.display().to_string(),
            bundles,
        )
    }

    /// Builds an identity from PEM text (the control plane hands these out).
    pub fn from_pem(
        cert_pem: &[u8],
        cert_origin: &str,
        key_pem: &[u8],
        key_origin: &str,
        bundles: TrustBundles,
    ) -> Result<Self, IdentityError> {
        if bundles.is_empty() {
            return Err(IdentityError::NoBundle);
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| IdentityError::Pem {
                origin: cert_origin.to_string(),
                detail: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(IdentityError::Certificate {
                origin: cert_origin.to_string(),
                detail: "no CERTIFICATE block found".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| IdentityError::Key {
            origin: key_origin.to_string(),
            detail: e.to_string(),
        })?;
        Self::from_der(chain, cert_origin, key, key_origin, bundles)
    }

    /// Builds an identity from a DER chain (leaf first) and the private key
    /// (an edge certified by the control plane holds exactly these).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        cert_origin: &str,
        key: PrivateKeyDer<'static>,
        key_origin: &str,
        bundles: TrustBundles,
    ) -> Result<Self, IdentityError> {
        if bundles.is_empty() {
            return Err(IdentityError::NoBundle);
        }
        let leaf = chain.first().ok_or_else(|| IdentityError::Certificate {
            origin: cert_origin.to_string(),
            detail: "no certificate in the chain".into(),
        })?;
        let id = leaf_spiffe_id(leaf).map_err(|(_, detail)| IdentityError::Certificate {
            origin: cert_origin.to_string(),
            detail,
        })?;
        let not_after = leaf_not_after(leaf).map_err(|detail| IdentityError::Certificate {
            origin: cert_origin.to_string(),
            detail,
        })?;
        let provider = crate::crypto::provider();
        let certified_key =
            CertifiedKey::from_der(chain, key, &provider).map_err(|e| IdentityError::Key {
                origin: key_origin.to_string(),
                detail: format!("does not match the certificate or is unsupported: {e}"),
            })?;
        Ok(Self {
            id,
            certified_key: Arc::new(certified_key),
            bundles: Arc::new(bundles),
            not_after,
        })
    }
}

fn leaf_not_after(leaf: &CertificateDer<'_>) -> Result<std::time::SystemTime, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let secs = parsed.validity().not_after.timestamp();
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64))
}
