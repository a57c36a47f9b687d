//! The edge's metrics (docs/metrics.md): requests and their latency (the
//! shared log-linear histogram), TCP connections and bytes, authorization
//! denials, protocol detection results, plus the transport's counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use ferry_transport::metrics::{new_latency_histogram, TransportMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub direction: &'static str,
    pub transport: &'static str,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub direction: &'static str,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpLabels {
    pub direction: &'static str,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByteLabels {
    pub direction: &'static str,
    pub transport: &'static str,
    /// `sent` (towards the peer) or `received`.
    pub flow: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenyLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectLabels {
    pub result: &'static str,
}

type LatencyFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// Every metric of one edge.
#[derive(Clone, Debug)]
pub struct EdgeMetrics {
    pub transport: TransportMetrics,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: LatencyFamily,
    pub tcp_connections: Family<TcpLabels, Counter>,
    pub tcp_bytes: Family<ByteLabels, Counter>,
    pub authz_denied: Family<DenyLabels, Counter>,
    pub detections: Family<DetectLabels, Counter>,
}

impl EdgeMetrics {
    pub fn new() -> Self {
        Self {
            transport: TransportMetrics::new(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(
                new_latency_histogram as fn() -> Histogram,
            ),
            tcp_connections: Family::default(),
            tcp_bytes: Family::default(),
            authz_denied: Family::default(),
            detections: Family::default(),
        }
    }

    pub fn register(&self, r: &mut Registry) {
        self.transport.register(r);
        r.register(
            "ferry_requests",
            "HTTP requests through the edge",
            self.requests.clone(),
        );
        r.register(
            "ferry_request_duration_seconds",
            "Time from request start to response headers",
            self.request_duration.clone(),
        );
        r.register(
            "ferry_tcp_connections",
            "Opaque TCP connections",
            self.tcp_connections.clone(),
        );
        r.register(
            "ferry_tcp_bytes",
            "Opaque TCP payload bytes",
            self.tcp_bytes.clone(),
        );
        r.register(
            "ferry_authz_denied",
            "Inbound requests and streams denied by policy",
            self.authz_denied.clone(),
        );
        r.register(
            "ferry_protocol_detections",
            "Outbound protocol detection results",
            self.detections.clone(),
        );
        for result in [
            "http1",
            "h2",
            "opaque",
            "connect",
            "timeout",
            "server_first",
            "hint",
        ] {
            let _ = self.detections.get_or_create(&DetectLabels { result });
        }
    }

    pub fn request(
        &self,
        direction: &'static str,
        transport: &'static str,
        status: u16,
        seconds: f64,
    ) {
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                direction,
                transport,
                status_class,
            })
            .inc();
        self.request_duration
            .get_or_create(&LatencyLabels {
                direction,
                transport,
            })
            .observe(seconds);
    }

    pub fn tcp(&self, direction: &'static str, transport: &'static str, sent: u64, received: u64) {
        self.tcp_connections
            .get_or_create(&TcpLabels {
                direction,
                transport,
            })
            .inc();
        self.tcp_bytes
            .get_or_create(&ByteLabels {
                direction,
                transport,
                flow: "sent",
            })
            .inc_by(sent);
        self.tcp_bytes
            .get_or_create(&ByteLabels {
                direction,
                transport,
                flow: "received",
            })
            .inc_by(received);
    }

    pub fn denied(&self, kind: &'static str) {
        self.authz_denied.get_or_create(&DenyLabels { kind }).inc();
    }

    pub fn detected(&self, result: &'static str) {
        self.detections
            .get_or_create(&DetectLabels { result })
            .inc();
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}
