//! Builds the rustls client and server configs, shared by QUIC (ALPN `h3`)
//! and TLS/TCP (ALPN `h2`). TLS 1.3 only, mutual always; the certificate
//! presented is read from the [`IdentityStore`] at every handshake, so
//! rotation needs no rebuild.

use std::sync::Arc;

use dashmap::DashMap;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};

use super::verify::{ClientIdentityVerifier, ServerIdentityVerifier, Trust};
use crate::identity::TrustBundles;
use crate::identity::{IdentityStore, SpiffeId};
use crate::metrics::transport::TransportMetrics;

pub const ALPN_H3: &[u8] = b"h3";
pub const ALPN_H2: &[u8] = b"h2";

#[derive(Debug)]
struct CurrentCert(Arc<IdentityStore>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified_key.clone())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified_key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The TLS configs of one proxy. Client configs are cached per expected peer
/// identity and ALPN (each carries its own session-resumption cache).
#[derive(Debug)]
pub struct TlsConfigs {
    store: Arc<IdentityStore>,
    metrics: TransportMetrics,
    clients: DashMap<(SpiffeId, &'static [u8]), Arc<ClientConfig>>,
}

impl TlsConfigs {
    pub fn new(store: Arc<IdentityStore>, metrics: TransportMetrics) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            clients: DashMap::new(),
        })
    }

    pub fn store(&self) -> &Arc<IdentityStore> {
        &self.store
    }

    pub fn metrics(&self) -> &TransportMetrics {
        &self.metrics
    }

    /// A server config requiring client certificates, offering `alpn`.
    pub fn server(&self, alpn: &'static [u8]) -> Arc<ServerConfig> {
        self.server_with(
            ClientIdentityVerifier::new(self.store.clone(), self.metrics.clone()),
            alpn,
        )
    }

    /// A server config for the control plane: a client certificate is
    /// verified when presented, and may be absent (a workload asking for its
    /// first certificate has none yet).
    pub fn server_optional_client_auth(&self, alpn: &'static [u8]) -> Arc<ServerConfig> {
        self.server_with(
            ClientIdentityVerifier::optional(self.store.clone(), self.metrics.clone()),
            alpn,
        )
    }

    fn server_with(
        &self,
        verifier: ClientIdentityVerifier,
        alpn: &'static [u8],
    ) -> Arc<ServerConfig> {
        let mut cfg = ServerConfig::builder_with_provider(crate::crypto::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("aws-lc-rs supports TLS 1.3")
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(CurrentCert(self.store.clone())));
        cfg.alpn_protocols = vec![alpn.to_vec()];
        cfg.max_early_data_size = 0;
        // No session resumption: a resumed TLS 1.3 session skips both
        // verifiers and keeps the certificates of its first handshake, so a
        // rotated, expired or no-longer-trusted identity would be accepted
        // (and reported) for up to a day. Connections are pooled and
        // long-lived; every handshake is a full one.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Arc::new(cfg)
    }

    /// A client config that only accepts a server proving `expected`.
    pub fn client(&self, expected: &SpiffeId, alpn: &'static [u8]) -> Arc<ClientConfig> {
        let key = (expected.clone(), alpn);
        if let Some(c) = self.clients.get(&key) {
            return c.clone();
        }
        let verifier = ServerIdentityVerifier::new(
            Trust::Store(self.store.clone()),
            expected.clone(),
            self.metrics.clone(),
        );
        let mut cfg = ClientConfig::builder_with_provider(crate::crypto::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("aws-lc-rs supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentCert(self.store.clone())));
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let cfg = Arc::new(cfg);
        self.clients.insert(key, cfg.clone());
        cfg
    }
}

/// A client config for a workload that has no identity yet: it presents no
/// certificate and accepts only a server proving `expected` under `bundles`
/// (how an edge reaches the control plane for its first certificate).
pub fn bootstrap_client(
    bundles: Arc<TrustBundles>,
    expected: &SpiffeId,
    alpn: &'static [u8],
    metrics: TransportMetrics,
) -> Arc<ClientConfig> {
    let verifier = ServerIdentityVerifier::new(Trust::Bundles(bundles), expected.clone(), metrics);
    let mut cfg = ClientConfig::builder_with_provider(crate::crypto::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("aws-lc-rs supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// The SPIFFE ID of an authenticated peer, from its certificate chain.
pub fn peer_id_from_chain(
    chain: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Option<SpiffeId> {
    let leaf = chain?.first()?;
    crate::identity::san::leaf_spiffe_id(leaf).ok()
}
