//! Certificate verification by SPIFFE identity, for both directions.
//!
//! The peer's trust domain is read from its leaf's single URI SAN; the chain
//! must lead to a trust anchor of *that* trust domain's bundle. The client
//! additionally requires the server's SPIFFE ID to equal the one discovery
//! promised for the endpoint. Every refusal is logged with its reason and
//! counted.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::RejectReason;
use crate::identity::san::leaf_spiffe_id;
use crate::identity::{IdentityStore, SpiffeId, TrustBundles};
use crate::metrics::transport::{Side, TransportMetrics};

/// Why a chain was refused, with detail for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("peer certificate rejected ({reason}): {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub(crate) fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    fn into_rustls(self) -> rustls::Error {
        let e = match self.reason {
            RejectReason::Expired => CertificateError::Expired,
            RejectReason::NotYetValid => CertificateError::NotValidYet,
            RejectReason::Untrusted | RejectReason::UnknownTrustDomain => {
                CertificateError::Other(rustls::OtherError(Arc::new(self)))
            }
            RejectReason::WrongIdentity => CertificateError::NotValidForName,
            RejectReason::Malformed => CertificateError::BadEncoding,
            _ => CertificateError::Other(rustls::OtherError(Arc::new(self))),
        };
        rustls::Error::InvalidCertificate(e)
    }
}

/// Verifies a chain against the bundle of the leaf's trust domain and returns
/// the leaf's SPIFFE ID.
pub fn verify_chain(
    bundles: &TrustBundles,
    algs: &WebPkiSupportedAlgorithms,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<SpiffeId, Rejection> {
    let id = leaf_spiffe_id(end_entity).map_err(|(r, d)| Rejection::new(r, d))?;
    let anchors = bundles.anchors(id.trust_domain()).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownTrustDomain,
            format!(
                "{id}: no trust bundle for trust domain {:?}",
                id.trust_domain().as_str()
            ),
        )
    })?;
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| Rejection::new(RejectReason::Malformed, format!("{id}: {e}")))?;
    cert.verify_for_usage(algs.all, anchors, intermediates, now, usage, None, None)
        .map_err(|e| {
            let reason = match e {
                webpki::Error::CertExpired { .. } => RejectReason::Expired,
                webpki::Error::CertNotValidYet { .. } => RejectReason::NotYetValid,
                webpki::Error::BadDer | webpki::Error::BadDerTime => RejectReason::Malformed,
                _ => RejectReason::Untrusted,
            };
            Rejection::new(reason, format!("{id}: {e:?}"))
        })?;
    Ok(id)
}

/// Where a verifier finds the trust bundles.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The proxy's live identity (bundles rotate with it).
    Store(Arc<IdentityStore>),
    /// Fixed bundles: a workload that has no identity yet verifying the
    /// control plane it asks for one.
    Bundles(Arc<TrustBundles>),
}

impl Trust {
    fn bundles(&self) -> Arc<TrustBundles> {
        match self {
            Trust::Store(s) => s.current().bundles.clone(),
            Trust::Bundles(b) => b.clone(),
        }
    }
}

/// Client side: verifies the server and that it is the expected identity.
#[derive(Debug)]
pub struct ServerIdentityVerifier {
    trust: Trust,
    expected: SpiffeId,
    algs: WebPkiSupportedAlgorithms,
    metrics: TransportMetrics,
}

impl ServerIdentityVerifier {
    pub fn new(trust: Trust, expected: SpiffeId, metrics: TransportMetrics) -> Self {
        Self {
            trust,
            expected,
            algs: crate::crypto::provider().signature_verification_algorithms,
            metrics,
        }
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = verify_chain(
            &self.trust.bundles(),
            &self.algs,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )
        .and_then(|id| {
            if id == self.expected {
                Ok(())
            } else {
                Err(Rejection::new(
                    RejectReason::WrongIdentity,
                    format!("server is {id}, expected {}", self.expected),
                ))
            }
        });
        match result {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(r) => {
                tracing::warn!(reason = %r.reason, detail = %r.detail, expected = %self.expected, "refused server certificate");
                self.metrics.tls_rejected(Side::Client, r.reason);
                Err(r.into_rustls())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Server side: requires a client certificate (or, for the control plane,
/// accepts its absence) and verifies it against the bundle of the client's
/// trust domain.
#[derive(Debug)]
pub struct ClientIdentityVerifier {
    store: Arc<IdentityStore>,
    algs: WebPkiSupportedAlgorithms,
    metrics: TransportMetrics,
    mandatory: bool,
}

impl ClientIdentityVerifier {
    pub fn new(store: Arc<IdentityStore>, metrics: TransportMetrics) -> Self {
        Self {
            store,
            algs: crate::crypto::provider().signature_verification_algorithms,
            metrics,
            mandatory: true,
        }
    }

    /// A verifier that also lets clients without a certificate in (a
    /// certificate that is presented must still be valid).
    pub fn optional(store: Arc<IdentityStore>, metrics: TransportMetrics) -> Self {
        Self {
            mandatory: false,
            ..Self::new(store, metrics)
        }
    }
}

impl ClientCertVerifier for ClientIdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match verify_chain(
            &self.store.current().bundles,
            &self.algs,
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        ) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(r) => {
                tracing::warn!(reason = %r.reason, detail = %r.detail, "refused client certificate");
                self.metrics.tls_rejected(Side::Server, r.reason);
                Err(r.into_rustls())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
