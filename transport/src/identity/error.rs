//! Errors loading identity material.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: bad PEM: {detail}")]
    Pem { origin: String, detail: String },
    #[error("{origin}: bad trust bundle: {detail}")]
    Bundle { origin: String, detail: String },
    #[error("{origin}: bad certificate: {detail}")]
    Certificate { origin: String, detail: String },
    #[error("{origin}: bad private key: {detail}")]
    Key { origin: String, detail: String },
    #[error("no trust bundle was given: at least one is required")]
    NoBundle,
}

impl IdentityError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        IdentityError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
