//! Metric primitives shared by every Ferry proxy.
//!
//! - [`histogram`]: the fixed latency bucket schema every latency histogram
//!   uses, so histograms from any number of proxies add up exactly.
//! - [`transport`]: [`TransportMetrics`], the transport-level counters and
//!   gauges (handshakes, fallbacks, connections, streams, TLS rejections).
//! - [`quic_paths`]: QUIC path statistics (RTT, MTU, datagrams, losses,
//!   congestion events) read from quinn at scrape time.
//!
//! Everything is built on `prometheus_client`; [`encode_text`] renders a
//! registry in the OpenMetrics text format.

pub mod histogram;
pub mod quic_paths;
pub mod transport;

use prometheus_client::registry::Registry;

pub use histogram::{bucket_index, latency_buckets, new_latency_histogram, MAX_RELATIVE_ERROR};
pub use transport::{
    ConnectionGuard, EarlyDataResult, FallbackReason, HandshakeResult, ResumptionResult, Side,
    StreamGuard, TransportMetrics,
};

/// Renders `registry` in the OpenMetrics text format, ending with `# EOF`.
///
/// Writing into a `String` cannot fail by itself; an error can only come from
/// a metric or collector whose encoding fails. In that case the error is
/// logged and the partial output, which lacks the `# EOF` terminator (so
/// scrapers reject it rather than ingest a truncated exposition), is
/// returned.
pub fn encode_text(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(%err, "encoding metrics failed; exposition is incomplete");
    }
    out
}
