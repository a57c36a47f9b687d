//! Workload identity: SPIFFE IDs, PEM material on disk (with rotation) and
//! the small PKI behind `ferry certs`.

pub mod bundle;
pub mod error;
pub mod material;
pub mod pki;
pub mod san;
pub mod spiffe;
pub mod store;

pub use bundle::TrustBundles;
pub use error::IdentityError;
pub use material::{IdentityFiles, Material};
pub use spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
pub use store::IdentityStore;
