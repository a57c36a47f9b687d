//! Tunnel tuning, with defaults chosen for a mesh (low RTT, high bandwidth,
//! many streams), not for the Internet.

use std::time::Duration;

/// The congestion controller used by QUIC connections.
///
/// BBR is the default: one tunnel connection carries every stream to a
/// peer, so a loss-based controller (Cubic, NewReno) cuts the rate of all
/// of them at each random loss. At 20 ms RTT with 1–3 % loss, 64 request
/// streams over one QUIC connection got 18–51 req/s with Cubic or NewReno
/// (a window of about ten packets) against 1,800–1,900 with BBR, which
/// paces to its bandwidth and RTT estimates instead (docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    Cubic,
    NewReno,
    #[default]
    Bbr,
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(Congestion::Cubic),
            "newreno" => Ok(Congestion::NewReno),
            "bbr" => Ok(Congestion::Bbr),
            other => Err(format!(
                "unknown congestion controller {other:?} (expected cubic, newreno or bbr)"
            )),
        }
    }
}

/// The values `max_concurrent_streams` may take: at least one stream, and
/// at most what costs a connection about 1 MiB of quinn's stream state.
pub const CONCURRENT_STREAMS_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;

/// The values `max_udp_payload` may take: QUIC's minimum datagram size up
/// to the largest UDP payload quinn accepts.
pub const UDP_PAYLOAD_RANGE: std::ops::RangeInclusive<u16> = 1200..=65_527;

/// Why `n` cannot be `max_concurrent_streams`, for a configuration error.
pub fn check_concurrent_streams(n: u32) -> Result<(), String> {
    within(n, CONCURRENT_STREAMS_RANGE, "streams per connection")
}

/// The values `pool_idle_timeout` may take: down to what the pool can
/// still look at twice (it looks every half timeout, at most every 50 ms),
/// and up to a day (past that it is no longer a pooled connection).
pub const POOL_IDLE_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 3600);

/// Why `t` cannot be `pool_idle_timeout`, for a configuration error.
pub fn check_pool_idle_timeout(t: Duration) -> Result<(), String> {
    if POOL_IDLE_RANGE.contains(&t) {
        return Ok(());
    }
    Err(format!("{t:?} is out of range: 100ms to 24h"))
}

/// Why `n` cannot be `max_udp_payload`, for a configuration error.
pub fn check_udp_payload(n: u16) -> Result<(), String> {
    within(
        n,
        UDP_PAYLOAD_RANGE,
        "bytes (QUIC's smallest datagram to the largest UDP payload)",
    )
}

fn within<T: PartialOrd + std::fmt::Display>(
    n: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<(), String> {
    if range.contains(&n) {
        return Ok(());
    }
    Err(format!(
        "{n} is out of range: {} to {} {unit}",
        range.start(),
        range.end()
    ))
}

/// Every knob of the tunnel layer. `Default` is what a mesh should run.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// How long QUIC runs alone before TLS/TCP is raced against it.
    pub head_start: Duration,
    /// Give up on a handshake (either transport) after this long.
    pub handshake_timeout: Duration,
    /// First back-off after QUIC to a peer was found broken; doubles.
    pub quic_broken_base: Duration,
    /// Back-off cap.
    pub quic_broken_max: Duration,
    /// A connection with no traffic for this long is closed by QUIC.
    pub idle_timeout: Duration,
    /// PING interval; below `idle_timeout` so live connections stay open.
    pub keep_alive: Duration,
    /// A QUIC connection whose packets have gone unanswered this long (or
    /// eight round trips, if longer) while QUIC probes gets no new streams
    /// (a firewall started dropping UDP): the next stream dials again.
    pub quic_unanswered: Duration,
    /// A QUIC connection whose smoothed RTT has stayed at four times (and
    /// at least 5 ms above) the lowest it saw for this long gets no new
    /// streams; the next stream dials a connection that learns the new path
    /// (quinn's BBR keeps the lifetime minimum RTT and would stay
    /// window-limited). Zero: never.
    pub quic_rtt_rise_hold: Duration,
    /// The pool closes connections without streams for this long.
    pub pool_idle_timeout: Duration,
    /// Concurrent streams per connection: what an accepting end allows its
    /// peer, and what the pool puts on one connection before it dials
    /// another to the same peer. quinn sets up state for every allowed
    /// stream when a connection starts (about 85 bytes each), so this is
    /// memory per connection.
    pub max_concurrent_streams: u32,
    /// Per-stream receive window, bytes.
    pub stream_window: u32,
    /// Per-connection receive window, bytes.
    pub connection_window: u32,
    /// UDP socket send and receive buffers, bytes.
    pub udp_buffer: usize,
    /// Largest UDP payload this end accepts, and the ceiling of the bound
    /// path-MTU discovery probes up to (QUIC): each connection's bound is
    /// the route's MTU less the headers, at most this
    /// ([`super::path_mtu`]).
    pub max_udp_payload: u16,
    pub congestion: Congestion,
    /// Longest a QUIC peer is asked to hold back an acknowledgement
    /// (ACK_FREQUENCY, draft-ietf-quic-ack-frequency). The sender's probe
    /// timeout adds this to its RTT estimate, so it is how much later a
    /// lost last packet is resent; quinn's own is 25 ms, two orders of
    /// magnitude above a mesh's RTT. A peer without the extension keeps
    /// its own.
    pub ack_delay: Duration,
    /// Largest request or response header block accepted, bytes.
    pub max_header_bytes: u32,
    /// Time allowed for a peer to send a stream's request headers.
    pub request_header_timeout: Duration,
    /// Accepted connections at once on a tunnel port (each transport).
    pub max_connections: usize,
    /// Pin every dial to one transport (`None`: QUIC first, TLS/TCP as
    /// fallback). For networks known to block UDP, and for benchmarks.
    pub force_transport: Option<crate::TransportKind>,
    /// Opaque TCP streams with no data in either direction for this long are closed.
    pub tcp_idle_timeout: Duration,
    /// Timeout of the server side's TCP connect to the target.
    pub target_connect_timeout: Duration,
    /// Terminate inner sessions (`CONNECT` with `ferry-inner: h2`: an
    /// end-to-end TLS session relayed by a gateway) on this port, serving
    /// their streams like any other. Edges do; gateways relay instead.
    pub inner_sessions: bool,
    /// A new QUIC connection to a peer that issued this proxy a session
    /// ticket carries the head of an idempotent request in 0-RTT data, a
    /// round trip before the handshake completes; the open returns once
    /// the peer accepted it (refused: opened again on a full dial). The
    /// accepting side always takes 0-RTT data (its tickets are single-use,
    /// so no third party can replay it).
    pub early_data: bool,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            head_start: Duration::from_millis(300),
            handshake_timeout: Duration::from_secs(10),
            quic_broken_base: Duration::from_secs(5 * 60),
            quic_broken_max: Duration::from_secs(48 * 3600),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            quic_unanswered: Duration::from_millis(750),
            quic_rtt_rise_hold: super::rtt_rise::HOLD,
            pool_idle_timeout: Duration::from_secs(90),
            max_concurrent_streams: 256,
            // 1 Gb/s x 10 ms = 1.25 MB in flight; leave headroom.
            stream_window: 4 << 20,
            connection_window: 16 << 20,
            udp_buffer: 4 << 20,
            max_udp_payload: super::path_mtu::DEFAULT_CEILING,
            congestion: Congestion::Bbr,
            ack_delay: Duration::from_millis(2),
            max_header_bytes: 64 << 10,
            request_header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            force_transport: None,
            tcp_idle_timeout: Duration::from_secs(3600),
            target_connect_timeout: Duration::from_secs(5),
            inner_sessions: true,
            early_data: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_their_own_checks() {
        let d = TunnelConfig::default();
        assert_eq!(check_concurrent_streams(d.max_concurrent_streams), Ok(()));
        assert_eq!(check_udp_payload(d.max_udp_payload), Ok(()));
        assert_eq!(check_pool_idle_timeout(d.pool_idle_timeout), Ok(()));
    }

    #[test]
    fn pool_idle_timeouts_outside_100ms_to_a_day_are_named() {
        assert_eq!(
            check_pool_idle_timeout(Duration::from_millis(50)),
            Err("50ms is out of range: 100ms to 24h".into())
        );
        assert!(check_pool_idle_timeout(Duration::from_secs(86401)).is_err());
        assert_eq!(check_pool_idle_timeout(Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn out_of_range_values_are_named() {
        assert!(check_concurrent_streams(0)
            .unwrap_err()
            .starts_with("0 is out of range: 1 to 10000"));
        assert!(check_concurrent_streams(10_001).is_err());
        assert!(check_udp_payload(1199)
            .unwrap_err()
            .starts_with("1199 is out of range: 1200 to 65527"));
        assert!(check_udp_payload(65_528).is_err());
        assert_eq!(check_udp_payload(65_507), Ok(()));
    }
}
