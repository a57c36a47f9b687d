//! Memory of peers whose QUIC does not work ("QUIC broken"), with
//! exponential back-off: after a failure new connections to that peer go
//! straight to TLS/TCP until the back-off ends; then QUIC is probed again in
//! the background. Success forgets the failures.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    until: Instant,
    probing: bool,
}

/// What the memory says about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuicStatus {
    /// Use QUIC (with the TCP race after the head start).
    Usable,
    /// Use TLS/TCP; QUIC is still in back-off.
    Broken,
    /// Use TLS/TCP now, and the caller should probe QUIC in the background.
    ProbeDue,
}

#[derive(Debug)]
pub struct BrokenQuic {
    base: Duration,
    max: Duration,
    peers: DashMap<SocketAddr, Entry>,
}

impl BrokenQuic {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            peers: DashMap::new(),
        }
    }

    /// Checks a peer; when a probe is due, only one caller is told so.
    pub fn status(&self, addr: SocketAddr) -> QuicStatus {
        let Some(mut e) = self.peers.get_mut(&addr) else {
            return QuicStatus::Usable;
        };
        if e.probing || Instant::now() < e.until {
            return QuicStatus::Broken;
        }
        e.probing = true;
        QuicStatus::ProbeDue
    }

    /// Records a failure; returns the back-off now in force.
    pub fn mark_broken(&self, addr: SocketAddr) -> Duration {
        let mut e = self.peers.entry(addr).or_insert(Entry {
            failures: 0,
            until: Instant::now(),
            probing: false,
        });
        e.failures = e.failures.saturating_add(1);
        let backoff = self.backoff(e.failures);
        e.until = Instant::now() + backoff;
        e.probing = false;
        backoff
    }

    /// QUIC worked: forget the peer.
    pub fn mark_working(&self, addr: SocketAddr) {
        self.peers.remove(&addr);
    }

    /// The back-off after `failures` consecutive failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        self.base.saturating_mul(1u32 << exp.min(31)).min(self.max)
    }

    /// Whether the peer is remembered broken (without claiming a probe).
    pub fn status_peek(&self, addr: SocketAddr) -> bool {
        self.peers.contains_key(&addr)
    }

    /// Peers currently remembered as broken.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:4143".parse().unwrap()
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = BrokenQuic::new(Duration::from_secs(300), Duration::from_secs(48 * 3600));
        assert_eq!(b.backoff(1), Duration::from_secs(300));
        assert_eq!(b.backoff(2), Duration::from_secs(600));
        assert_eq!(b.backoff(3), Duration::from_secs(1200));
        assert_eq!(b.backoff(20), Duration::from_secs(48 * 3600));
        assert_eq!(b.backoff(u32::MAX), Duration::from_secs(48 * 3600));
    }

    #[test]
    fn one_probe_at_a_time_and_success_resets() {
        let b = BrokenQuic::new(Duration::from_millis(0), Duration::from_millis(0));
        assert_eq!(b.status(addr()), QuicStatus::Usable);
        b.mark_broken(addr());
        assert_eq!(b.status(addr()), QuicStatus::ProbeDue);
        assert_eq!(
            b.status(addr()),
            QuicStatus::Broken,
            "second caller must not probe too"
        );
        b.mark_working(addr());
        assert_eq!(b.status(addr()), QuicStatus::Usable);
    }

    #[test]
    fn broken_until_backoff_ends() {
        let b = BrokenQuic::new(Duration::from_secs(60), Duration::from_secs(600));
        b.mark_broken(addr());
        assert_eq!(b.status(addr()), QuicStatus::Broken);
    }
}
