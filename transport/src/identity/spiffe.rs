//! SPIFFE IDs (`spiffe://<trust-domain>/<path>`): parsing, validation and the
//! trust-domain type used to pick a trust bundle.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Why a string is not a valid SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID {0:?} must start with \"spiffe://\"")]
    Scheme(String),
    #[error("SPIFFE ID {0:?} has an empty trust domain")]
    EmptyTrustDomain(String),
    #[error("trust domain {domain:?} contains {found:?}: only lowercase letters, digits, '.', '-' and '_' are allowed")]
    TrustDomainChar { domain: String, found: char },
    #[error("SPIFFE ID {0:?} must not contain a port, userinfo, query or fragment")]
    Forbidden(String),
    #[error("SPIFFE ID {id:?} has an invalid path: {why}")]
    Path { id: String, why: &'static str },
    #[error("SPIFFE ID {0:?} is longer than 2048 bytes")]
    TooLong(String),
}

/// A validated trust domain (the authority part of a SPIFFE ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Arc<str>);

impl TrustDomain {
    /// Validates a bare trust-domain name such as `cluster.local`.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain(name.to_string()));
        }
        for c in name.chars() {
            let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_');
            if !ok {
                return Err(SpiffeIdError::TrustDomainChar {
                    domain: name.to_string(),
                    found: c,
                });
            }
        }
        Ok(Self(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself (`spiffe://td`), used as the
    /// URI SAN of a trust domain's CA.
    pub fn id_string(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("spiffe://").unwrap_or(s);
        Self::new(s.trim_end_matches('/'))
    }
}

/// A validated workload SPIFFE ID: `spiffe://<trust-domain>/<path>`.
/// Clones share its text (reference counted): one travels with every stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// The whole ID, `spiffe://<trust-domain><path>`, where the path
    /// (with its leading `/`) is never empty for a workload ID.
    full: Arc<str>,
}

/// What precedes the trust domain in an ID.
const SCHEME: &str = "spiffe://";

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > 2048 {
            return Err(SpiffeIdError::TooLong(s.chars().take(64).collect()));
        }
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeIdError::Scheme(s.to_string()))?;
        if rest.contains(['?', '#', '@']) {
            return Err(SpiffeIdError::Forbidden(s.to_string()));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains(':') {
            return Err(SpiffeIdError::Forbidden(s.to_string()));
        }
        if authority.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain(s.to_string()));
        }
        let trust_domain = TrustDomain::new(authority)?;
        let path_err = |why| SpiffeIdError::Path {
            id: s.to_string(),
            why,
        };
        if path.is_empty() || path == "/" {
            return Err(path_err(
                "a workload ID needs a path after the trust domain",
            ));
        }
        for segment in path[1..].split('/') {
            if segment.is_empty() {
                return Err(path_err("empty segment (\"//\" or a trailing \"/\")"));
            }
            if segment == "." || segment == ".." {
                return Err(path_err("\".\" and \"..\" segments are not allowed"));
            }
            if !segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(path_err(
                    "segments may hold only letters, digits, '.', '-' and '_'",
                ));
            }
        }
        Ok(Self {
            trust_domain,
            full: Arc::from(s),
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn path(&self) -> &str {
        &self.full[SCHEME.len() + self.trust_domain.as_str().len()..]
    }

    /// The whole ID as text (what `Display` writes).
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The Kubernetes-style namespace, for IDs shaped `/ns/<ns>/sa/<sa>`.
    pub fn namespace(&self) -> Option<&str> {
        let mut parts = self.path()[1..].split('/');
        match (parts.next(), parts.next()) {
            (Some("ns"), Some(ns)) => Some(ns),
            _ => None,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_workload_ids() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/web").unwrap();
        assert_eq!(id.trust_domain().as_str(), "cluster.local");
        assert_eq!(id.path(), "/ns/default/sa/web");
        assert_eq!(id.namespace(), Some("default"));
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/web");
        assert_eq!(id.as_str(), "spiffe://cluster.local/ns/default/sa/web");
        let other = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/wex").unwrap();
        assert!(id < other && id != other);
        let domain = SpiffeId::parse("spiffe://cluster.locam/a").unwrap();
        assert!(other < domain, "the trust domain orders first");
    }

    #[test]
    fn rejects_bad_ids_with_reasons() {
        let cases = [
            ("", "empty"),
            ("http://td/a", "must start"),
            ("spiffe:///a", "empty trust domain"),
            ("spiffe://TD/a", "contains 'T'"),
            ("spiffe://td:443/a", "port"),
            ("spiffe://user@td/a", "userinfo"),
            ("spiffe://td/a?x=1", "query"),
            ("spiffe://td/a#f", "fragment"),
            ("spiffe://td", "needs a path"),
            ("spiffe://td/", "needs a path"),
            ("spiffe://td/a//b", "empty segment"),
            ("spiffe://td/a/", "empty segment"),
            ("spiffe://td/a/../b", "not allowed"),
            ("spiffe://td/a b", "segments may hold"),
        ];
        for (input, want) in cases {
            let err = SpiffeId::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn trust_domain_accepts_id_form() {
        assert_eq!(
            "spiffe://east.mesh"
                .parse::<TrustDomain>()
                .unwrap()
                .as_str(),
            "east.mesh"
        );
        assert!("East".parse::<TrustDomain>().is_err());
    }
}
