//! Load balancing: power of two choices over peak-EWMA latency, weighted by
//! outstanding requests. Endpoints that fail consecutively are set aside
//! with exponential back-off and retried afterwards. State is kept per
//! endpoint across discovery updates.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use rand::Rng;

use crate::discovery::Endpoint;

/// EWMA decay time.
const DECAY: Duration = Duration::from_secs(10);
/// Cost of an endpoint with no observation yet (1 ms): new endpoints get traffic.
const INITIAL_COST_NS: f64 = 1_000_000.0;
/// Consecutive failures before an endpoint is set aside.
const FAILURES_TO_EJECT: u32 = 3;
const EJECT_BASE: Duration = Duration::from_millis(500);
const EJECT_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct State {
    ewma_ns: f64,
    stamp: Instant,
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    /// When the endpoint was last set aside: a failure of a request sent
    /// before then is the same outage, not one more failure.
    ejected_at: Option<Instant>,
}

/// Load statistics of one endpoint.
#[derive(Debug)]
pub struct EndpointStats {
    state: Mutex<State>,
    pending: std::sync::atomic::AtomicUsize,
}

impl EndpointStats {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                ewma_ns: INITIAL_COST_NS,
                stamp: Instant::now(),
                consecutive_failures: 0,
                ejections: 0,
                ejected_until: None,
                ejected_at: None,
            }),
            pending: Default::default(),
        }
    }

    fn cost(&self) -> f64 {
        let s = self.state.lock().expect("stats lock");
        let pending = self.pending.load(std::sync::atomic::Ordering::Relaxed) as f64;
        s.ewma_ns * (pending + 1.0)
    }

    fn available(&self, now: Instant) -> bool {
        let s = self.state.lock().expect("stats lock");
        s.ejected_until.is_none_or(|t| now >= t)
    }

    /// Records the outcome of a request sent at `sent`.
    fn observe(&self, sent: Instant, ok: bool) {
        let mut s = self.state.lock().expect("stats lock");
        let now = Instant::now();
        let rtt = now.saturating_duration_since(sent).as_nanos() as f64;
        if rtt > s.ewma_ns {
            // Peak: react to a slow endpoint at once.
            s.ewma_ns = rtt;
        } else {
            let elapsed = now.saturating_duration_since(s.stamp).as_secs_f64();
            let w = (-elapsed / DECAY.as_secs_f64()).exp();
            s.ewma_ns = s.ewma_ns * w + rtt * (1.0 - w);
        }
        s.stamp = now;
        if ok {
            s.consecutive_failures = 0;
            s.ejections = 0;
            s.ejected_until = None;
        } else if s.ejected_at.is_some_and(|at| sent < at) {
            // Requests already in flight when the endpoint was set aside
            // fail together (a restart): counting each would double the
            // back-off per request and keep a restarted endpoint out for
            // seconds.
        } else {
            s.consecutive_failures += 1;
            if s.consecutive_failures >= FAILURES_TO_EJECT {
                let backoff = EJECT_BASE
                    .saturating_mul(1 << s.ejections.min(16))
                    .min(EJECT_MAX);
                s.ejections += 1;
                s.consecutive_failures = 0;
                s.ejected_until = Some(now + backoff);
                s.ejected_at = Some(now);
                tracing::warn!(?backoff, "endpoint failing; set aside");
            }
        }
    }
}

/// A request in flight to an endpoint; report its outcome with [`Lease::done`].
#[derive(Debug)]
pub struct Lease {
    stats: Arc<EndpointStats>,
    start: Instant,
    reported: bool,
}

impl Lease {
    pub fn done(mut self, ok: bool) {
        self.reported = true;
        self.stats.observe(self.start, ok);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stats
            .pending
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Balancer state for every endpoint this edge has talked to.
#[derive(Debug, Default)]
pub struct Balancer {
    stats: DashMap<Endpoint, Arc<EndpointStats>>,
}

impl Balancer {
    fn stats(&self, e: &Endpoint) -> Arc<EndpointStats> {
        // Every pick looks up every endpoint of the service: a read lock and
        // no key copy once the endpoint is known.
        if let Some(s) = self.stats.get(e) {
            return s.clone();
        }
        self.stats
            .entry(e.clone())
            .or_insert_with(|| Arc::new(EndpointStats::new()))
            .clone()
    }

    /// Picks an endpoint: two random available candidates, the cheaper wins.
    /// If every endpoint is set aside, all are candidates again (better to
    /// try than to fail outright).
    pub fn pick(&self, endpoints: &[Endpoint]) -> Option<(Endpoint, Lease)> {
        if endpoints.is_empty() {
            return None;
        }
        let now = Instant::now();
        // Available primaries; else available failover endpoints (a remote
        // cluster backing this service); else every primary, set aside or
        // not (better a likely failure than none at all); else everything.
        let with_stats =
            |failover: bool, only_available: bool| -> Vec<(&Endpoint, Arc<EndpointStats>)> {
                endpoints
                    .iter()
                    .filter(|e| e.failover == failover)
                    .map(|e| (e, self.stats(e)))
                    .filter(|(_, s)| !only_available || s.available(now))
                    .collect()
            };
        let mut candidates = with_stats(false, true);
        if candidates.is_empty() {
            candidates = with_stats(true, true);
        }
        if candidates.is_empty() {
            candidates = with_stats(false, false);
        }
        if candidates.is_empty() {
            candidates = with_stats(true, false);
        }
        let (e, s) = if candidates.len() == 1 {
            candidates.swap_remove(0)
        } else {
            let mut rng = rand::rng();
            let a = rng.random_range(0..candidates.len());
            let mut b = rng.random_range(0..candidates.len() - 1);
            if b >= a {
                b += 1;
            }
            let pick = if candidates[a].1.cost() <= candidates[b].1.cost() {
                a
            } else {
                b
            };
            candidates.swap_remove(pick)
        };
        s.pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some((
            e.clone(),
            Lease {
                stats: s,
                start: Instant::now(),
                reported: false,
            },
        ))
    }

    /// Forgets endpoints no longer in any service.
    pub fn retain(&self, keep: impl Fn(&Endpoint) -> bool) {
        self.stats.retain(|e, _| keep(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The send time of a request that took `d`.
    fn ago(d: Duration) -> Instant {
        Instant::now().checked_sub(d).expect("the clock is past d")
    }

    #[test]
    fn failures_of_requests_sent_before_a_set_aside_do_not_extend_it() {
        let stats = EndpointStats::new();
        let sent = ago(Duration::from_millis(5));
        // A restart: twelve requests in flight fail together.
        for _ in 0..FAILURES_TO_EJECT * 4 {
            stats.observe(sent, false);
        }
        let until = stats.state.lock().unwrap().ejected_until.unwrap();
        assert!(
            until <= Instant::now() + EJECT_BASE,
            "set aside once, for the base back-off"
        );
        // Requests sent after it count again: the back-off doubles.
        for _ in 0..FAILURES_TO_EJECT {
            stats.observe(Instant::now(), false);
        }
        let until = stats.state.lock().unwrap().ejected_until.unwrap();
        assert!(
            until > Instant::now() + EJECT_BASE,
            "second set-aside doubles"
        );
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint::local(
            format!("127.0.0.1:{port}").parse().unwrap(),
            format!("127.0.0.1:{}", port + 1000).parse().unwrap(),
            ferry_transport::identity::SpiffeId::parse("spiffe://t/ns/a/sa/b").unwrap(),
        )
    }

    #[test]
    fn failover_endpoints_only_when_no_primary_is_available() {
        let b = Balancer::default();
        let mut remote = ep(9);
        remote.failover = true;
        let eps = vec![ep(1), remote.clone()];
        for _ in 0..50 {
            let (e, lease) = b.pick(&eps).unwrap();
            assert_eq!(e, eps[0], "the primary while it is available");
            lease.done(true);
        }
        // The primary fails until it is set aside: traffic fails over.
        for _ in 0..10 {
            let (e, lease) = b.pick(&eps).unwrap();
            lease.done(e != eps[0]);
        }
        let (e, _) = b.pick(&eps).unwrap();
        assert_eq!(
            e, remote,
            "the failover endpoint once the primary is set aside"
        );
        // No primary at all: the failover serves.
        assert_eq!(b.pick(&[remote.clone()]).unwrap().0, remote);
    }

    #[test]
    fn prefers_the_faster_endpoint() {
        let b = Balancer::default();
        let eps = vec![ep(1), ep(2)];
        b.stats(&eps[0])
            .observe(ago(Duration::from_millis(50)), true);
        b.stats(&eps[1])
            .observe(ago(Duration::from_micros(100)), true);
        let mut fast = 0;
        for _ in 0..100 {
            let (e, lease) = b.pick(&eps).unwrap();
            if e == eps[1] {
                fast += 1;
            }
            drop(lease);
        }
        assert_eq!(fast, 100, "with two endpoints P2C always compares both");
    }

    #[test]
    fn failing_endpoint_is_set_aside_then_retried() {
        let b = Balancer::default();
        let eps = vec![ep(1), ep(2)];
        for _ in 0..FAILURES_TO_EJECT {
            b.stats(&eps[0])
                .observe(ago(Duration::from_micros(10)), false);
        }
        for _ in 0..50 {
            let (e, _l) = b.pick(&eps).unwrap();
            assert_eq!(e, eps[1]);
        }
        std::thread::sleep(EJECT_BASE + Duration::from_millis(50));
        assert!(b.stats(&eps[0]).available(Instant::now()));
    }

    #[test]
    fn all_ejected_still_picks() {
        let b = Balancer::default();
        let eps = vec![ep(1)];
        for _ in 0..FAILURES_TO_EJECT {
            b.stats(&eps[0])
                .observe(ago(Duration::from_micros(10)), false);
        }
        assert!(b.pick(&eps).is_some());
        assert!(b.pick(&[]).is_none());
    }

    #[test]
    fn pending_requests_raise_cost() {
        let b = Balancer::default();
        let eps = vec![ep(1), ep(2)];
        let (first, _held) = b.pick(&eps).unwrap();
        let (second, _l) = b.pick(&eps).unwrap();
        assert_ne!(
            first, second,
            "an endpoint with a request in flight costs more"
        );
    }
}
