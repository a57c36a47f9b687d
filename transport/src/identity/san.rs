//! Reading URI SANs out of X.509 certificates, and the peer's SPIFFE ID.

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::spiffe::SpiffeId;
use crate::tls::RejectReason;

/// Every URI SAN of a parsed certificate.
pub fn uri_sans(cert: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName extension: {e}"))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The SPIFFE ID of a leaf certificate: exactly one URI SAN, a valid ID.
pub fn leaf_spiffe_id(cert: &CertificateDer<'_>) -> Result<SpiffeId, (RejectReason, String)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
        (
            RejectReason::Malformed,
            format!("unparsable certificate: {e}"),
        )
    })?;
    spiffe_id_of(&parsed)
}

/// [`leaf_spiffe_id`] of a certificate already parsed.
pub fn spiffe_id_of(parsed: &X509Certificate<'_>) -> Result<SpiffeId, (RejectReason, String)> {
    let uris = uri_sans(parsed).map_err(|e| (RejectReason::Malformed, e))?;
    match uris.as_slice() {
        [] => Err((RejectReason::NoUriSan, "certificate has no URI SAN".into())),
        [one] => SpiffeId::parse(one).map_err(|e| (RejectReason::BadSpiffeId, e.to_string())),
        many => Err((
            RejectReason::MultipleUriSans,
            format!(
                "certificate has {} URI SANs, exactly one is allowed",
                many.len()
            ),
        )),
    }
}
