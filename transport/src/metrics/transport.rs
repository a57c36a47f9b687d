//! Transport-level metrics: handshakes, QUIC→HTTP/2 fallbacks, open
//! connections and streams, TLS rejections and the count of peers known to
//! have broken QUIC.
//!
//! [`TransportMetrics`] owns every family; it is cheap to clone (all state is
//! behind `Arc`s) and every clone records into the same series. Register it
//! once with [`TransportMetrics::register`]. Exposed series:
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `ferry_transport_handshakes_total` | counter | `transport`, `side`, `result` |
//! | `ferry_transport_fallbacks_total` | counter | `reason` |
//! | `ferry_transport_open_connections` | gauge | `transport`, `side` |
//! | `ferry_transport_streams_total` | counter | `transport`, `side` |
//! | `ferry_transport_open_streams` | gauge | `transport`, `side` |
//! | `ferry_tls_rejections_total` | counter | `side`, `reason` |
//! | `ferry_tls_resumptions_total` | counter | `result` |
//! | `ferry_quic_early_data_total` | counter | `result` |
//! | `ferry_quic_early_data_resends_total` | counter | — |
//! | `ferry_transport_quic_broken_peers` | gauge | — |
//! | `ferry_transport_quic_rtt_replaced_total` | counter | — |
//!
//! plus the QUIC path statistics of [`super::quic_paths`].
//!
//! Every `handshakes_total`, `tls_rejections_total`,
//! `tls_resumptions_total` and `quic_early_data_total` label combination
//! is created up front, so they are exposed at 0 before the first event.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::quic_paths::{PathGuard, QuicPaths};
use crate::identity::SpiffeId;
use crate::tls::RejectReason;
use crate::TransportKind;

/// Which end of a connection this proxy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// We dialled the connection.
    Client,
    /// We accepted the connection.
    Server,
}

impl Side {
    /// Every variant, in label order.
    pub const ALL: [Side; 2] = [Side::Client, Side::Server];

    /// The `side` label value: `"client"` or `"server"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// How a handshake (QUIC or TLS-over-TCP) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeResult {
    /// Completed; the connection is usable.
    Ok,
    /// Failed for a transport or protocol reason.
    Error,
    /// Did not complete in time.
    Timeout,
    /// The peer's certificate was refused (see `ferry_tls_rejections_total`).
    Rejected,
}

impl HandshakeResult {
    /// Every variant, in label order.
    pub const ALL: [HandshakeResult; 4] = [
        HandshakeResult::Ok,
        HandshakeResult::Error,
        HandshakeResult::Timeout,
        HandshakeResult::Rejected,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeResult::Ok => "ok",
            HandshakeResult::Error => "error",
            HandshakeResult::Timeout => "timeout",
            HandshakeResult::Rejected => "rejected",
        }
    }
}

/// What became of a session ticket a client offered (server side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResumptionResult {
    /// The session was resumed (no certificates exchanged).
    Resumed,
    /// Not in the cache: issued by another process or before a restart,
    /// already redeemed, or evicted.
    Unknown,
    /// Issued before this proxy's identity material (certificate or trust
    /// bundles) was last replaced.
    Stale,
    /// Older than the maximum session age.
    Expired,
}

impl ResumptionResult {
    /// Every variant, in label order.
    pub const ALL: [ResumptionResult; 4] = [
        ResumptionResult::Resumed,
        ResumptionResult::Unknown,
        ResumptionResult::Stale,
        ResumptionResult::Expired,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumptionResult::Resumed => "resumed",
            ResumptionResult::Unknown => "unknown",
            ResumptionResult::Stale => "stale",
            ResumptionResult::Expired => "expired",
        }
    }
}

impl EncodeLabelValue for ResumptionResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResumptionLabels {
    result: ResumptionResult,
}

/// What became of a QUIC connection dialed with 0-RTT data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EarlyDataResult {
    /// The peer processed the early data.
    Accepted,
    /// The handshake completed without it (the peer's ticket was unknown
    /// or stale): its streams were sent again on a new connection.
    Refused,
    /// The connection failed or timed out before completing its handshake.
    Failed,
}

impl EarlyDataResult {
    /// Every variant, in label order.
    pub const ALL: [EarlyDataResult; 3] = [
        EarlyDataResult::Accepted,
        EarlyDataResult::Refused,
        EarlyDataResult::Failed,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EarlyDataResult::Accepted => "accepted",
            EarlyDataResult::Refused => "refused",
            EarlyDataResult::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for EarlyDataResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EarlyDataLabels {
    result: EarlyDataResult,
}

/// Why a connection went over HTTP/2 instead of QUIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// QUIC had not connected when its head start ran out; TCP won the race.
    HeadStartExpired,
    /// The QUIC attempt failed outright.
    QuicFailed,
    /// QUIC to this peer is known to be broken; it was not tried.
    KnownBroken,
    /// A QUIC connection in use stopped getting answers (UDP dropped on
    /// the way); new streams go to a new connection.
    Unanswered,
}

impl FallbackReason {
    /// Every variant, in label order.
    pub const ALL: [FallbackReason; 4] = [
        FallbackReason::HeadStartExpired,
        FallbackReason::QuicFailed,
        FallbackReason::KnownBroken,
        FallbackReason::Unanswered,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::HeadStartExpired => "quic_head_start_expired",
            FallbackReason::QuicFailed => "quic_failed",
            FallbackReason::KnownBroken => "quic_known_broken",
            FallbackReason::Unanswered => "quic_unanswered",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for HandshakeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Side {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for HandshakeResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for FallbackReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// `transport` label value. A local wrapper so that the label encoding stays
/// in this module rather than on [`TransportKind`] itself.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Transport(TransportKind);

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        EncodeLabelValue::encode(&self.0.as_str(), encoder)
    }
}

/// `reason` label value for TLS rejections ([`RejectReason::as_str`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Reject(RejectReason);

impl EncodeLabelValue for Reject {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        EncodeLabelValue::encode(&self.0.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    transport: Transport,
    side: Side,
    result: HandshakeResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    reason: FallbackReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnLabels {
    transport: Transport,
    side: Side,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsRejectLabels {
    side: Side,
    reason: Reject,
}

/// All transport metrics. Clone freely: clones share state.
#[derive(Clone, Debug)]
pub struct TransportMetrics {
    handshakes: Family<HandshakeLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    open_connections: Family<ConnLabels, Gauge>,
    streams: Family<ConnLabels, Counter>,
    open_streams: Family<ConnLabels, Gauge>,
    tls_rejections: Family<TlsRejectLabels, Counter>,
    tls_resumptions: Family<ResumptionLabels, Counter>,
    quic_early_data: Family<EarlyDataLabels, Counter>,
    quic_early_resends: Counter,
    quic_broken_peers: Gauge,
    quic_rtt_replaced: Counter,
    quic_paths: QuicPaths,
    /// The `streams` and `open_streams` series of each transport and side,
    /// looked up once: a stream then costs no label lookup.
    stream_series: [StreamSeries; 4],
}

/// One transport and side's stream counter and gauge.
#[derive(Clone, Debug)]
struct StreamSeries {
    opened: Counter,
    open: Gauge,
}

/// Where a transport and side's series sit in `stream_series`.
fn stream_index(kind: TransportKind, side: Side) -> usize {
    let k = match kind {
        TransportKind::Quic => 0,
        TransportKind::H2 => 2,
    };
    let s = match side {
        Side::Client => 0,
        Side::Server => 1,
    };
    k + s
}

const ALL_KINDS: [TransportKind; 2] = [TransportKind::Quic, TransportKind::H2];

impl TransportMetrics {
    /// New, unregistered metrics, with every handshake, TLS-rejection and
    /// stream label combination created at 0.
    pub fn new() -> Self {
        let streams = Family::<ConnLabels, Counter>::default();
        let open_streams = Family::<ConnLabels, Gauge>::default();
        let series = |kind, side| {
            let labels = ConnLabels {
                transport: Transport(kind),
                side,
            };
            StreamSeries {
                opened: streams.get_or_create_owned(&labels),
                open: open_streams.get_or_create_owned(&labels),
            }
        };
        let stream_series = [
            series(TransportKind::Quic, Side::Client),
            series(TransportKind::Quic, Side::Server),
            series(TransportKind::H2, Side::Client),
            series(TransportKind::H2, Side::Server),
        ];
        let metrics = Self {
            handshakes: Family::default(),
            fallbacks: Family::default(),
            open_connections: Family::default(),
            streams,
            open_streams,
            tls_rejections: Family::default(),
            tls_resumptions: Family::default(),
            quic_early_data: Family::default(),
            quic_early_resends: Counter::default(),
            quic_broken_peers: Gauge::default(),
            quic_rtt_replaced: Counter::default(),
            quic_paths: QuicPaths::default(),
            stream_series,
        };
        // `get_or_create` creates the series at 0; the returned read guard is
        // dropped at once.
        for kind in ALL_KINDS {
            for side in Side::ALL {
                for result in HandshakeResult::ALL {
                    drop(metrics.handshakes.get_or_create(&HandshakeLabels {
                        transport: Transport(kind),
                        side,
                        result,
                    }));
                }
            }
        }
        for side in Side::ALL {
            for reason in RejectReason::ALL {
                drop(metrics.tls_rejections.get_or_create(&TlsRejectLabels {
                    side,
                    reason: Reject(reason),
                }));
            }
        }
        for result in ResumptionResult::ALL {
            drop(
                metrics
                    .tls_resumptions
                    .get_or_create(&ResumptionLabels { result }),
            );
        }
        for result in EarlyDataResult::ALL {
            drop(
                metrics
                    .quic_early_data
                    .get_or_create(&EarlyDataLabels { result }),
            );
        }
        metrics
    }

    /// Registers every metric with `registry`. Call once per registry:
    /// registering twice exposes every series twice.
    ///
    /// Counters are registered without `_total`; `prometheus_client` appends
    /// it in the exposition, so the exposed names are exactly those in the
    /// module docs.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ferry_transport_handshakes",
            "QUIC and TLS-over-TCP handshakes by transport, side and outcome",
            self.handshakes.clone(),
        );
        registry.register(
            "ferry_transport_fallbacks",
            "Connections that used HTTP/2 instead of QUIC, by reason",
            self.fallbacks.clone(),
        );
        registry.register(
            "ferry_transport_open_connections",
            "Currently open transport connections",
            self.open_connections.clone(),
        );
        registry.register(
            "ferry_transport_streams",
            "Streams opened on transport connections",
            self.streams.clone(),
        );
        registry.register(
            "ferry_transport_open_streams",
            "Currently open streams",
            self.open_streams.clone(),
        );
        registry.register(
            "ferry_tls_rejections",
            "Peer certificates refused, by side and reason",
            self.tls_rejections.clone(),
        );
        registry.register(
            "ferry_tls_resumptions",
            "Session tickets offered by connecting peers, by what became of them",
            self.tls_resumptions.clone(),
        );
        registry.register(
            "ferry_quic_early_data",
            "QUIC connections dialed with requests in 0-RTT data, by what the peer made of it",
            self.quic_early_data.clone(),
        );
        registry.register(
            "ferry_quic_early_data_resends",
            "Streams sent again on a new connection because the peer refused the 0-RTT data that carried them",
            self.quic_early_resends.clone(),
        );
        registry.register(
            "ferry_transport_quic_broken_peers",
            "Peers to which QUIC is currently considered broken",
            self.quic_broken_peers.clone(),
        );
        registry.register(
            "ferry_transport_quic_rtt_replaced",
            "Pooled QUIC connections given no new streams because their round-trip time rose for good (a new connection learns the path)",
            self.quic_rtt_replaced.clone(),
        );
        registry.register_collector(Box::new(self.quic_paths.clone()));
    }

    /// Counts one finished handshake.
    pub fn handshake(&self, kind: TransportKind, side: Side, result: HandshakeResult) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                transport: Transport(kind),
                side,
                result,
            })
            .inc();
    }

    /// Counts one QUIC connection retired because its RTT rose for good.
    pub fn quic_rtt_replaced(&self) {
        self.quic_rtt_replaced.inc();
    }

    /// Counts one connection that fell back to HTTP/2.
    pub fn fallback(&self, reason: FallbackReason) {
        self.fallbacks
            .get_or_create(&FallbackLabels { reason })
            .inc();
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection_opened(&self, kind: TransportKind, side: Side) -> ConnectionGuard {
        let gauge = self.open_connections.get_or_create_owned(&ConnLabels {
            transport: Transport(kind),
            side,
        });
        gauge.inc();
        ConnectionGuard { gauge, path: None }
    }

    /// [`Self::connection_opened`] for a QUIC connection with `peer`, whose
    /// path statistics are exposed while the guard lives and added to the
    /// closed connections' totals when it is dropped.
    pub fn quic_connection_opened(
        &self,
        conn: &quinn::Connection,
        side: Side,
        peer: &SpiffeId,
    ) -> ConnectionGuard {
        let mut guard = self.connection_opened(TransportKind::Quic, side);
        guard.path = Some(self.quic_paths.track(conn, side, peer));
        guard
    }

    /// The QUIC path statistics (for tests and diagnostics).
    pub fn quic_paths(&self) -> &QuicPaths {
        &self.quic_paths
    }

    /// Counts a stream (in `streams_total` and `open_streams`); it stays in
    /// `open_streams` until the returned guard is dropped.
    pub fn stream_opened(&self, kind: TransportKind, side: Side) -> StreamGuard {
        let series = &self.stream_series[stream_index(kind, side)];
        series.opened.inc();
        series.open.inc();
        StreamGuard {
            gauge: series.open.clone(),
        }
    }

    /// Counts one refused peer certificate.
    pub fn tls_rejected(&self, side: Side, reason: RejectReason) {
        self.tls_rejections
            .get_or_create(&TlsRejectLabels {
                side,
                reason: Reject(reason),
            })
            .inc();
    }

    /// Counts one session ticket a peer offered.
    pub fn resumption(&self, result: ResumptionResult) {
        self.tls_resumptions
            .get_or_create(&ResumptionLabels { result })
            .inc();
    }

    /// How many offered tickets ended with `result` (tests, diagnostics).
    pub fn resumption_count(&self, result: ResumptionResult) -> u64 {
        self.tls_resumptions
            .get_or_create(&ResumptionLabels { result })
            .get()
    }

    /// Counts one QUIC connection dialed with 0-RTT data, by outcome.
    pub fn early_data(&self, result: EarlyDataResult) {
        self.quic_early_data
            .get_or_create(&EarlyDataLabels { result })
            .inc();
    }

    /// How many 0-RTT dials ended with `result` (tests, diagnostics).
    pub fn early_data_count(&self, result: EarlyDataResult) -> u64 {
        self.quic_early_data
            .get_or_create(&EarlyDataLabels { result })
            .get()
    }

    /// Counts one stream sent again after its early data was refused.
    pub fn early_replay(&self) {
        self.quic_early_resends.inc();
    }

    /// Streams sent again after refused early data (tests, diagnostics).
    pub fn early_replay_count(&self) -> u64 {
        self.quic_early_resends.get()
    }

    /// Sets the number of peers to which QUIC is currently considered broken.
    pub fn set_quic_broken_peers(&self, peers: i64) {
        self.quic_broken_peers.set(peers);
    }
}

impl Default for TransportMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps one connection counted in `ferry_transport_open_connections`;
/// decrements it when dropped. Hold it for the connection's lifetime.
#[must_use = "the connection is counted as closed as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
    path: Option<PathGuard>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Keeps one stream counted in `ferry_transport_open_streams`; decrements it
/// when dropped. Hold it for the stream's lifetime.
#[must_use = "the stream is counted as closed as soon as the guard is dropped"]
#[derive(Debug)]
pub struct StreamGuard {
    gauge: Gauge,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode_text;

    fn registered() -> (TransportMetrics, Registry) {
        let metrics = TransportMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        (metrics, registry)
    }

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[track_caller]
    fn assert_line(text: &str, line: &str) {
        assert!(has_line(text, line), "missing line {line:?} in:\n{text}");
    }

    #[test]
    fn exposes_exact_names_and_types() {
        let (m, registry) = registered();
        // prometheus_client omits a family with no series entirely (no HELP
        // or TYPE either); only the pre-initialised ones and the plain gauge
        // are there before the first event.
        let text = encode_text(&registry);
        assert_line(&text, "# TYPE ferry_transport_handshakes counter");
        assert_line(&text, "# TYPE ferry_tls_rejections counter");
        assert_line(&text, "# TYPE ferry_transport_quic_broken_peers gauge");
        assert_line(&text, "ferry_transport_quic_broken_peers 0");
        assert_line(&text, "# TYPE ferry_transport_quic_rtt_replaced counter");
        assert_line(&text, "ferry_transport_quic_rtt_replaced_total 0");
        assert!(!text.contains("ferry_transport_fallbacks"), "{text}");
        assert!(!text.contains("ferry_transport_open_connections"), "{text}");

        m.fallback(FallbackReason::QuicFailed);
        m.quic_rtt_replaced();
        let _c = m.connection_opened(TransportKind::Quic, Side::Server);
        let _s = m.stream_opened(TransportKind::Quic, Side::Server);
        let text = encode_text(&registry);
        for (name, ty) in [
            ("ferry_transport_handshakes", "counter"),
            ("ferry_transport_fallbacks", "counter"),
            ("ferry_transport_open_connections", "gauge"),
            ("ferry_transport_streams", "counter"),
            ("ferry_transport_open_streams", "gauge"),
            ("ferry_tls_rejections", "counter"),
            ("ferry_transport_quic_broken_peers", "gauge"),
            ("ferry_transport_quic_rtt_replaced", "counter"),
        ] {
            assert_line(&text, &format!("# TYPE {name} {ty}"));
        }
        assert!(!text.contains("_total_total"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn handshakes_and_rejections_are_preinitialised() {
        let (_m, registry) = registered();
        let text = encode_text(&registry);
        let mut n = 0;
        for t in ["quic", "h2"] {
            for s in ["client", "server"] {
                for r in ["ok", "error", "timeout", "rejected"] {
                    assert_line(
                        &text,
                        &format!(
                            "ferry_transport_handshakes_total{{transport=\"{t}\",side=\"{s}\",result=\"{r}\"}} 0"
                        ),
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, 16);
        for s in ["client", "server"] {
            for r in RejectReason::ALL {
                assert_line(
                    &text,
                    &format!(
                        "ferry_tls_rejections_total{{side=\"{s}\",reason=\"{}\"}} 0",
                        r.as_str()
                    ),
                );
            }
        }
        let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("ferry_transport_handshakes_total{"), 16);
        assert_eq!(
            count("ferry_tls_rejections_total{"),
            2 * RejectReason::ALL.len()
        );
        // Not pre-initialised: only appear once used.
        assert_eq!(count("ferry_transport_fallbacks_total"), 0);
        assert_eq!(count("ferry_transport_open_connections{"), 0);
    }

    #[test]
    fn records_events() {
        let (m, registry) = registered();
        m.handshake(TransportKind::Quic, Side::Client, HandshakeResult::Ok);
        m.handshake(TransportKind::H2, Side::Server, HandshakeResult::Timeout);
        m.handshake(TransportKind::H2, Side::Server, HandshakeResult::Timeout);
        m.fallback(FallbackReason::HeadStartExpired);
        m.fallback(FallbackReason::KnownBroken);
        m.fallback(FallbackReason::KnownBroken);
        m.fallback(FallbackReason::QuicFailed);
        m.tls_rejected(Side::Server, RejectReason::UnknownTrustDomain);
        m.set_quic_broken_peers(3);

        let text = encode_text(&registry);
        assert_line(
            &text,
            "ferry_transport_handshakes_total{transport=\"quic\",side=\"client\",result=\"ok\"} 1",
        );
        assert_line(
            &text,
            "ferry_transport_handshakes_total{transport=\"h2\",side=\"server\",result=\"timeout\"} 2",
        );
        assert_line(
            &text,
            "ferry_transport_handshakes_total{transport=\"quic\",side=\"server\",result=\"ok\"} 0",
        );
        assert_line(
            &text,
            "ferry_transport_fallbacks_total{reason=\"quic_head_start_expired\"} 1",
        );
        assert_line(
            &text,
            "ferry_transport_fallbacks_total{reason=\"quic_known_broken\"} 2",
        );
        assert_line(
            &text,
            "ferry_transport_fallbacks_total{reason=\"quic_failed\"} 1",
        );
        assert_line(
            &text,
            "ferry_tls_rejections_total{side=\"server\",reason=\"unknown_trust_domain\"} 1",
        );
        assert_line(
            &text,
            "ferry_tls_rejections_total{side=\"client\",reason=\"unknown_trust_domain\"} 0",
        );
        assert_line(&text, "ferry_transport_quic_broken_peers 3");
    }

    #[test]
    fn guards_decrement_on_drop() {
        let (m, registry) = registered();
        let c1 = m.connection_opened(TransportKind::Quic, Side::Client);
        let c2 = m.connection_opened(TransportKind::Quic, Side::Client);
        let c3 = m.connection_opened(TransportKind::H2, Side::Server);
        let s1 = m.stream_opened(TransportKind::Quic, Side::Client);
        let s2 = m.stream_opened(TransportKind::Quic, Side::Client);

        let text = encode_text(&registry);
        let conn_q = "ferry_transport_open_connections{transport=\"quic\",side=\"client\"}";
        let conn_h = "ferry_transport_open_connections{transport=\"h2\",side=\"server\"}";
        let streams = "ferry_transport_streams_total{transport=\"quic\",side=\"client\"}";
        let open_s = "ferry_transport_open_streams{transport=\"quic\",side=\"client\"}";
        assert_line(&text, &format!("{conn_q} 2"));
        assert_line(&text, &format!("{conn_h} 1"));
        assert_line(&text, &format!("{streams} 2"));
        assert_line(&text, &format!("{open_s} 2"));

        drop(s1);
        drop(c1);
        let text = encode_text(&registry);
        assert_line(&text, &format!("{conn_q} 1"));
        assert_line(&text, &format!("{open_s} 1"));
        assert_line(&text, &format!("{streams} 2"));

        drop((c2, c3, s2));
        let text = encode_text(&registry);
        assert_line(&text, &format!("{conn_q} 0"));
        assert_line(&text, &format!("{conn_h} 0"));
        assert_line(&text, &format!("{open_s} 0"));
        assert_line(&text, &format!("{streams} 2"));
    }

    #[test]
    fn each_transport_and_side_counts_its_own_streams() {
        let (m, registry) = registered();
        let line = |kind: TransportKind, side: Side| {
            format!(
                "ferry_transport_streams_total{{transport=\"{}\",side=\"{}\"}}",
                kind.as_str(),
                side.as_str()
            )
        };
        let text = encode_text(&registry);
        for kind in ALL_KINDS {
            for side in Side::ALL {
                assert_line(&text, &format!("{} 0", line(kind, side)));
            }
        }
        // The nth combination opens n + 1 streams.
        let mut guards = Vec::new();
        let mut n = 0;
        for kind in ALL_KINDS {
            for side in Side::ALL {
                n += 1;
                for _ in 0..n {
                    guards.push(m.stream_opened(kind, side));
                }
            }
        }
        let text = encode_text(&registry);
        let mut n = 0;
        for kind in ALL_KINDS {
            for side in Side::ALL {
                n += 1;
                assert_line(&text, &format!("{} {n}", line(kind, side)));
                let open = format!(
                    "ferry_transport_open_streams{{transport=\"{}\",side=\"{}\"}} {n}",
                    kind.as_str(),
                    side.as_str()
                );
                assert_line(&text, &open);
            }
        }
    }

    #[test]
    fn clones_share_state_across_threads() {
        let (m, registry) = registered();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let _c = m.connection_opened(TransportKind::H2, Side::Client);
                        let _s = m.stream_opened(TransportKind::H2, Side::Client);
                        m.handshake(TransportKind::H2, Side::Client, HandshakeResult::Error);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = encode_text(&registry);
        assert_line(
            &text,
            "ferry_transport_handshakes_total{transport=\"h2\",side=\"client\",result=\"error\"} 800",
        );
        assert_line(
            &text,
            "ferry_transport_streams_total{transport=\"h2\",side=\"client\"} 800",
        );
        assert_line(
            &text,
            "ferry_transport_open_streams{transport=\"h2\",side=\"client\"} 0",
        );
        assert_line(
            &text,
            "ferry_transport_open_connections{transport=\"h2\",side=\"client\"} 0",
        );
    }
}
