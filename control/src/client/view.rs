//! What a workload has been told by `Discovery.Watch`: the services it
//! watches, its inbound policy and the linked trust domains, kept current
//! by applying updates. An update arriving in parts (`partial`) is applied
//! only when complete, so a half-received state is never used.

use std::collections::BTreeMap;

use crate::api;

/// The watched state. Edges build their routing from it; gateways their
/// authorization.
#[derive(Debug, Default, Clone)]
pub struct MeshView {
    pub services: BTreeMap<String, api::Service>,
    pub version: u64,
    pub policy: api::InboundPolicy,
    pub linked_trust_domains: Vec<String>,
    pending: Option<api::WatchUpdate>,
}

/// What a complete update changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// The update carried a policy (it may be the same as before).
    pub policy: bool,
}

impl MeshView {
    /// Takes one message; `Some` once an update is complete.
    pub fn apply(&mut self, part: api::WatchUpdate) -> Option<Changes> {
        let update = match self.pending.take() {
            Some(mut pending) => {
                pending.services.extend(part.services);
                pending.removed.extend(part.removed);
                if part.policy.is_some() {
                    pending.policy = part.policy;
                }
                if !part.linked_trust_domains.is_empty() || !part.partial {
                    pending.linked_trust_domains = part.linked_trust_domains;
                }
                pending.partial = part.partial;
                pending
            }
            None => part,
        };
        if update.partial {
            self.pending = Some(update);
            return None;
        }
        if update.reset {
            self.services.clear();
        }
        for a in &update.removed {
            self.services.remove(a);
        }
        for s in update.services {
            self.services.insert(s.authority.clone(), s);
        }
        self.version = update.version;
        if update.reset || !update.linked_trust_domains.is_empty() {
            self.linked_trust_domains = update.linked_trust_domains;
        }
        let policy = update.policy.is_some();
        if let Some(p) = update.policy {
            self.policy = p;
        }
        Some(Changes { policy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(authority: &str) -> api::Service {
        api::Service {
            authority: authority.into(),
            ..Default::default()
        }
    }

    #[test]
    fn reset_changes_removal_and_parts() {
        let mut v = MeshView::default();
        let c = v
            .apply(api::WatchUpdate {
                version: 1,
                reset: true,
                services: vec![svc("a.x:1"), svc("b.x:2")],
                policy: Some(Default::default()),
                linked_trust_domains: vec!["west".into()],
                ..Default::default()
            })
            .unwrap();
        assert!(c.policy);
        assert_eq!(v.services.len(), 2);
        assert_eq!(v.linked_trust_domains, vec!["west"]);
        let c = v
            .apply(api::WatchUpdate {
                version: 2,
                removed: vec!["a.x:1".into()],
                ..Default::default()
            })
            .unwrap();
        assert!(!c.policy);
        assert_eq!(v.services.keys().collect::<Vec<_>>(), vec!["b.x:2"]);
        assert_eq!(v.linked_trust_domains, vec!["west"], "kept when not sent");
        // A new full state in two parts: nothing changes until the last.
        assert!(v
            .apply(api::WatchUpdate {
                version: 3,
                reset: true,
                services: vec![svc("c.x:3")],
                partial: true,
                ..Default::default()
            })
            .is_none());
        assert_eq!(v.version, 2);
        assert!(v.services.contains_key("b.x:2"));
        v.apply(api::WatchUpdate {
            version: 3,
            reset: true,
            services: vec![svc("d.x:4")],
            policy: Some(Default::default()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            v.services.keys().collect::<Vec<_>>(),
            vec!["c.x:3", "d.x:4"]
        );
        assert!(v.linked_trust_domains.is_empty(), "a reset replaces them");
    }
}
