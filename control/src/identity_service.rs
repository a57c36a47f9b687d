//! `Identity.Certify`: the bootstrap token names the workload identity; the
//! CSR must ask for exactly that SPIFFE ID (one URI SAN, no DNS or IP SANs)
//! and carry a valid self-signature. The CA from the mesh file signs a
//! short-lived certificate over the CSR's public key; the answer carries the
//! trust bundles of this mesh and of its linked clusters (federation). The
//! private key never leaves the workload. A caller presenting a certificate (renewal) must be
//! the identity its token names. Tokens never appear in logs.

use rcgen::{CertificateSigningRequestParams, SanType};
use rustls_pki_types::CertificateSigningRequestDer;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::api::identity_server::Identity;
use crate::api::{CertifyRequest, CertifyResponse};
use crate::federation;
use crate::metrics::ControlMetrics;
use crate::state::StateHandle;
use crate::tls_incoming::PeerInfo;

/// The largest CSR accepted (a P-256 or RSA-4096 request is far smaller).
pub const MAX_CSR_BYTES: usize = 16 * 1024;

pub struct IdentityService {
    pub state: StateHandle,
    pub metrics: ControlMetrics,
}

impl IdentityService {
    fn refuse(&self, reason: &'static str, status: Status) -> Status {
        self.metrics.refused(reason);
        status
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let addr = peer
            .as_ref()
            .map(|p| p.addr.to_string())
            .unwrap_or_default();
        let req = request.into_inner();
        let state = self.state.current();
        let hash: [u8; 32] = Sha256::digest(req.token.as_bytes()).into();
        let Some(id) = state.mesh.tokens.get(&hash).cloned() else {
            tracing::warn!(peer = %addr, "certify refused: unknown token");
            return Err(self.refuse(
                "bad_token",
                Status::unauthenticated("the bootstrap token is not valid for any workload"),
            ));
        };
        // A caller that presents a certificate (an edge renewing) must be
        // the workload its token names.
        if let Some(caller) = peer.as_ref().and_then(|p| p.id.as_ref()) {
            if caller != &id {
                tracing::warn!(peer = %addr, %caller, %id, "certify refused: the caller's certificate is not the token's identity");
                return Err(self.refuse(
                    "wrong_identity",
                    Status::permission_denied(format!(
                        "the caller's certificate is for {caller}, the token for {id}"
                    )),
                ));
            }
        }
        if req.csr_der.len() > MAX_CSR_BYTES {
            return Err(self.refuse(
                "bad_csr",
                Status::invalid_argument(format!(
                    "the CSR is {} bytes, over the {MAX_CSR_BYTES}-byte limit",
                    req.csr_der.len()
                )),
            ));
        }
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
            req.csr_der.as_slice(),
        ))
        .map_err(|e| {
            tracing::warn!(peer = %addr, %id, error = %e, "certify refused: bad CSR");
            self.refuse(
                "bad_csr",
                Status::invalid_argument(format!(
                    "the CSR is not a valid, self-signed PKCS#10 request: {e}"
                )),
            )
        })?;
        let sans = &csr.params.subject_alt_names;
        let asked: Vec<String> = sans
            .iter()
            .map(|s| match s {
                SanType::URI(u) => u.as_str().to_string(),
                SanType::DnsName(d) => format!("DNS:{}", d.as_str()),
                SanType::IpAddress(ip) => format!("IP:{ip}"),
                SanType::Rfc822Name(m) => format!("email:{}", m.as_str()),
                other => format!("{other:?}"),
            })
            .collect();
        if asked.len() != 1 || asked[0] != id.to_string() {
            tracing::warn!(peer = %addr, %id, ?asked, "certify refused: the CSR asks for another identity");
            return Err(self.refuse(
                "wrong_identity",
                Status::permission_denied(format!(
                    "the CSR must ask for exactly {id} (one URI SAN, no DNS or IP SANs); it asks for {asked:?}"
                )),
            ));
        }
        let leaf = state
            .ca
            .certify_key(&id, &csr.public_key, state.mesh.cert_ttl)
            .map_err(|e| {
                tracing::error!(%id, error = %e, "signing failed");
                self.refuse("ca_error", Status::internal(format!("signing failed: {e}")))
            })?;
        let not_after = x509_parser::parse_x509_certificate(&leaf)
            .map(|(_, c)| c.validity().not_after.timestamp())
            .unwrap_or_default();
        let ca_der = state.ca.cert_der();
        self.metrics.certificates_issued.inc();
        tracing::info!(peer = %addr, %id, not_after, "certificate issued");
        Ok(Response::new(CertifyResponse {
            chain_der: vec![leaf, ca_der],
            bundles: federation::bundles(&state.mesh, &state.ca),
            not_after_unix: not_after,
        }))
    }
}
