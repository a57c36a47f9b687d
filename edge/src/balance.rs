//! Load balancing: power of two choices over peak-EWMA latency, weighted by
//! outstanding requests. An endpoint's estimate decays toward zero while it
//! gets no traffic, so one slow answer does not keep it out for good; an
//! endpoint with no answer yet takes one request at a time, so a new
//! endpoint is tried at once without being flooded while it warms up. Endpoints
//! that fail consecutively are set aside with exponential back-off and
//! retried afterwards. State is kept per endpoint across discovery updates.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use rand::Rng;

use crate::discovery::Endpoint;

/// EWMA decay time; also how fast an idle endpoint's estimate fades.
const DECAY: Duration = Duration::from_secs(10);
/// Consecutive failures before an endpoint is set aside.
const FAILURES_TO_EJECT: u32 = 3;
const EJECT_BASE: Duration = Duration::from_millis(500);
const EJECT_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct State {
    /// Peak-EWMA latency; `None` until the first answer.
    ewma_ns: Option<f64>,
    /// When `ewma_ns` was last updated.
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
                ewma_ns: None,
                stamp: Instant::now(),
                consecutive_failures: 0,
                ejections: 0,
                ejected_until: None,
                ejected_at: None,
            }),
            pending: Default::default(),
        }
    }

    fn outstanding(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Latency estimate × (outstanding + 1) at `now`, the estimate faded
    /// toward zero for the time since the last answer; `None` before the
    /// first answer.
    fn cost(&self, now: Instant) -> Option<f64> {
        let s = self.state.lock().expect("stats lock");
        let idle = now.saturating_duration_since(s.stamp).as_secs_f64();
        let faded = s.ewma_ns? * (-idle / DECAY.as_secs_f64()).exp();
        Some(faded * (self.outstanding() as f64 + 1.0))
    }

    fn available(&self, now: Instant) -> bool {
        let s = self.state.lock().expect("stats lock");
        s.ejected_until.is_none_or(|t| now >= t)
    }

    /// Records the outcome of a request sent at `sent`.
    fn observe(&self, sent: Instant, ok: bool) {
        self.observe_at(sent, Instant::now(), ok);
    }

    fn observe_at(&self, sent: Instant, now: Instant, ok: bool) {
        let mut s = self.state.lock().expect("stats lock");
        let rtt = now.saturating_duration_since(sent).as_nanos() as f64;
        s.ewma_ns = Some(match s.ewma_ns {
            // Peak: react to a slow endpoint at once.
            Some(ewma) if rtt <= ewma => {
                let elapsed = now.saturating_duration_since(s.stamp).as_secs_f64();
                let w = (-elapsed / DECAY.as_secs_f64()).exp();
                ewma * w + rtt * (1.0 - w)
            }
            _ => rtt,
        });
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

/// Whether `x` should win over `y`. Two answered endpoints compare their
/// costs. An endpoint without an answer yet takes one request at a time
/// (a probe: it gets traffic at once, but one still warming up is not
/// handed a share of the load before it has answered); between two such,
/// fewer outstanding requests win.
fn cheaper(x: &EndpointStats, y: &EndpointStats, now: Instant) -> bool {
    match (x.cost(now), y.cost(now)) {
        (Some(cx), Some(cy)) => cx < cy,
        (None, Some(_)) => x.outstanding() == 0,
        (Some(_), None) => y.outstanding() > 0,
        (None, None) => x.outstanding() < y.outstanding(),
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
    /// Times the request from `at` instead of from the pick: the caller
    /// passes when its stream was opened on a ready connection, so setting
    /// up a new connection (a handshake, several round trips) is not taken
    /// for the endpoint's latency.
    pub fn since(&mut self, at: Instant) {
        self.start = at;
    }

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
        self.pick_at(endpoints, Instant::now())
    }

    fn pick_at(&self, endpoints: &[Endpoint], now: Instant) -> Option<(Endpoint, Lease)> {
        if endpoints.is_empty() {
            return None;
        }
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
            let pick = if cheaper(&candidates[b].1, &candidates[a].1, now) {
                b
            } else {
                a
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
    fn a_new_endpoint_gets_traffic_beside_a_fast_one_without_being_flooded() {
        let b = Balancer::default();
        let eps = vec![ep(1), ep(2)];
        // eps[0] answers in 100 µs, far below any fixed guess for eps[1].
        b.stats(&eps[0])
            .observe(ago(Duration::from_micros(100)), true);
        let (first, held) = b.pick(&eps).unwrap();
        assert_eq!(first, eps[1], "the new endpoint is tried at once");
        // While its first request is out (a slow start), everything else
        // goes to the endpoint that answers, however busy.
        let busy: Vec<_> = (0..10).map(|_| b.pick(&eps).unwrap()).collect();
        assert!(busy.iter().all(|(e, _)| *e == eps[0]), "{busy:?}");
        // Once it has answered, it is compared on its latency like any other.
        held.done(true);
        assert!(b.stats(&eps[1]).cost(Instant::now()).is_some());
        drop(busy);
    }

    #[test]
    fn connection_setup_is_not_taken_for_latency() {
        let b = Balancer::default();
        let eps = vec![ep(1)];
        let (_, mut lease) = b.pick(&eps).unwrap();
        // Picked 50 ms ago (a handshake), the stream opened 100 µs ago.
        lease.start = ago(Duration::from_millis(50));
        lease.since(ago(Duration::from_micros(100)));
        lease.done(true);
        let ewma = b.stats(&eps[0]).state.lock().unwrap().ewma_ns.unwrap();
        assert!(ewma < 10_000_000.0, "{ewma} ns");
    }

    #[test]
    fn one_slow_answer_fades_and_the_endpoint_is_tried_again() {
        let b = Balancer::default();
        let eps = vec![ep(1), ep(2)];
        let t0 = Instant::now();
        // eps[0] once took 50 ms (a cold start); eps[1] answers in 100 µs
        // and keeps getting the traffic, so its estimate stays fresh.
        b.stats(&eps[0])
            .observe_at(t0 - Duration::from_millis(50), t0, true);
        let answered = |at: Instant| {
            b.stats(&eps[1])
                .observe_at(at - Duration::from_micros(100), at, true)
        };
        answered(t0);
        assert_eq!(b.pick_at(&eps, t0).unwrap().0, eps[1]);
        // A minute and a half later eps[0]'s 50 ms have faded below eps[1]'s
        // current 100 µs: it gets a request again.
        let later = t0 + Duration::from_secs(90);
        answered(later);
        assert_eq!(b.pick_at(&eps, later).unwrap().0, eps[0]);
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
