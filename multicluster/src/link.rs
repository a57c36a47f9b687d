//! One link's tasks: a watch of the linked control plane (this control
//! plane's SVID as the client certificate; the remote must prove the
//! link's `control_id`, verified under the link's bundle, which this
//! control plane's identity trusts), and the probe of the linked gateway
//! every `probe_interval`. A broken watch keeps what was known; only the
//! probe withdraws (after 3 failures) and restores (at the first success).

use std::time::Duration;

use ferry_control::client::{channel, watch};
use ferry_control::mesh::Link;
use ferry_control::metrics::ControlMetrics;
use ferry_transport::tls::ALPN_H2;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::hub::Hub;
use crate::probe::{probe, Health};

/// Starts `link`'s watch and probe; both end with `stop`.
pub fn spawn(hub: Hub, link: Link, generation: u64, stop: CancellationToken) {
    let tls = hub.tls().clone();
    let control_id = link.control_id.clone();
    let channel = channel(link.control, move || tls.client(&control_id, ALPN_H2));
    let cluster = link.cluster.clone();
    let watcher = hub.clone();
    let watch_stop = stop.clone();
    let span = tracing::info_span!("link", cluster = %link.cluster);
    tokio::spawn(
        watch(
            channel,
            Vec::new(),
            move |update| watcher.apply(&cluster, generation, update),
            watch_stop,
        )
        .instrument(span),
    );
    tokio::spawn(probe_loop(hub, link, generation, stop));
}

async fn probe_loop(hub: Hub, link: Link, generation: u64, stop: CancellationToken) {
    let labels = ControlMetrics::cluster(&link.cluster);
    let metrics = hub.metrics().clone();
    let up = metrics.link_up.get_or_create(&labels).clone();
    let latency = metrics.link_probe_seconds.get_or_create(&labels).clone();
    let mut health = Health::default();
    let mut ticks = tokio::time::interval(link.probe_interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        let result = tokio::select! {
            r = probe(link.gateway_health) => r,
            _ = stop.cancelled() => return,
        };
        let ok = match result {
            Ok(took) => {
                latency.set(took.as_secs_f64());
                true
            }
            Err(e) => {
                tracing::debug!(cluster = %link.cluster, error = %e, "gateway probe failed");
                false
            }
        };
        if let Some(now_up) = health.record(ok) {
            if now_up {
                tracing::info!(cluster = %link.cluster, "linked gateway up: imports served");
            } else {
                tracing::warn!(cluster = %link.cluster, "linked gateway down: imports withdrawn");
            }
            up.set(i64::from(now_up));
            hub.set_up(&link.cluster, generation, now_up);
        }
    }
}
