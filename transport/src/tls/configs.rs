//! Builds the rustls client and server configs, shared by QUIC (ALPN `h3`)
//! and TLS/TCP (ALPN `h2`). TLS 1.3 only, mutual always; the certificate
//! presented is read from the [`IdentityStore`] at every handshake, so
//! rotation needs no rebuild. Sessions resume (see [`super::sessions`]) until
//! the identity material is next replaced; over QUIC a resumed session may
//! carry 0-RTT data (`crate::tunnel::early_data`).

use std::sync::Arc;

use dashmap::DashMap;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};

use super::sessions::ResumableSessions;
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

/// Tickets issued per full handshake (each redeems once; a client that
/// reconnects twice before its next full handshake resumes both times).
const TICKETS_PER_HANDSHAKE: usize = 2;

/// Sessions a client config keeps (it is per expected identity, so this
/// is per peer address of one identity).
const CLIENT_SESSIONS: usize = 256;

/// A client config and the identity store's generation it was built under.
type GenerationConfig = (u64, Arc<ClientConfig>);

/// The TLS configs of one proxy. Client configs are cached per expected peer
/// identity and ALPN, each with its own session cache, and rebuilt (their
/// sessions dropped) once the identity material is replaced. Server configs
/// share one session cache.
#[derive(Debug)]
pub struct TlsConfigs {
    store: Arc<IdentityStore>,
    metrics: TransportMetrics,
    /// Ferry's crypto provider, or one offering fewer cipher suites.
    provider: Arc<CryptoProvider>,
    sessions: Arc<ResumableSessions>,
    clients: DashMap<(SpiffeId, &'static [u8]), GenerationConfig>,
}

impl TlsConfigs {
    pub fn new(store: Arc<IdentityStore>, metrics: TransportMetrics) -> Arc<Self> {
        Self::with_provider(store, metrics, crate::crypto::provider())
    }

    /// Configs that offer and accept only `suites` (TLS 1.3 cipher
    /// suites, in order of preference; see
    /// [`crate::crypto::parse_cipher_suites`]). QUIC's Initial packets
    /// keep AES-128-GCM, as RFC 9001 requires. Refused when none of them
    /// is a TLS 1.3 suite the crypto provider has.
    pub fn with_cipher_suites(
        store: Arc<IdentityStore>,
        metrics: TransportMetrics,
        suites: &[rustls::CipherSuite],
    ) -> Result<Arc<Self>, String> {
        let provider = crate::crypto::provider_with_suites(suites);
        if !provider.cipher_suites.iter().any(|s| s.tls13().is_some()) {
            return Err(format!(
                "none of the cipher suites {suites:?} is a TLS 1.3 suite of the crypto provider"
            ));
        }
        Ok(Self::with_provider(store, metrics, provider))
    }

    fn with_provider(
        store: Arc<IdentityStore>,
        metrics: TransportMetrics,
        provider: Arc<CryptoProvider>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions: ResumableSessions::new(store.clone(), metrics.clone()),
            store,
            metrics,
            provider,
            clients: DashMap::new(),
        })
    }

    /// The server side's session cache.
    pub fn sessions(&self) -> &Arc<ResumableSessions> {
        &self.sessions
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
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the provider has a TLS 1.3 suite (checked when TlsConfigs is built)")
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(CurrentCert(self.store.clone())));
        cfg.alpn_protocols = vec![alpn.to_vec()];
        // QUIC takes 0-RTT data (QUIC allows only "none" or "unbounded";
        // quinn's flow control bounds it): with stateful single-use
        // tickets rustls accepts early data once per ticket, so a replay
        // is refused. TLS over TCP takes none (its early data would reach
        // the HTTP/2 layer unauthenticated by a Finished).
        cfg.max_early_data_size = match alpn {
            ALPN_H3 => u32::MAX,
            _ => 0,
        };
        // Stateful, single-use sessions that end with any change of this
        // proxy's identity material; the peer's stored chain is checked
        // against the clock after the handshake (`current_peer_id`).
        cfg.session_storage = self.sessions.clone();
        cfg.send_tls13_tickets = TICKETS_PER_HANDSHAKE;
        Arc::new(cfg)
    }

    /// A client config that only accepts a server proving `expected`.
    ///
    /// Its sessions were all begun with a server that proved `expected`
    /// under the trust bundles of this generation of the identity material.
    pub fn client(&self, expected: &SpiffeId, alpn: &'static [u8]) -> Arc<ClientConfig> {
        let generation = self.store.reload_count();
        if let Some(c) = self.clients.get(&(expected.clone(), alpn)) {
            if c.0 == generation {
                return c.1.clone();
            }
        }
        let key = (expected.clone(), alpn);
        let verifier = ServerIdentityVerifier::new(
            Trust::Store(self.store.clone()),
            expected.clone(),
            self.metrics.clone(),
        );
        let mut cfg = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the provider has a TLS 1.3 suite (checked when TlsConfigs is built)")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentCert(self.store.clone())));
        cfg.alpn_protocols = vec![alpn.to_vec()];
        cfg.resumption = rustls::client::Resumption::in_memory_sessions(CLIENT_SESSIONS);
        // Dials name the peer's address and port for the session cache
        // (`session_name`), a name nobody else needs to see.
        cfg.enable_sni = false;
        // Only QUIC sends early data, and only when the dial asks for it
        // (`TunnelConfig::early_data`).
        cfg.enable_early_data = alpn == ALPN_H3;
        let cfg = Arc::new(cfg);
        self.clients.insert(key, (generation, cfg.clone()));
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
