//! Inbound authorization per application port: allowed SPIFFE IDs, trust
//! domains or namespaces. A port with no policy allows any authenticated
//! mesh identity (the TLS layer already refused everyone else).

use std::collections::HashMap;

use ferry_transport::identity::SpiffeId;

use crate::config::PortPolicy;

#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    ports: HashMap<u16, PortPolicy>,
}

impl Authorizer {
    pub fn new(policies: &[PortPolicy]) -> Self {
        Self {
            ports: policies.iter().map(|p| (p.port, p.clone())).collect(),
        }
    }

    /// Whether `client` may reach the application's `port`.
    pub fn allows(&self, client: &SpiffeId, port: u16) -> bool {
        let Some(p) = self.ports.get(&port) else {
            return true;
        };
        if p.allow_ids.is_empty()
            && p.allow_trust_domains.is_empty()
            && p.allow_namespaces.is_empty()
        {
            return true;
        }
        p.allow_ids.iter().any(|i| &i.0 == client)
            || p.allow_trust_domains
                .iter()
                .any(|t| &t.0 == client.trust_domain())
            || client
                .namespace()
                .is_some_and(|ns| p.allow_namespaces.iter().any(|n| n == ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SpiffeIdValue, TrustDomainValue};

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn policies() {
        let a = Authorizer::new(&[
            PortPolicy {
                port: 80,
                allow_ids: vec![SpiffeIdValue(id("spiffe://a/ns/x/sa/web"))],
                allow_trust_domains: vec![],
                allow_namespaces: vec![],
            },
            PortPolicy {
                port: 81,
                allow_ids: vec![],
                allow_trust_domains: vec![TrustDomainValue("b".parse().unwrap())],
                allow_namespaces: vec!["prod".into()],
            },
        ]);
        assert!(a.allows(&id("spiffe://a/ns/x/sa/web"), 80));
        assert!(!a.allows(&id("spiffe://a/ns/x/sa/other"), 80));
        assert!(a.allows(&id("spiffe://b/ns/x/sa/any"), 81));
        assert!(a.allows(&id("spiffe://a/ns/prod/sa/any"), 81));
        assert!(!a.allows(&id("spiffe://a/ns/dev/sa/any"), 81));
        assert!(
            a.allows(&id("spiffe://z/ns/dev/sa/any"), 9999),
            "no policy: any mesh identity"
        );
    }
}
