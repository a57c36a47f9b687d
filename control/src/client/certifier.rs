//! The workload side of `Identity.Certify`: generate a P-256 key (it never
//! leaves the process), send a CSR for the workload's SPIFFE ID with the
//! bootstrap token, and build the TLS identity from the answer. Renewal runs
//! at about 70% of the lifetime (with jitter), retries with backoff, and
//! keeps the old certificate in use until the new one arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_transport::identity::{IdentityStore, Material, SpiffeId, TrustBundles};
use ferry_transport::metrics::transport::TransportMetrics;
use ferry_transport::tls::{bootstrap_client, ALPN_H2};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::{channel, Backoff, TrustRefresh};
use crate::api::identity_client::IdentityClient;
use crate::api::CertifyRequest;

/// How long one Certify call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("building the CSR: {0}")]
    Csr(String),
    #[error("the control plane refused: {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("the control plane's answer is unusable: {0}")]
    Answer(String),
    #[error("no answer from the control plane within {0:?}")]
    Timeout(Duration),
}

impl CertifyError {
    /// Whether trying again later could help (the token or CSR being
    /// refused will not change by itself; connection trouble may).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            CertifyError::Refused {
                code: tonic::Code::Unauthenticated
                    | tonic::Code::PermissionDenied
                    | tonic::Code::InvalidArgument,
                ..
            }
        )
    }
}

/// Gets certificates for one workload identity.
pub struct Certifier {
    id: SpiffeId,
    token: String,
    /// No client certificate: the first certification, and the fallback
    /// when the current certificate no longer works (expired).
    bootstrap: Channel,
    /// With the workload's current SVID, for renewals.
    authenticated: std::sync::OnceLock<Channel>,
    addr: SocketAddr,
    control_id: SpiffeId,
    metrics: TransportMetrics,
}

impl std::fmt::Debug for Certifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("Certifier")
            .field("id", &self.id.to_string())
            .finish_non_exhaustive()
    }
}

impl Certifier {
    /// Certify calls go to `addr`, which must prove `control_id` under the
    /// bootstrap `bundles`. The first carries no client certificate (the
    /// token authenticates); renewals present the current SVID too, and fall
    /// back to the token alone if that fails (an expired certificate can
    /// still be replaced).
    pub fn new(
        addr: SocketAddr,
        control_id: SpiffeId,
        bundles: Arc<TrustBundles>,
        id: SpiffeId,
        token: String,
        metrics: TransportMetrics,
    ) -> Self {
        let tls = bootstrap_client(bundles, &control_id, ALPN_H2, metrics.clone());
        Self {
            id,
            token: token.trim().to_string(),
            bootstrap: channel(addr, move || tls.clone()),
            authenticated: std::sync::OnceLock::new(),
            addr,
            control_id,
            metrics,
        }
    }

    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// One Certify call without a client certificate.
    pub async fn certify(&self) -> Result<Material, CertifyError> {
        self.certify_over(self.bootstrap.clone()).await
    }

    /// A renewal: over a connection presenting the current SVID from
    /// `store`, then, if that fails, with the token alone.
    async fn renew(&self, store: &Arc<IdentityStore>) -> Result<Material, CertifyError> {
        let authenticated = self.authenticated.get_or_init(|| {
            let tls = ferry_transport::tls::TlsConfigs::new(store.clone(), self.metrics.clone());
            let control_id = self.control_id.clone();
            channel(self.addr, move || tls.client(&control_id, ALPN_H2))
        });
        match self.certify_over(authenticated.clone()).await {
            Ok(m) => Ok(m),
            Err(e) if e.is_permanent() => Err(e),
            Err(e) => {
                tracing::info!(id = %self.id, error = %e, "renewal with the current certificate failed; trying with the token alone");
                self.certify().await
            }
        }
    }

    /// One Certify call over `channel`: a new key, a CSR, the certificate.
    async fn certify_over(&self, channel: Channel) -> Result<Material, CertifyError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertifyError::Csr(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = rcgen::string::Ia5String::try_from(self.id.to_string())
            .map_err(|e| CertifyError::Csr(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let csr = params
            .serialize_request(&key)
            .map_err(|e| CertifyError::Csr(e.to_string()))?;
        let request = CertifyRequest {
            csr_der: csr.der().to_vec(),
            token: self.token.clone(),
        };
        let mut client = IdentityClient::new(channel);
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.certify(request))
            .await
            .map_err(|_| CertifyError::Timeout(CALL_TIMEOUT))?
            .map_err(|s| CertifyError::Refused {
                code: s.code(),
                message: s.message().to_string(),
            })?
            .into_inner();
        let chain: Vec<CertificateDer<'static>> = answer
            .chain_der
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let bundles = crate::federation::trust(&answer.bundles)
            .map_err(|e| CertifyError::Answer(e.to_string()))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let material = Material::from_der(
            chain,
            "the issued certificate",
            key,
            "the generated key",
            bundles,
        )
        .map_err(|e| CertifyError::Answer(e.to_string()))?;
        if material.id != self.id {
            return Err(CertifyError::Answer(format!(
                "the certificate is for {}, not {}",
                material.id, self.id
            )));
        }
        Ok(material)
    }

    /// Certifies until it works (retrying with backoff, logging every
    /// failure) or `stop` is cancelled.
    pub async fn first(&self, stop: &CancellationToken) -> Option<Material> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match self.certify().await {
                Ok(m) => {
                    tracing::info!(id = %self.id, "certified by the control plane");
                    return Some(m);
                }
                Err(e) => {
                    tracing::warn!(id = %self.id, error = %e, "certification failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = stop.cancelled() => return None,
            }
        }
    }

    /// Renews the identity in `store` for as long as `stop` is not
    /// cancelled. `issued` is when the current certificate was obtained.
    /// `refresh` asks for a renewal now (the cluster's links changed).
    pub fn spawn_renewal(
        self: Arc<Self>,
        store: Arc<IdentityStore>,
        issued: SystemTime,
        refresh: TrustRefresh,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut issued = issued;
            loop {
                let not_after = store.current().not_after;
                let wait = renew_delay(issued, not_after, SystemTime::now(), rand::random());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = refresh.wanted() => {}
                    _ = stop.cancelled() => return,
                }
                let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
                loop {
                    match self.renew(&store).await {
                        Ok(m) => {
                            tracing::info!(id = %self.id, "certificate renewed");
                            store.set(m);
                            issued = SystemTime::now();
                            break;
                        }
                        Err(e) => {
                            let left = not_after
                                .duration_since(SystemTime::now())
                                .unwrap_or_default();
                            tracing::warn!(id = %self.id, error = %e, expires_in = ?left, "renewal failed; the current certificate stays in use");
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        })
    }
}

/// When to renew: at 70% of the lifetime (from when it was obtained), give
/// or take 5% (`jitter` in [0, 1)), never in the past.
pub fn renew_delay(
    issued: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    jitter: f64,
) -> Duration {
    let lifetime = not_after.duration_since(issued).unwrap_or_default();
    let fraction = 0.65 + 0.1 * jitter.clamp(0.0, 1.0);
    let at = issued + lifetime.mul_f64(fraction);
    at.duration_since(now).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_about_seventy_percent() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = t0 + Duration::from_secs(100);
        assert_eq!(renew_delay(t0, end, t0, 0.5), Duration::from_secs(70));
        assert_eq!(renew_delay(t0, end, t0, 0.0), Duration::from_secs(65));
        assert!(renew_delay(t0, end, t0, 0.999) < Duration::from_secs(75));
        // Already past the point: renew now.
        assert_eq!(
            renew_delay(t0, end, t0 + Duration::from_secs(90), 0.5),
            Duration::ZERO
        );
        // Expired or nonsensical: renew now.
        assert_eq!(renew_delay(end, t0, end, 0.5), Duration::ZERO);
    }
}
