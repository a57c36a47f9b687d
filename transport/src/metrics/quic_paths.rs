//! QUIC path statistics: what the network does to this proxy's QUIC
//! connections (round-trip time, path MTU, datagrams, packets lost,
//! congestion events), read from quinn at scrape time.
//!
//! Every QUIC connection is tracked from its handshake to its end by a
//! [`PathGuard`]. A scrape sums quinn's counters over the open connections
//! and adds what the closed ones had counted when they ended, so the
//! counters only go up and nothing is recorded per packet. Counters are
//! labelled by `side` only (peers come and go; a counter per peer would
//! either grow without bound or go backwards); the two gauges are per peer
//! identity, for as long as a connection to it is open.
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `ferry_transport_quic_datagrams_total` | counter | `side`, `direction` (`sent`/`received`) |
//! | `ferry_transport_quic_udp_bytes_total` | counter | `side`, `direction` |
//! | `ferry_transport_quic_packets_sent_total` | counter | `side` |
//! | `ferry_transport_quic_packets_lost_total` | counter | `side` |
//! | `ferry_transport_quic_congestion_events_total` | counter | `side` |
//! | `ferry_transport_quic_mtu_black_holes_total` | counter | `side` |
//! | `ferry_transport_quic_rtt_seconds` | gauge | `side`, `peer` |
//! | `ferry_transport_quic_path_mtu_bytes` | gauge | `side`, `peer` |

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::transport::Side;
use crate::identity::SpiffeId;

/// The counters kept per side, summed over connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PathCounters {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub udp_bytes_sent: u64,
    pub udp_bytes_received: u64,
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub congestion_events: u64,
    pub mtu_black_holes: u64,
}

impl PathCounters {
    fn of(s: &quinn::ConnectionStats) -> Self {
        Self {
            datagrams_sent: s.udp_tx.datagrams,
            datagrams_received: s.udp_rx.datagrams,
            udp_bytes_sent: s.udp_tx.bytes,
            udp_bytes_received: s.udp_rx.bytes,
            packets_sent: s.path.sent_packets,
            packets_lost: s.path.lost_packets,
            congestion_events: s.path.congestion_events,
            mtu_black_holes: s.path.black_holes_detected,
        }
    }

    fn add(&mut self, o: &Self) {
        self.datagrams_sent += o.datagrams_sent;
        self.datagrams_received += o.datagrams_received;
        self.udp_bytes_sent += o.udp_bytes_sent;
        self.udp_bytes_received += o.udp_bytes_received;
        self.packets_sent += o.packets_sent;
        self.packets_lost += o.packets_lost;
        self.congestion_events += o.congestion_events;
        self.mtu_black_holes += o.mtu_black_holes;
    }
}

/// One peer's path, over its open connections: the highest smoothed RTT
/// and the smallest path MTU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerPath {
    pub rtt_seconds: f64,
    pub mtu_bytes: u16,
}

/// One scrape's worth of figures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PathSnapshot {
    /// Indexed by [`side_index`].
    pub counters: [PathCounters; 2],
    pub peers: BTreeMap<(&'static str, String), PeerPath>,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

#[derive(Debug)]
struct Tracked {
    conn: quinn::Connection,
    side: Side,
    peer: SpiffeId,
}

#[derive(Debug, Default)]
struct State {
    next_key: u64,
    open: HashMap<u64, Tracked>,
    /// What connections that have ended had counted, per side.
    closed: [PathCounters; 2],
}

/// The registry of open QUIC connections. Cheap to clone: clones share it.
#[derive(Debug, Clone, Default)]
pub struct QuicPaths {
    state: Arc<Mutex<State>>,
}

impl QuicPaths {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind; they
        // stay usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tracks `conn` (to or from `peer`) until the guard is dropped.
    pub fn track(&self, conn: &quinn::Connection, side: Side, peer: &SpiffeId) -> PathGuard {
        let mut st = self.lock();
        let key = st.next_key;
        st.next_key += 1;
        st.open.insert(
            key,
            Tracked {
                conn: conn.clone(),
                side,
                peer: peer.clone(),
            },
        );
        PathGuard {
            paths: self.clone(),
            key,
        }
    }

    /// The figures as of now.
    pub fn snapshot(&self) -> PathSnapshot {
        let st = self.lock();
        let mut snap = PathSnapshot {
            counters: st.closed,
            peers: BTreeMap::new(),
        };
        for t in st.open.values() {
            let stats = t.conn.stats();
            snap.counters[side_index(t.side)].add(&PathCounters::of(&stats));
            let this = PeerPath {
                rtt_seconds: stats.path.rtt.as_secs_f64(),
                mtu_bytes: stats.path.current_mtu,
            };
            snap.peers
                .entry((t.side.as_str(), t.peer.to_string()))
                .and_modify(|p| {
                    p.rtt_seconds = p.rtt_seconds.max(this.rtt_seconds);
                    p.mtu_bytes = p.mtu_bytes.min(this.mtu_bytes);
                })
                .or_insert(this);
        }
        snap
    }

    fn untrack(&self, key: u64) {
        let mut st = self.lock();
        if let Some(t) = st.open.remove(&key) {
            let last = PathCounters::of(&t.conn.stats());
            st.closed[side_index(t.side)].add(&last);
        }
    }
}

/// Keeps one connection in [`QuicPaths`]; when dropped, its counters move
/// to the closed connections' totals.
#[must_use = "the connection stops being tracked as soon as the guard is dropped"]
#[derive(Debug)]
pub struct PathGuard {
    paths: QuicPaths,
    key: u64,
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        self.paths.untrack(self.key);
    }
}

type SideLabel = [(&'static str, &'static str); 1];
type DirLabels = [(&'static str, &'static str); 2];

fn encode_counter_by_side(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snap: &PathSnapshot,
    value: impl Fn(&PathCounters) -> u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(0u64);
    let mut family = enc.encode_descriptor(name, help, None, c.metric_type())?;
    for side in Side::ALL {
        let labels: SideLabel = [("side", side.as_str())];
        let v = ConstCounter::new(value(&snap.counters[side_index(side)]));
        v.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_counter_by_direction(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snap: &PathSnapshot,
    sent: impl Fn(&PathCounters) -> u64,
    received: impl Fn(&PathCounters) -> u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(0u64);
    let mut family = enc.encode_descriptor(name, help, None, c.metric_type())?;
    for side in Side::ALL {
        let counters = &snap.counters[side_index(side)];
        for (direction, v) in [("sent", sent(counters)), ("received", received(counters))] {
            let labels: DirLabels = [("side", side.as_str()), ("direction", direction)];
            ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn encode_peer_gauge<N: EncodeGaugeValue + Default + Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snap: &PathSnapshot,
    value: impl Fn(&PeerPath) -> N,
) -> std::fmt::Result {
    let g = ConstGauge::new(N::default());
    let mut family = enc.encode_descriptor(name, help, None, g.metric_type())?;
    for ((side, peer), p) in &snap.peers {
        let labels = [("side", *side), ("peer", peer.as_str())];
        ConstGauge::new(value(p)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for QuicPaths {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let snap = self.snapshot();
        encode_counter_by_direction(
            &mut enc,
            "ferry_transport_quic_datagrams",
            "UDP datagrams of QUIC connections, by side and direction",
            &snap,
            |c| c.datagrams_sent,
            |c| c.datagrams_received,
        )?;
        encode_counter_by_direction(
            &mut enc,
            "ferry_transport_quic_udp_bytes",
            "UDP payload bytes of QUIC connections (headers, framing and encryption included)",
            &snap,
            |c| c.udp_bytes_sent,
            |c| c.udp_bytes_received,
        )?;
        encode_counter_by_side(
            &mut enc,
            "ferry_transport_quic_packets_sent",
            "QUIC packets sent",
            &snap,
            |c| c.packets_sent,
        )?;
        encode_counter_by_side(
            &mut enc,
            "ferry_transport_quic_packets_lost",
            "QUIC packets declared lost (and their data sent again)",
            &snap,
            |c| c.packets_lost,
        )?;
        encode_counter_by_side(
            &mut enc,
            "ferry_transport_quic_congestion_events",
            "Times a QUIC connection's congestion controller cut its window",
            &snap,
            |c| c.congestion_events,
        )?;
        encode_counter_by_side(
            &mut enc,
            "ferry_transport_quic_mtu_black_holes",
            "Path-MTU black holes detected (large packets stopped getting through; the MTU went back to 1200)",
            &snap,
            |c| c.mtu_black_holes,
        )?;

        encode_peer_gauge(
            &mut enc,
            "ferry_transport_quic_rtt_seconds",
            "Smoothed round-trip time to each peer with an open QUIC connection (the highest of its connections)",
            &snap,
            |p| p.rtt_seconds,
        )?;
        encode_peer_gauge(
            &mut enc,
            "ferry_transport_quic_path_mtu_bytes",
            "Largest UDP payload the path to each peer with an open QUIC connection is known to carry (the smallest of its connections)",
            &snap,
            |p| i64::from(p.mtu_bytes),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_field_by_field() {
        let mut a = PathCounters {
            datagrams_sent: 1,
            datagrams_received: 2,
            udp_bytes_sent: 3,
            udp_bytes_received: 4,
            packets_sent: 5,
            packets_lost: 6,
            congestion_events: 7,
            mtu_black_holes: 8,
        };
        let b = a;
        a.add(&b);
        assert_eq!(
            a,
            PathCounters {
                datagrams_sent: 2,
                datagrams_received: 4,
                udp_bytes_sent: 6,
                udp_bytes_received: 8,
                packets_sent: 10,
                packets_lost: 12,
                congestion_events: 14,
                mtu_black_holes: 16,
            }
        );
    }

    #[test]
    fn nothing_tracked_exposes_zero_counters_and_no_peers() {
        let paths = QuicPaths::default();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(paths.clone()));
        let text = crate::metrics::encode_text(&registry);
        for series in [
            "ferry_transport_quic_datagrams_total{side=\"client\",direction=\"sent\"} 0",
            "ferry_transport_quic_datagrams_total{side=\"server\",direction=\"received\"} 0",
            "ferry_transport_quic_udp_bytes_total{side=\"server\",direction=\"sent\"} 0",
            "ferry_transport_quic_packets_sent_total{side=\"client\"} 0",
            "ferry_transport_quic_packets_lost_total{side=\"server\"} 0",
            "ferry_transport_quic_congestion_events_total{side=\"client\"} 0",
            "ferry_transport_quic_mtu_black_holes_total{side=\"client\"} 0",
            "# TYPE ferry_transport_quic_rtt_seconds gauge",
            "# TYPE ferry_transport_quic_path_mtu_bytes gauge",
        ] {
            assert!(text.contains(series), "missing {series:?} in:\n{text}");
        }
        assert!(!text.contains("peer="), "{text}");
        assert_eq!(paths.snapshot(), PathSnapshot::default());
    }
}
