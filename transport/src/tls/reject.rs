//! Why a peer's certificate was refused. Every rejection is logged with its
//! reason and counted under `ferry_tls_rejections_total{reason}`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The peer presented no certificate (server side: client sent none).
    NoCertificate,
    /// The leaf has no URI SAN.
    NoUriSan,
    /// The leaf has more than one URI SAN.
    MultipleUriSans,
    /// The URI SAN is not a valid SPIFFE ID.
    BadSpiffeId,
    /// The peer's trust domain has no bundle here.
    UnknownTrustDomain,
    /// The chain does not lead to a trust anchor of the peer's trust domain.
    Untrusted,
    /// The leaf (or a CA in its chain) has expired.
    Expired,
    /// The leaf (or a CA in its chain) is not valid yet.
    NotYetValid,
    /// The server's SPIFFE ID is valid but not the one the client expected.
    WrongIdentity,
    /// The certificate could not be parsed.
    Malformed,
    /// The handshake signature did not verify.
    BadSignature,
}

impl RejectReason {
    /// Stable label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoCertificate => "no_certificate",
            RejectReason::NoUriSan => "no_uri_san",
            RejectReason::MultipleUriSans => "multiple_uri_sans",
            RejectReason::BadSpiffeId => "bad_spiffe_id",
            RejectReason::UnknownTrustDomain => "unknown_trust_domain",
            RejectReason::Untrusted => "untrusted",
            RejectReason::Expired => "expired",
            RejectReason::NotYetValid => "not_yet_valid",
            RejectReason::WrongIdentity => "wrong_identity",
            RejectReason::Malformed => "malformed",
            RejectReason::BadSignature => "bad_signature",
        }
    }

    pub const ALL: [RejectReason; 11] = [
        RejectReason::NoCertificate,
        RejectReason::NoUriSan,
        RejectReason::MultipleUriSans,
        RejectReason::BadSpiffeId,
        RejectReason::UnknownTrustDomain,
        RejectReason::Untrusted,
        RejectReason::Expired,
        RejectReason::NotYetValid,
        RejectReason::WrongIdentity,
        RejectReason::Malformed,
        RejectReason::BadSignature,
    ];
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
