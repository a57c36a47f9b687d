//! Process-wide cryptography setup: the one rustls crypto provider Ferry
//! uses (aws-lc-rs), and seeding its random generator at start-up.
//!
//! rustls 0.23 picks its crypto provider from a process-wide default. Ferry
//! builds rustls with only the aws-lc-rs backend, but other crates in the
//! dependency graph may enable `ring` as well, in which case rustls cannot
//! choose on its own and panics on first use. Installing the provider
//! explicitly at startup, and passing [`provider`] to every config builder,
//! removes that ambiguity.
//!
//! The provider is aws-lc-rs's default with one change of order: TLS 1.3's
//! AES-128-GCM/SHA-256 suite is preferred over AES-256-GCM/SHA-384 (as
//! BoringSSL and Go order them). Every QUIC packet and TLS record is
//! sealed with it, and the key schedule runs on SHA-256, which CPUs
//! accelerate (SHA-384 runs in software on most of them).

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::CipherSuite;

/// The TLS 1.3 cipher suites Ferry offers, by their IANA names, in its
/// default order of preference (`tunnel.cipher_suites`).
pub const CIPHER_SUITES: [(&str, CipherSuite); 3] = [
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// [`CIPHER_SUITES`]' names, in order: a configuration's default.
pub fn default_cipher_suite_names() -> Vec<String> {
    CIPHER_SUITES
        .iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The suites named in `names` (IANA names, see [`CIPHER_SUITES`]), in
/// that order: at least one, each known and named once.
pub fn parse_cipher_suites<S: AsRef<str>>(names: &[S]) -> Result<Vec<CipherSuite>, String> {
    if names.is_empty() {
        return Err("no cipher suite: name at least one".into());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_ref();
        let Some((_, suite)) = CIPHER_SUITES.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = CIPHER_SUITES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown TLS 1.3 cipher suite {name:?} (expected one of {})",
                known.join(", ")
            ));
        };
        if out.contains(suite) {
            return Err(format!("cipher suite {name} is named twice"));
        }
        out.push(*suite);
    }
    Ok(out)
}

/// Ferry's provider offering only `suites`, in that order (the TLS 1.2
/// suites go too: Ferry speaks TLS 1.3 only). With Ferry's default list
/// it is [`provider`]'s equal.
pub fn provider_with_suites(suites: &[CipherSuite]) -> Arc<CryptoProvider> {
    let mut p = CryptoProvider::clone(&provider());
    let offered = std::mem::take(&mut p.cipher_suites);
    p.cipher_suites = suites
        .iter()
        .filter_map(|want| offered.iter().find(|s| s.suite() == *want).copied())
        .collect();
    Arc::new(p)
}

/// The aws-lc-rs crypto provider, shared by every rustls config Ferry builds
/// (`builder_with_provider`) and by its certificate verifiers.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut p = rustls::crypto::aws_lc_rs::default_provider();
            // AES-128-GCM/SHA-256 first, the rest in aws-lc-rs's order
            // (AES-256-GCM/SHA-384, ChaCha20-Poly1305): a stable sort.
            p.cipher_suites
                .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
            Arc::new(p)
        })
        .clone()
}

/// Installs aws-lc-rs as the process-wide default rustls crypto provider.
///
/// Call it first thing in `main` (and in tests that build rustls configs
/// without [`provider`]). Calling it more than once is harmless.
pub fn install_crypto_provider() {
    // `install_default` fails only if a provider is already installed (by an
    // earlier call, or by a test harness); either way the process ends up
    // with a provider, so the error carries nothing to act on.
    let _ = CryptoProvider::clone(&provider()).install_default();
}

/// Starts seeding aws-lc's random generator on tokio's blocking pool and
/// returns what to await before reporting ready.
///
/// aws-lc seeds its process-wide DRBG from CPU-jitter entropy on the first
/// random bytes a process asks for: 36–69 ms on a 2-vCPU VM, on the path of
/// whichever TLS handshake comes first (the ClientHello's key share, the
/// server's ephemeral key). Edges, gateways and the control plane call this
/// first thing at start-up, so the seeding runs beside the rest of it. Must
/// be called within a tokio runtime.
pub fn warm_up_crypto() -> impl std::future::Future<Output = ()> {
    let seeding = tokio::task::spawn_blocking(|| {
        let start = std::time::Instant::now();
        let mut bytes = [0u8; 32];
        match provider().secure_random.fill(&mut bytes) {
            Ok(()) => tracing::debug!(
                elapsed_ms = start.elapsed().as_secs_f64() * 1e3,
                "random generator seeded"
            ),
            // aws-lc aborts the process when it finds no entropy at all, so
            // this is not expected; handshakes would report it too.
            Err(e) => tracing::warn!(error = ?e, "seeding the random generator failed"),
        }
    });
    async move {
        // Cancelled means the runtime is shutting down (start-up failed):
        // say nothing. Either way the first handshake would seed instead.
        if let Err(e) = seeding.await {
            if e.is_panic() {
                tracing::warn!(error = %e, "seeding the random generator panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suites(p: &CryptoProvider) -> Vec<CipherSuite> {
        p.cipher_suites.iter().map(|s| s.suite()).collect()
    }

    #[test]
    fn cipher_suites_parse_in_the_order_given() {
        assert_eq!(
            parse_cipher_suites(&["TLS_AES_256_GCM_SHA384"]).unwrap(),
            vec![CipherSuite::TLS13_AES_256_GCM_SHA384]
        );
        assert_eq!(
            parse_cipher_suites(&["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"])
                .unwrap(),
            vec![
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS13_AES_128_GCM_SHA256
            ]
        );
        let all: Vec<&str> = CIPHER_SUITES.iter().map(|(n, _)| *n).collect();
        assert_eq!(parse_cipher_suites(&all).unwrap().len(), 3);
    }

    #[test]
    fn bad_cipher_suite_lists_are_refused_with_the_reason() {
        let e = parse_cipher_suites(&["TLS_AES_256_CBC_SHA"]).unwrap_err();
        assert!(
            e.contains("\"TLS_AES_256_CBC_SHA\"") && e.contains("TLS_AES_128_GCM_SHA256"),
            "{e}"
        );
        let e = parse_cipher_suites::<&str>(&[]).unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e =
            parse_cipher_suites(&["TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn a_restricted_provider_offers_exactly_the_suites_named() {
        let only = provider_with_suites(&[CipherSuite::TLS13_AES_256_GCM_SHA384]);
        assert_eq!(suites(&only), vec![CipherSuite::TLS13_AES_256_GCM_SHA384]);
        let default: Vec<CipherSuite> = CIPHER_SUITES.iter().map(|(_, s)| *s).collect();
        let tls13: Vec<CipherSuite> = suites(&provider())
            .into_iter()
            .filter(|s| default.contains(s))
            .collect();
        assert_eq!(
            tls13, default,
            "the default list is the provider's TLS 1.3 order"
        );
        assert_eq!(suites(&provider_with_suites(&default)), default);
    }

    #[test]
    fn aes128_gcm_comes_first_and_no_suite_is_lost() {
        let ours = provider();
        let default = rustls::crypto::aws_lc_rs::default_provider();
        assert_eq!(
            ours.cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let mut a: Vec<_> = ours
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        let mut b: Vec<_> = default
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }
}
