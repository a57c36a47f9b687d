//! What the gateway may do, from its control plane's map: which callers it
//! admits (trust domains of linked clusters, plus any the config adds) and
//! which targets it relays to (the tunnel addresses of the local endpoints
//! of exported services, with the identity each must prove).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use ferry_control::client::MeshView;
use ferry_transport::identity::{SpiffeId, TrustDomain};

#[derive(Debug, Default)]
pub struct Routes {
    admitted: HashSet<TrustDomain>,
    targets: HashMap<SocketAddr, SpiffeId>,
    pub version: u64,
}

impl Routes {
    /// Builds the routes from the watched state; `extra` trust domains are
    /// admitted too.
    pub fn from_view(view: &MeshView, extra: &[TrustDomain]) -> Self {
        let admitted = view
            .linked_trust_domains
            .iter()
            .filter_map(|t| t.parse::<TrustDomain>().ok())
            .chain(extra.iter().cloned())
            .collect();
        let targets = view
            .services
            .values()
            .filter(|s| s.exported)
            .flat_map(|s| s.endpoints.iter())
            // Only this cluster's endpoints: never relay onwards.
            .filter(|e| e.via_gateway.is_none())
            .filter_map(|e| Some((e.tunnel.parse().ok()?, SpiffeId::parse(&e.spiffe_id).ok()?)))
            .collect();
        Self {
            admitted,
            targets,
            version: view.version,
        }
    }

    pub fn admits(&self, caller: &SpiffeId) -> bool {
        self.admitted.contains(caller.trust_domain())
    }

    /// The identity the edge at `tunnel` must prove, if it serves an
    /// exported service.
    pub fn target(&self, tunnel: SocketAddr) -> Option<&SpiffeId> {
        self.targets.get(&tunnel)
    }

    pub fn summary(&self) -> (usize, Vec<String>) {
        let mut tds: Vec<String> = self.admitted.iter().map(|t| t.to_string()).collect();
        tds.sort();
        (self.targets.len(), tds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_control::api;

    #[test]
    fn only_exported_local_endpoints_and_linked_callers() {
        let ep = |tunnel: &str, via: bool| api::Endpoint {
            address: "10.0.0.1:80".into(),
            tunnel: tunnel.into(),
            spiffe_id: "spiffe://west/ns/a/sa/api".into(),
            via_gateway: via.then(|| api::Gateway {
                address: "10.9.9.9:4143".into(),
                spiffe_id: "spiffe://east/ns/ferry-system/sa/gateway".into(),
            }),
            ..Default::default()
        };
        let mut view = MeshView::default();
        view.apply(api::WatchUpdate {
            version: 3,
            reset: true,
            services: vec![
                api::Service {
                    authority: "api.a:80".into(),
                    exported: true,
                    endpoints: vec![ep("10.0.0.1:4143", false), ep("10.0.0.2:4143", true)],
                    ..Default::default()
                },
                api::Service {
                    authority: "db.a:5432".into(),
                    exported: false,
                    endpoints: vec![ep("10.0.0.3:4143", false)],
                    ..Default::default()
                },
            ],
            linked_trust_domains: vec!["east".into()],
            ..Default::default()
        });
        let r = Routes::from_view(&view, &["partner".parse().unwrap()]);
        assert!(r.target("10.0.0.1:4143".parse().unwrap()).is_some());
        assert!(
            r.target("10.0.0.2:4143".parse().unwrap()).is_none(),
            "remote: not relayed onwards"
        );
        assert!(
            r.target("10.0.0.3:4143".parse().unwrap()).is_none(),
            "not exported"
        );
        assert!(r.admits(&SpiffeId::parse("spiffe://east/ns/x/sa/y").unwrap()));
        assert!(r.admits(&SpiffeId::parse("spiffe://partner/ns/x/sa/y").unwrap()));
        assert!(!r.admits(&SpiffeId::parse("spiffe://west/ns/x/sa/y").unwrap()));
        assert_eq!(r.version, 3);
    }
}
