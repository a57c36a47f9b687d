//! The control plane's Prometheus metrics: mesh file reloads and version,
//! certificates issued and refused (by reason), connected watchers and
//! updates sent, and per linked cluster: its gateway up or down, the last
//! probe's latency, and the services imported.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Cheap to clone: every field is a shared handle.
#[derive(Clone, Debug, Default)]
pub struct ControlMetrics {
    pub mesh_version: Gauge,
    pub reloads: Family<ResultLabels, Counter>,
    pub certificates_issued: Counter,
    pub certify_refused: Family<ReasonLabels, Counter>,
    pub watchers: Gauge,
    pub updates_sent: Counter,
    pub link_up: Family<ClusterLabels, Gauge>,
    pub link_probe_seconds: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    pub link_imported_services: Family<ClusterLabels, Gauge>,
}

impl ControlMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ferry_control");
        r.register(
            "mesh_version",
            "Version of the served mesh state (one more per accepted change)",
            self.mesh_version.clone(),
        );
        r.register(
            "mesh_reloads",
            "Mesh file reloads by result (ok, rejected)",
            self.reloads.clone(),
        );
        r.register(
            "certificates_issued",
            "Workload certificates signed",
            self.certificates_issued.clone(),
        );
        r.register(
            "certify_refused",
            "Certify calls refused, by reason",
            self.certify_refused.clone(),
        );
        r.register(
            "watchers",
            "Discovery watch streams open",
            self.watchers.clone(),
        );
        r.register(
            "updates_sent",
            "Discovery updates sent to watchers",
            self.updates_sent.clone(),
        );
        r.register(
            "link_up",
            "1 while the linked cluster's gateway answers its health probe, else 0",
            self.link_up.clone(),
        );
        r.register(
            "link_probe_seconds",
            "Latency of the last successful gateway health probe, per linked cluster",
            self.link_probe_seconds.clone(),
        );
        r.register(
            "link_imported_services",
            "Services imported from the linked cluster and served (0 while withdrawn)",
            self.link_imported_services.clone(),
        );
    }

    /// The labels of one linked cluster's metrics.
    pub fn cluster(cluster: &str) -> ClusterLabels {
        ClusterLabels {
            cluster: cluster.to_string(),
        }
    }

    pub fn reloaded(&self, ok: bool, version: u64) {
        let result = if ok { "ok" } else { "rejected" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.mesh_version.set(version as i64);
    }

    pub fn refused(&self, reason: &'static str) {
        self.certify_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}
