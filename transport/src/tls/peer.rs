//! The identity an established connection's peer holds *now*: the SPIFFE
//! ID of its leaf, with every certificate of its chain inside its validity
//! window at this moment.
//!
//! After a full handshake the verifiers have checked all of it. A resumed
//! TLS 1.3 session skips them and carries the chain of the handshake that
//! began it; its trust was settled then (a session does not outlive a
//! change of this proxy's trust bundles, see [`super::sessions`] and
//! [`super::TlsConfigs::client`]), but its certificates may have expired
//! since. Every connection, resumed or not, passes through this check
//! before it carries a stream.

use rustls_pki_types::CertificateDer;
use x509_parser::time::ASN1Time;

use super::verify::Rejection;
use super::RejectReason;
use crate::identity::san::spiffe_id_of;
use crate::identity::SpiffeId;

/// The SPIFFE ID of `chain`'s leaf, if every certificate in it is valid at
/// this moment.
pub fn current_peer_id(chain: Option<&[CertificateDer<'static>]>) -> Result<SpiffeId, Rejection> {
    current_peer_id_at(chain, ASN1Time::now())
}

/// Checks that every certificate of a peer's chain is valid at this moment
/// (the client side: the peer's identity was matched when it was verified).
pub fn check_chain_current(chain: &[CertificateDer<'static>]) -> Result<(), Rejection> {
    current_peer_id_at(Some(chain), ASN1Time::now()).map(|_| ())
}

fn current_peer_id_at(
    chain: Option<&[CertificateDer<'static>]>,
    now: ASN1Time,
) -> Result<SpiffeId, Rejection> {
    let Some((leaf, rest)) = chain.and_then(|c| c.split_first()) else {
        return Err(Rejection::new(
            RejectReason::NoCertificate,
            "the peer presented no certificate",
        ));
    };
    let id = spiffe_id_of(&parse_current(leaf, now)?).map_err(|(r, d)| Rejection::new(r, d))?;
    for ca in rest {
        parse_current(ca, now)
            .map_err(|r| Rejection::new(r.reason, format!("{id}'s chain: {}", r.detail)))?;
    }
    Ok(id)
}

/// Parses `der` and checks that `now` is inside its validity window.
fn parse_current<'a>(
    der: &'a CertificateDer<'_>,
    now: ASN1Time,
) -> Result<x509_parser::certificate::X509Certificate<'a>, Rejection> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
        Rejection::new(
            RejectReason::Malformed,
            format!("unparsable certificate: {e}"),
        )
    })?;
    let validity = cert.validity();
    if now < validity.not_before {
        return Err(Rejection::new(
            RejectReason::NotYetValid,
            format!("certificate valid only from {}", validity.not_before),
        ));
    }
    if now > validity.not_after {
        return Err(Rejection::new(
            RejectReason::Expired,
            format!("certificate expired at {}", validity.not_after),
        ));
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::pki::CertificateAuthority;
    use crate::identity::TrustDomain;
    use rustls_pki_types::pem::PemObject;
    use std::time::Duration;

    fn chain(ttl: Duration) -> Vec<CertificateDer<'static>> {
        let td = TrustDomain::new("td").unwrap();
        let ca = CertificateAuthority::generate(&td, Duration::from_secs(86400)).unwrap();
        let leaf = ca
            .issue(&SpiffeId::parse("spiffe://td/ns/a/sa/s").unwrap(), ttl)
            .unwrap();
        CertificateDer::pem_slice_iter(leaf.cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn at(chain: &[CertificateDer<'static>], secs_from_now: i64) -> Result<SpiffeId, Rejection> {
        let now = ASN1Time::now().timestamp();
        current_peer_id_at(
            Some(chain),
            ASN1Time::from_timestamp(now + secs_from_now).unwrap(),
        )
    }

    #[test]
    fn a_valid_chain_gives_its_leaf_id() {
        let c = chain(Duration::from_secs(3600));
        assert_eq!(at(&c, 0).unwrap().to_string(), "spiffe://td/ns/a/sa/s");
        assert_eq!(
            current_peer_id(Some(&c)).unwrap().to_string(),
            "spiffe://td/ns/a/sa/s"
        );
        assert!(check_chain_current(&c).is_ok());
    }

    #[test]
    fn a_leaf_past_its_end_is_expired() {
        let c = chain(Duration::from_secs(3600));
        let e = at(&c, 7200).unwrap_err();
        assert_eq!(e.reason, RejectReason::Expired, "{e}");
        assert!(e.detail.contains("expired at"), "{e}");
    }

    #[test]
    fn a_leaf_before_its_start_is_not_yet_valid() {
        let c = chain(Duration::from_secs(3600));
        // Issued with a minute of clock skew allowed.
        let e = at(&c, -3600).unwrap_err();
        assert_eq!(e.reason, RejectReason::NotYetValid, "{e}");
    }

    #[test]
    fn an_expired_certificate_further_up_the_chain_is_named() {
        let long = chain(Duration::from_secs(7200));
        let short = chain(Duration::from_secs(600));
        // A valid leaf over a certificate that expires first.
        let c = vec![long[0].clone(), short[0].clone()];
        assert!(at(&c, 0).is_ok());
        let e = at(&c, 1800).unwrap_err();
        assert_eq!(e.reason, RejectReason::Expired, "{e}");
        assert!(
            e.detail.starts_with("spiffe://td/ns/a/sa/s's chain: "),
            "{e}"
        );
    }

    #[test]
    fn no_chain_is_no_certificate() {
        assert_eq!(
            current_peer_id(None).unwrap_err().reason,
            RejectReason::NoCertificate
        );
        assert_eq!(
            current_peer_id(Some(&[])).unwrap_err().reason,
            RejectReason::NoCertificate
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let junk = vec![CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff])];
        assert_eq!(at(&junk, 0).unwrap_err().reason, RejectReason::Malformed);
    }
}
