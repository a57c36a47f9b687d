//! Process-wide cryptography setup: the one rustls crypto provider Ferry
//! uses (aws-lc-rs).
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
