//! Process-wide cryptography setup: the one rustls crypto provider Ferry
//! uses (aws-lc-rs), and seeding its random generator at start-up.
//!
//! rustls 0.23 picks its crypto provider from a process-wide default. Ferry
//! builds rustls with only the aws-lc-rs backend, but other crates in the
//! dependency graph may enable `ring` as well, in which case rustls cannot
//! choose on its own and panics on first use. Installing the provider
//! explicitly at startup, and passing [`provider`] to every config builder,
//! removes that ambiguity.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The aws-lc-rs crypto provider, shared by every rustls config Ferry builds
/// (`builder_with_provider`) and by its certificate verifiers.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
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
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Seeds aws-lc's random generator, so that the first handshake does not
/// pay for it.
///
/// aws-lc seeds its process-wide DRBG from CPU-jitter entropy on the first
/// random bytes a process asks for: 36–69 ms on a 2-vCPU VM, on the path of
/// whichever TLS handshake comes first (the ClientHello's key share, the
/// server's ephemeral key). Edges, gateways and the control plane call this
/// before they report ready. It blocks for that long the first time and
/// returns at once afterwards; call it from a blocking context (or through
/// [`warm_up_crypto`]).
pub fn seed_random_generator() {
    static SEEDED: OnceLock<()> = OnceLock::new();
    SEEDED.get_or_init(|| {
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
}

/// [`seed_random_generator`] on tokio's blocking pool: start-up awaits it
/// before reporting ready, without stalling a runtime worker meanwhile.
pub async fn warm_up_crypto() {
    // Cancelled means the runtime is shutting down (start-up failed): say
    // nothing. A panic is a bug worth a line; either way the first
    // handshake would seed the generator instead.
    if let Err(e) = tokio::task::spawn_blocking(seed_random_generator).await {
        if e.is_panic() {
            tracing::warn!(error = %e, "seeding the random generator panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_gives_random_bytes_after_seeding() {
        seed_random_generator();
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        provider().secure_random.fill(&mut a).unwrap();
        provider().secure_random.fill(&mut b).unwrap();
        assert_ne!(a, b, "two draws of 32 random bytes must differ");
    }
}
