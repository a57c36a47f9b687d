//! The gateway's Prometheus metrics: relays by result, relays open,
//! relayed bytes, refusals by reason, and the transport's own counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct GatewayMetrics {
    pub relays: Counter,
    pub open_relays: Gauge,
    pub refused: Family<ReasonLabels, Counter>,
    pub bytes: Family<DirectionLabels, Counter>,
}

/// Why a stream was not relayed.
pub const REASONS: [&str; 5] = [
    "not_inner",
    "malformed",
    "not_linked",
    "not_exported",
    "limit",
];

impl GatewayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ferry_gateway");
        r.register(
            "relays",
            "Inner sessions relayed (counted when they end)",
            self.relays.clone(),
        );
        r.register(
            "open_relays",
            "Inner sessions being relayed",
            self.open_relays.clone(),
        );
        r.register(
            "refused",
            "Streams refused, by reason",
            self.refused.clone(),
        );
        r.register(
            "bytes",
            "Relayed bytes (ciphertext), by direction",
            self.bytes.clone(),
        );
        for reason in REASONS.into_iter().chain(["upstream_failed"]) {
            let _ = self.refused.get_or_create(&ReasonLabels { reason });
        }
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }
}
