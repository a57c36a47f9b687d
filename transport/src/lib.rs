//! Ferry's transport: SPIFFE identities, mutually authenticated QUIC/HTTP3
//! tunnels, the HTTP/2-over-TLS fallback, the connection pool and the choice
//! between QUIC and TCP. It knows nothing of services; the edge and the
//! gateway build on it.

pub mod identity;
pub mod kind;
pub mod listener;
pub mod metrics;
pub mod tls;
pub mod tunnel;

pub use kind::TransportKind;
pub mod crypto;
pub use crypto::{install_crypto_provider, warm_up_crypto};
