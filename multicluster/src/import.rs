//! Naming and marking of imported services: the linked cluster's exported
//! `name.namespace:port` becomes `name.namespace.svc.<cluster>:port`; every
//! endpoint gets `cluster` and `via_gateway` (the linked gateway); the
//! same endpoints are offered as failover for the local `name.namespace:port`.
//! Virtual addresses are the remote cluster's and are not imported.

use std::collections::BTreeMap;

use ferry_control::api::{Endpoint, Gateway, Service};
use ferry_control::imports::Imports;
use ferry_control::mesh::Link;

/// The local name of a linked cluster's service, `None` if the remote
/// authority is not `name.namespace:port`.
pub fn local_authority(remote: &str, cluster: &str) -> Option<String> {
    let (host, port) = remote.rsplit_once(':')?;
    let (name, namespace) = host.split_once('.')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    (label(name) && label(namespace) && port.parse::<u16>().is_ok())
        .then(|| format!("{name}.{namespace}.svc.{cluster}:{port}"))
}

/// Adds what `link`'s cluster exports (`remote`, by remote authority) to
/// `imports`; returns how many services it brought.
pub fn import(link: &Link, remote: &BTreeMap<String, Service>, imports: &mut Imports) -> usize {
    let mut count = 0;
    for (authority, service) in remote.iter().filter(|(_, s)| s.exported) {
        let Some(local) = local_authority(authority, &link.cluster) else {
            tracing::warn!(cluster = %link.cluster, %authority, "ignoring a remote service with a malformed authority");
            continue;
        };
        let endpoints: Vec<Endpoint> = service
            .endpoints
            .iter()
            .filter(|e| e.cluster.is_empty() && e.via_gateway.is_none() && !e.failover)
            .map(|e| Endpoint {
                cluster: link.cluster.clone(),
                via_gateway: Some(Gateway {
                    address: link.gateway.to_string(),
                    spiffe_id: link.gateway_id.to_string(),
                }),
                ..e.clone()
            })
            .collect();
        imports
            .failover
            .entry(authority.clone())
            .or_default()
            .extend(endpoints.iter().cloned());
        imports.services.insert(
            local.clone(),
            Service {
                authority: local,
                protocol: service.protocol,
                addresses: Vec::new(),
                endpoints,
                exported: false,
            },
        );
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        assert_eq!(
            local_authority("api.default:80", "west").as_deref(),
            Some("api.default.svc.west:80")
        );
        assert_eq!(local_authority("api:80", "west"), None);
        assert_eq!(local_authority("api.default.svc.x:80", "west"), None);
        assert_eq!(local_authority("api.default:http", "west"), None);
    }
}
