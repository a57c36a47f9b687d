//! Noticing a QUIC path that stopped answering — a firewall that starts
//! dropping UDP in the middle of a connection's life. QUIC itself only
//! gives up after its idle timeout (30 s), and until then the pool would
//! keep putting new streams on a connection nothing gets through.
//!
//! A watcher samples the connection's UDP counters (path-MTU probes, which
//! may vanish legitimately, left out). Datagrams sent count as answered once
//! a datagram arrives after the sample that saw them sent. The path is
//! declared dead when something has stayed unanswered for
//! [`unanswered_limit`] *and* QUIC has sent again in two later samples
//! meanwhile (its loss probes: QUIC itself is waiting for an
//! acknowledgement; one later send may be a delayed ACK), with not one
//! datagram received. The caller then stops
//! giving the connection new streams (streams already on it carry on, and
//! finish if the path comes back) and dials again.
//!
//! The same watcher feeds `rtt_rise`, which retires a connection whose
//! round-trip time rose for good, so that a new one learns the path.
//!
//! The watcher samples often ([`SAMPLE`]) only while the connection moves
//! datagrams or something it sent is still unanswered; a quiet connection
//! (idle, or a long-lived stream with nothing to say) is looked at once
//! every [`QUIET_SAMPLE`], and a new stream on it wakes the watcher at once.
//! An idle edge with many pooled peer connections does not wake 20 times a
//! second for each of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rtt_rise::RttRise;
use super::tracker::ConnState;

/// How often the counters are sampled while the connection is busy.
const SAMPLE: Duration = Duration::from_millis(50);

/// How often they are sampled while it is quiet (a keep-alive gone
/// unanswered on an idle connection is noticed within this much more).
const QUIET_SAMPLE: Duration = Duration::from_secs(1);

/// Unanswered this long means dead: `min`, or eight round trips on a slow
/// path (a peer acknowledges within one RTT plus its ACK delay, and QUIC
/// probes again within a few).
pub fn unanswered_limit(min: Duration, rtt: Duration) -> Duration {
    min.max(rtt * 8)
}

/// Datagrams sent, less path-MTU probes.
fn sent(s: &quinn::ConnectionStats) -> u64 {
    s.udp_tx
        .datagrams
        .saturating_sub(s.path.sent_plpmtud_probes)
}

/// Later sends needed, besides the first unanswered one.
const RESENDS: u32 = 2;

/// The watcher's state between samples.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    started: bool,
    /// Datagrams received, at the last sample.
    rx: u64,
    /// Ack-eliciting frames sent, at the last sample.
    sent: u64,
    /// Ack-eliciting frames taken as answered.
    answered: u64,
    /// The sample that first saw an unanswered send, and the latest one.
    first_unanswered: Option<Instant>,
    last_send: Option<Instant>,
    /// Samples with sends after `first_unanswered` (QUIC probing again).
    resends: u32,
    /// Whether the last sample saw a datagram sent or received.
    moved: bool,
}

impl Liveness {
    /// Feeds one sample (`rx` datagrams received, `sent` datagrams sent,
    /// both so far); true when the path is dead.
    pub(crate) fn sample(&mut self, now: Instant, rx: u64, sent: u64, limit: Duration) -> bool {
        if !self.started {
            *self = Liveness {
                started: true,
                rx,
                sent,
                answered: sent,
                // A second look soon: the connection is new.
                moved: true,
                ..Liveness::default()
            };
            return false;
        }
        self.moved = rx != self.rx || sent != self.sent;
        let before = std::mem::replace(&mut self.sent, sent);
        if rx != self.rx {
            self.rx = rx;
            // What went out by the previous sample is answered; what went
            // out since may have crossed this datagram on the wire.
            self.answered = before;
            self.first_unanswered = (sent > self.answered).then_some(now);
            self.last_send = self.first_unanswered;
            self.resends = 0;
            return false;
        }
        if sent <= self.answered {
            return false;
        }
        if sent > before {
            match self.last_send {
                // A send long after the previous one starts a new episode
                // (a keep-alive after an idle spell, a new request).
                Some(last)
                    if self.first_unanswered.is_some() && now.duration_since(last) <= limit =>
                {
                    self.resends += 1;
                }
                _ => {
                    self.first_unanswered = Some(now);
                    self.resends = 0;
                }
            }
            self.last_send = Some(now);
        }
        self.resends >= RESENDS
            && self
                .first_unanswered
                .is_some_and(|first| now.duration_since(first) >= limit)
    }

    /// Whether the next sample should come soon: the connection moved
    /// datagrams in the last interval, or something it sent has been
    /// unanswered for less than twice `limit` (the window in which
    /// [`Liveness::sample`] can find the path dead; an episode that outlived
    /// it without QUIC probing again was an ACK, which is never answered).
    pub(crate) fn busy(&self, now: Instant, limit: Duration) -> bool {
        !self.started
            || self.moved
            || self
                .first_unanswered
                .is_some_and(|first| now.duration_since(first) < limit * 2)
    }
}

/// Why a watched connection should get no new streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retire {
    /// Its path stopped answering.
    Unanswered,
    /// Its RTT rose for good (see `rtt_rise`): from `min` to `rtt`.
    RttRose { min: Duration, rtt: Duration },
}

/// Watches `conn` until it closes, its path is found dead, or its RTT has
/// stayed risen for `rtt_rise_hold` (zero: never), in which case `on_retire`
/// runs once. `streams` is the connection's pool state: a stream opened on
/// it wakes a watcher that was sampling slowly.
pub(crate) fn watch(
    conn: quinn::Connection,
    streams: Arc<ConnState>,
    min: Duration,
    rtt_rise_hold: Duration,
    on_retire: impl FnOnce(Retire) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut state = Liveness::default();
        let mut rise = RttRise::default();
        let closed = conn.closed();
        tokio::pin!(closed);
        let mut wait = SAMPLE;
        loop {
            tokio::select! {
                _ = &mut closed => return,
                _ = tokio::time::sleep(wait) => {}
                _ = streams.stream_opened(), if wait > SAMPLE => {
                    // Its first datagrams are not out yet: look soon.
                    wait = SAMPLE;
                    continue;
                }
            }
            let stats = conn.stats();
            let rtt = conn.rtt();
            let now = Instant::now();
            let limit = unanswered_limit(min, rtt);
            if state.sample(now, stats.udp_rx.datagrams, sent(&stats), limit) {
                on_retire(Retire::Unanswered);
                return;
            }
            if !rtt_rise_hold.is_zero() {
                if let Some(min) = rise.sample(now, rtt, rtt_rise_hold) {
                    on_retire(Retire::RttRose { min, rtt });
                    return;
                }
            }
            wait = match state.busy(now, limit) {
                true => SAMPLE,
                false => QUIET_SAMPLE,
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(1);

    /// Feeds (ms, rx, sent) samples; the first time (ms) it said dead.
    fn run(samples: &[(u64, u64, u64)]) -> Option<u64> {
        let t = Instant::now();
        let mut l = Liveness::default();
        samples
            .iter()
            .find(|&&(ms, rx, sent)| l.sample(t + Duration::from_millis(ms), rx, sent, LIMIT))
            .map(|s| s.0)
    }

    #[test]
    fn answered_traffic_is_alive() {
        let s: Vec<_> = (0..100).map(|i| (50 * i, i, 3 * i)).collect();
        assert_eq!(run(&s), None);
    }

    #[test]
    fn an_idle_connection_is_not_dead() {
        assert_eq!(run(&[(0, 5, 5), (60_000, 5, 5)]), None);
    }

    #[test]
    fn unanswered_sends_and_probes_are_dead_after_the_limit() {
        // Idle for a minute, then a request and QUIC's probes, no answer:
        // the clock starts at the request, not at the last receive.
        let s = [
            (0, 5, 5),
            (60_000, 5, 6),
            (60_050, 5, 7),
            (60_500, 5, 8),
            (60_950, 5, 8),
            (61_000, 5, 8),
            (61_050, 5, 8),
        ];
        assert_eq!(run(&s), Some(61_000));
    }

    #[test]
    fn one_send_without_probes_is_not_enough() {
        // A keep-alive whose ACK arrived in the same sampling interval looks
        // unanswered; QUIC does not probe again, so it is not dead.
        let s = [(0, 5, 5), (50, 6, 6), (2_000, 6, 6), (5_000, 6, 6)];
        assert_eq!(run(&s), None);
    }

    #[test]
    fn a_delayed_ack_after_a_receive_is_not_a_probe() {
        // A datagram arrives (the peer's keep-alive); our ACK leaves one
        // sample later; then silence on both sides.
        let s = [
            (0, 5, 5),
            (50, 6, 6),
            (100, 6, 7),
            (2_000, 6, 7),
            (5_000, 6, 7),
        ];
        assert_eq!(run(&s), None);
    }

    #[test]
    fn an_old_episode_does_not_count_against_a_new_send() {
        // As above, then a request ten seconds later that is answered.
        let s = [
            (0, 5, 5),
            (50, 6, 6),
            (10_000, 6, 7),
            (10_050, 6, 8),
            (10_100, 7, 8),
            (12_000, 7, 8),
        ];
        assert_eq!(run(&s), None);
    }

    #[test]
    fn a_datagram_that_crossed_the_request_does_not_answer_it() {
        // The request goes out and a late datagram of the peer arrives in
        // the same interval; then only QUIC's probes, unanswered.
        let s = [
            (0, 5, 5),
            (50, 6, 7),
            (100, 6, 8),
            (300, 6, 9),
            (1_000, 6, 9),
            (1_050, 6, 9),
        ];
        assert_eq!(run(&s), Some(1_050));
    }

    #[test]
    fn an_answer_resets_the_clock() {
        let s = [
            (0, 1, 1),
            (100, 1, 3),
            (200, 1, 4),
            (900, 2, 4),
            (1_500, 2, 4),
            (3_000, 2, 4),
        ];
        assert_eq!(run(&s), None);
    }

    /// Feeds (ms, rx, sent) samples; whether the watcher would sample again
    /// soon after each.
    fn busy_after(samples: &[(u64, u64, u64)]) -> Vec<bool> {
        let t = Instant::now();
        let mut l = Liveness::default();
        samples
            .iter()
            .map(|&(ms, rx, sent)| {
                let now = t + Duration::from_millis(ms);
                l.sample(now, rx, sent, LIMIT);
                l.busy(now, LIMIT)
            })
            .collect()
    }

    #[test]
    fn a_quiet_connection_is_sampled_slowly() {
        // Nothing moved between the first two samples.
        assert_eq!(busy_after(&[(0, 5, 5), (50, 5, 5)]), [true, false]);
    }

    #[test]
    fn traffic_is_sampled_often_until_it_stops() {
        // The last sends answered by the receive at 100 ms.
        let s = [(0, 5, 5), (50, 6, 7), (100, 8, 7), (150, 8, 7)];
        assert_eq!(busy_after(&s), [true, true, true, false]);
    }

    #[test]
    fn an_unanswered_send_is_sampled_often_until_it_cannot_be_dead() {
        // A keep-alive crosses the peer's on the wire (unanswered from 50
        // ms), our ACK to the peer's leaves after that sample; an ACK is
        // never answered, and QUIC does not send again: often for twice the
        // limit, then slowly.
        let s = [
            (0, 5, 5),
            (50, 6, 6),
            (100, 6, 7),
            (150, 6, 7),
            (2_050, 6, 7),
            (2_150, 6, 7),
        ];
        assert_eq!(busy_after(&s), [true, true, true, true, false, false]);
    }

    #[test]
    fn a_dead_path_is_found_while_sampled_often() {
        // A request and QUIC's probes, no answer: busy at every sample
        // until the path is found dead (at 1,050 ms, as above).
        let t = Instant::now();
        let mut l = Liveness::default();
        let s = [
            (0, 5, 5),
            (50, 6, 7),
            (100, 6, 8),
            (300, 6, 9),
            (350, 6, 9),
            (1_000, 6, 9),
            (1_050, 6, 9),
        ];
        for &(ms, rx, sent) in &s {
            let now = t + Duration::from_millis(ms);
            if l.sample(now, rx, sent, LIMIT) {
                assert_eq!(ms, 1_050);
                return;
            }
            assert!(l.busy(now, LIMIT), "slow sampling at {ms} ms");
        }
        panic!("never found dead");
    }

    #[test]
    fn slow_paths_get_more_time() {
        assert_eq!(unanswered_limit(LIMIT, Duration::from_millis(10)), LIMIT);
        assert_eq!(
            unanswered_limit(LIMIT, Duration::from_millis(300)),
            Duration::from_millis(2400)
        );
    }
}
