//! `Discovery.Watch`: the first message is the whole state the caller asked
//! for (`reset`), then one message per change with only the services that
//! changed or went away, and the caller's inbound policy whenever it
//! changed, and the linked trust domains with every full state. The caller
//! must present its SVID: its SPIFFE ID picks the policy; a caller from a
//! linked trust domain (another cluster's control plane) sees only the
//! exported services, with their local endpoints, and no policy. A watcher that fell behind by more than one version diffs
//! against what it last sent, so it never misses a change.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use ferry_transport::identity::SpiffeId;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::api::discovery_server::Discovery;
use crate::api::{InboundPolicy, Service, WatchRequest, WatchUpdate};
use crate::metrics::ControlMetrics;
use crate::state::{Delta, MeshState, StateHandle};
use crate::tls_incoming::PeerInfo;

/// Most authorities one watch may name.
pub const MAX_AUTHORITIES: usize = 10_000;

pub struct DiscoveryService {
    pub state: StateHandle,
    pub metrics: ControlMetrics,
    /// Ends every watch stream (at shutdown, so clients reconnect to the
    /// next instance instead of holding on to this one).
    pub stop: tokio_util::sync::CancellationToken,
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<WatchUpdate, Status>> + Send>>;

/// Services per message of a full state: a message (and the buffer the
/// stream keeps for it) stays small however large the mesh is.
pub const SERVICES_PER_PART: usize = 64;

/// What one watcher sees: the services it asked for (all if none); a
/// linked cluster's control plane sees only exported services, their local
/// endpoints, and no policy.
#[derive(Debug, Clone)]
struct View {
    authorities: Option<BTreeSet<String>>,
    linked: bool,
    id: SpiffeId,
}

impl View {
    fn service(&self, state: &MeshState, authority: &str) -> Option<Service> {
        if !self
            .authorities
            .as_ref()
            .is_none_or(|set| set.contains(authority))
        {
            return None;
        }
        let service = state.services.get(authority)?;
        if !self.linked {
            return Some(service.clone());
        }
        service.exported.then(|| Service {
            endpoints: service
                .endpoints
                .iter()
                .filter(|e| e.cluster.is_empty() && !e.failover)
                .cloned()
                .collect(),
            ..service.clone()
        })
    }

    fn policy(&self, state: &MeshState) -> Option<InboundPolicy> {
        (!self.linked).then(|| {
            state
                .mesh
                .policies
                .get(&self.id)
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Whether the watcher sees `authority` (without cloning it).
    fn sees(&self, state: &MeshState, authority: &str) -> bool {
        self.authorities
            .as_ref()
            .is_none_or(|set| set.contains(authority))
            && state
                .services
                .get(authority)
                .is_some_and(|s| !self.linked || s.exported)
    }

    /// The whole state as one update, in parts of [`SERVICES_PER_PART`],
    /// each built only when it is taken: a watcher being synchronized holds
    /// the part in flight, not a copy of the whole state (a thousand edges
    /// connecting at once would otherwise each hold one). The last part
    /// carries the policy and the linked trust domains.
    fn full<'a>(&'a self, state: &'a MeshState) -> impl Iterator<Item = WatchUpdate> + Send + 'a {
        let authorities: Vec<&'a String> = state
            .services
            .keys()
            .filter(|a| self.sees(state, a))
            .collect();
        let count = authorities.len().div_ceil(SERVICES_PER_PART).max(1);
        (0..count).map(move |i| {
            let last = i + 1 == count;
            let from = (i * SERVICES_PER_PART).min(authorities.len());
            let to = ((i + 1) * SERVICES_PER_PART).min(authorities.len());
            WatchUpdate {
                version: state.version,
                reset: true,
                services: authorities[from..to]
                    .iter()
                    .filter_map(|a| self.service(state, a))
                    .collect(),
                partial: !last,
                policy: if last { self.policy(state) } else { None },
                linked_trust_domains: if last {
                    state.linked_trust_domains()
                } else {
                    Vec::new()
                },
                ..Default::default()
            }
        })
    }

    /// The messages that take the watcher from what it has (`old`) to
    /// `new`: none if nothing it sees changed, one delta, or — when the
    /// linked trust domains changed (an empty list would otherwise read as
    /// "unchanged") — the whole state again.
    fn update(&self, old: &MeshState, new: &MeshState) -> Vec<WatchUpdate> {
        let computed;
        let delta = match &new.delta {
            Some(d) if d.from == old.version => d,
            _ => {
                computed = Delta::between(old, new);
                &computed
            }
        };
        if delta.links {
            return self.full(new).collect();
        }
        let mut services = Vec::new();
        let mut removed = Vec::new();
        for a in delta.changed.iter().chain(&delta.removed) {
            let was = self.service(old, a);
            match self.service(new, a) {
                Some(now) if was.as_ref() != Some(&now) => services.push(now),
                Some(_) => {}
                None if was.is_some() => removed.push(a.clone()),
                None => {}
            }
        }
        let policy = if delta.policies.contains(&self.id) {
            self.policy(new)
        } else {
            None
        };
        if services.is_empty() && removed.is_empty() && policy.is_none() {
            return Vec::new();
        }
        vec![WatchUpdate {
            version: new.version,
            reset: false,
            services,
            removed,
            policy,
            ..Default::default()
        }]
    }
}

/// Counts an open watch stream for as long as it lives.
struct WatcherGauge(ControlMetrics);

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        self.0.watchers.dec();
    }
}

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    type WatchStream = UpdateStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let Some(PeerInfo { addr, id: Some(id) }) = request.extensions().get::<PeerInfo>().cloned()
        else {
            return Err(Status::unauthenticated(
                "Watch needs the caller's SVID as a TLS client certificate (call Certify first)",
            ));
        };
        let req = request.into_inner();
        if req.authorities.len() > MAX_AUTHORITIES {
            return Err(Status::invalid_argument(format!(
                "{} authorities asked for; at most {MAX_AUTHORITIES}",
                req.authorities.len()
            )));
        }
        let mut rx = self.state.subscribe();
        let linked = rx.borrow().is_linked(&id);
        let view = View {
            authorities: (!req.authorities.is_empty())
                .then(|| req.authorities.into_iter().collect()),
            linked,
            id: id.clone(),
        };
        let (tx, out) = mpsc::channel::<Result<WatchUpdate, Status>>(4);
        let metrics = self.metrics.clone();
        let stop = self.stop.clone();
        metrics.watchers.inc();
        let gauge = WatcherGauge(metrics.clone());
        tracing::info!(peer = %addr, %id, linked, "watch started");
        tokio::spawn(async move {
            let _gauge = gauge;
            let mut sent: Arc<MeshState> = rx.borrow_and_update().clone();
            for part in view.full(&sent) {
                if tx.send(Ok(part)).await.is_err() {
                    return;
                }
            }
            metrics.updates_sent.inc();
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = tx.closed() => {
                        tracing::info!(peer = %addr, %id, "watch ended");
                        return;
                    }
                    _ = stop.cancelled() => return,
                }
                let latest = rx.borrow_and_update().clone();
                let parts = view.update(&sent, &latest);
                if !parts.is_empty() {
                    for part in parts {
                        if tx.send(Ok(part)).await.is_err() {
                            return;
                        }
                    }
                    metrics.updates_sent.inc();
                }
                sent = latest;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}
