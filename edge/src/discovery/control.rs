//! Discovery from the control plane: applies `Discovery.Watch` updates to
//! the edge's view (services and its inbound policy). A `reset` replaces
//! everything; later updates change or remove single services. Between
//! connections the last known state stays in use.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_control::api;
use ferry_control::client::{MeshView, TrustRefresh};
use ferry_transport::identity::SpiffeId;
use ferry_transport::tls::{TlsConfigs, ALPN_H2};
use ferry_transport::tunnel::Via;
use tokio_util::sync::CancellationToken;

use super::snapshot::{Endpoint, Protocol, Service, Snapshot};
use crate::config::{ControlConfig, PortPolicy, SpiffeIdValue, TrustDomainValue};
use crate::context::EdgeContext;
use crate::inbound::authz::Authorizer;

/// Watches every service over a connection authenticated with the edge's
/// SVID, applying each update to `ctx` (discovery and, when the update
/// carries one, the inbound policy; ports the edge's own config lists keep
/// their local policy). Resolves once the first state has been applied.
pub fn spawn_watch(
    control: &ControlConfig,
    ctx: Arc<EdgeContext>,
    tls: Arc<TlsConfigs>,
    trust_refresh: Option<TrustRefresh>,
    stop: CancellationToken,
) -> tokio::sync::oneshot::Receiver<()> {
    let control_id = control.control_id();
    let channel =
        ferry_control::client::channel(control.address, move || tls.client(&control_id, ALPN_H2));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let mut first = Some(first_tx);
    let mut view = ControlView::default();
    tokio::spawn(async move {
        let apply = move |update: api::WatchUpdate| {
            let Some(applied) = view.apply(update) else {
                return;
            };
            tracing::info!(
                version = view.version(),
                services = applied.snapshot.services.len(),
                "discovery state from the control plane"
            );
            ctx.discovery.replace(applied.snapshot);
            if let Some(r) = &trust_refresh {
                r.linked(view.linked_trust_domains());
            }
            if let Some(mut ports) = applied.policy {
                ports.retain(|p| ctx.cfg.inbound.ports.iter().all(|l| l.port != p.port));
                ports.extend(ctx.cfg.inbound.ports.iter().cloned());
                ctx.authz.store(Arc::new(Authorizer::new(&ports)));
            }
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
        };
        ferry_control::client::watch(channel, Vec::new(), apply, stop).await;
    });
    first_rx
}

/// What the control plane has told this edge so far.
#[derive(Debug, Default)]
pub struct ControlView {
    view: MeshView,
}

/// What an update changed for the edge.
pub struct Applied {
    pub snapshot: Snapshot,
    /// The new inbound policy, when the update carried one.
    pub policy: Option<Vec<PortPolicy>>,
}

impl ControlView {
    pub fn version(&self) -> u64 {
        self.view.version
    }

    /// The trust domains of the clusters linked to this one.
    pub fn linked_trust_domains(&self) -> &[String] {
        &self.view.linked_trust_domains
    }

    /// Takes one message; returns what changed once an update is complete
    /// (`None` while parts of it are still to come).
    pub fn apply(&mut self, part: api::WatchUpdate) -> Option<Applied> {
        let changes = self.view.apply(part)?;
        let mut snapshot = Snapshot::default();
        for s in self.view.services.values() {
            snapshot.insert(service(s));
        }
        Some(Applied {
            snapshot,
            policy: changes.policy.then(|| policy(self.view.policy.clone())),
        })
    }
}

fn service(s: &api::Service) -> Service {
    let protocol = match api::Protocol::try_from(s.protocol).unwrap_or(api::Protocol::Auto) {
        api::Protocol::Auto => Protocol::Auto,
        api::Protocol::Http => Protocol::Http,
        api::Protocol::Grpc => Protocol::Grpc,
        api::Protocol::Tcp => Protocol::Tcp,
    };
    let endpoints = s
        .endpoints
        .iter()
        .filter_map(|e| {
            let parsed = (|| {
                let via = match &e.via_gateway {
                    Some(g) => Some(Via {
                        addr: g.address.parse().ok()?,
                        id: SpiffeId::parse(&g.spiffe_id).ok()?,
                    }),
                    None => None,
                };
                Some(Endpoint {
                    address: e.address.parse::<SocketAddr>().ok()?,
                    tunnel: e.tunnel.parse::<SocketAddr>().ok()?,
                    id: SpiffeId::parse(&e.spiffe_id).ok()?,
                    via,
                    failover: e.failover,
                })
            })();
            if parsed.is_none() {
                tracing::warn!(service = %s.authority, endpoint = ?e, "ignoring an endpoint the control plane sent malformed");
            }
            parsed
        })
        .collect();
    Service {
        authority: s.authority.clone(),
        protocol,
        endpoints,
        addresses: s.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
        exported: s.exported,
    }
}

fn policy(p: api::InboundPolicy) -> Vec<PortPolicy> {
    p.ports
        .into_iter()
        .filter_map(|p| {
            Some(PortPolicy {
                port: u16::try_from(p.port).ok()?,
                allow_ids: p
                    .allow_ids
                    .iter()
                    .filter_map(|i| SpiffeId::parse(i).ok().map(SpiffeIdValue))
                    .collect(),
                allow_trust_domains: p
                    .allow_trust_domains
                    .iter()
                    .filter_map(|t| t.parse().ok().map(TrustDomainValue))
                    .collect(),
                allow_namespaces: p.allow_namespaces,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(authority: &str, port: u16) -> api::Service {
        api::Service {
            authority: authority.into(),
            protocol: api::Protocol::Http as i32,
            addresses: vec![format!("10.0.0.1:{port}")],
            endpoints: vec![api::Endpoint {
                address: format!("127.0.0.1:{port}"),
                tunnel: "127.0.0.1:4143".into(),
                spiffe_id: "spiffe://td/ns/default/sa/api".into(),
                cluster: String::new(),
                via_gateway: None,
                failover: false,
            }],
            exported: false,
        }
    }

    #[test]
    fn reset_then_changes_then_removal() {
        let mut v = ControlView::default();
        let a = v
            .apply(api::WatchUpdate {
                version: 1,
                reset: true,
                services: vec![svc("a.default:80", 80), svc("b.default:81", 81)],
                removed: vec![],
                policy: Some(api::InboundPolicy {
                    ports: vec![api::PortPolicy {
                        port: 8080,
                        allow_ids: vec!["spiffe://td/ns/x/sa/y".into()],
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.snapshot.services.len(), 2);
        assert_eq!(a.policy.unwrap()[0].allow_ids.len(), 1);
        let b = v
            .apply(api::WatchUpdate {
                version: 2,
                reset: false,
                services: vec![],
                removed: vec!["a.default:80".into()],
                policy: None,
                ..Default::default()
            })
            .unwrap();
        assert!(b.policy.is_none());
        assert!(b.snapshot.service("a.default:80").is_none());
        assert!(b.snapshot.service("b.default:81").is_some());
        let c = v
            .apply(api::WatchUpdate {
                version: 3,
                reset: true,
                services: vec![svc("c.default:82", 82)],
                removed: vec![],
                policy: Some(Default::default()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.snapshot.services.len(), 1, "a reset forgets the rest");
        assert!(c.policy.unwrap().is_empty());
    }

    #[test]
    fn an_update_in_parts_applies_once_complete() {
        let mut v = ControlView::default();
        v.apply(api::WatchUpdate {
            version: 1,
            reset: true,
            services: vec![svc("old.default:1", 1)],
            ..Default::default()
        })
        .unwrap();
        let first = v.apply(api::WatchUpdate {
            version: 2,
            reset: true,
            services: vec![svc("a.default:80", 80)],
            partial: true,
            ..Default::default()
        });
        assert!(first.is_none(), "nothing applied from a partial update");
        let done = v
            .apply(api::WatchUpdate {
                version: 2,
                reset: true,
                services: vec![svc("b.default:81", 81)],
                policy: Some(Default::default()),
                ..Default::default()
            })
            .unwrap();
        let names: Vec<&String> = done.snapshot.services.keys().collect();
        assert_eq!(done.snapshot.services.len(), 2, "{names:?}");
        assert!(done.snapshot.service("old.default:1").is_none());
        assert!(done.policy.is_some());
    }
}
