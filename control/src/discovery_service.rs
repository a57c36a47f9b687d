//! `Discovery.Watch`: the first message is the whole state the caller asked
//! for (`reset`), then one message per change with only the services that
//! changed or went away, and the caller's inbound policy whenever it
//! changed. The caller must present its SVID: its SPIFFE ID picks the
//! policy. A watcher that fell behind by more than one version diffs
//! against what it last sent, so it never misses a change.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use ferry_transport::identity::SpiffeId;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::api::discovery_server::Discovery;
use crate::api::{InboundPolicy, WatchRequest, WatchUpdate};
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

/// Which services a watcher wants.
#[derive(Debug, Clone)]
struct Filter(Option<BTreeSet<String>>);

impl Filter {
    fn wants(&self, authority: &str) -> bool {
        self.0.as_ref().is_none_or(|set| set.contains(authority))
    }
}

fn policy_of(state: &MeshState, id: &SpiffeId) -> InboundPolicy {
    state.mesh.policies.get(id).cloned().unwrap_or_default()
}

/// Services per message of a full state: a message (and the buffer the
/// stream keeps for it) stays small however large the mesh is.
pub const SERVICES_PER_PART: usize = 256;

/// The whole state as one update, in parts of [`SERVICES_PER_PART`].
fn full(state: &MeshState, filter: &Filter, id: &SpiffeId) -> Vec<WatchUpdate> {
    let services: Vec<_> = state
        .mesh
        .services
        .iter()
        .filter(|(k, _)| filter.wants(k))
        .map(|(_, s)| s.clone())
        .collect();
    let mut parts: Vec<WatchUpdate> = services
        .chunks(SERVICES_PER_PART)
        .map(|chunk| WatchUpdate {
            version: state.version,
            reset: true,
            services: chunk.to_vec(),
            partial: true,
            ..Default::default()
        })
        .collect();
    if parts.is_empty() {
        parts.push(WatchUpdate {
            version: state.version,
            reset: true,
            ..Default::default()
        });
    }
    let last = parts.last_mut().expect("at least one part");
    last.partial = false;
    last.policy = Some(policy_of(state, id));
    parts
}

/// The update from what the watcher has (`old`) to `new`, or `None` if
/// nothing it watches changed.
fn update(old: &MeshState, new: &MeshState, filter: &Filter, id: &SpiffeId) -> Option<WatchUpdate> {
    let computed;
    let delta = match &new.delta {
        Some(d) if d.from == old.version => d,
        _ => {
            computed = Delta::between(old.version, &old.mesh, &new.mesh);
            &computed
        }
    };
    let services: Vec<_> = delta
        .changed
        .iter()
        .filter(|a| filter.wants(a))
        .filter_map(|a| new.mesh.services.get(a).cloned())
        .collect();
    let removed: Vec<String> = delta
        .removed
        .iter()
        .filter(|a| filter.wants(a))
        .cloned()
        .collect();
    let policy = delta.policies.contains(id).then(|| policy_of(new, id));
    if services.is_empty() && removed.is_empty() && policy.is_none() {
        return None;
    }
    Some(WatchUpdate {
        version: new.version,
        reset: false,
        services,
        removed,
        policy,
        ..Default::default()
    })
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
        let filter =
            Filter((!req.authorities.is_empty()).then(|| req.authorities.into_iter().collect()));
        let mut rx = self.state.subscribe();
        let (tx, out) = mpsc::channel::<Result<WatchUpdate, Status>>(4);
        let metrics = self.metrics.clone();
        let stop = self.stop.clone();
        metrics.watchers.inc();
        let gauge = WatcherGauge(metrics.clone());
        tracing::info!(peer = %addr, %id, "watch started");
        tokio::spawn(async move {
            let _gauge = gauge;
            let mut sent: Arc<MeshState> = rx.borrow_and_update().clone();
            for part in full(&sent, &filter, &id) {
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
                if let Some(u) = update(&sent, &latest, &filter, &id) {
                    if tx.send(Ok(u)).await.is_err() {
                        return;
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
