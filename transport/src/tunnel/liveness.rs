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

use std::time::{Duration, Instant};

use super::rtt_rise::RttRise;

/// How often the counters are sampled.
const SAMPLE: Duration = Duration::from_millis(50);

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
                ..Liveness::default()
            };
            return false;
        }
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
/// runs once.
pub(crate) fn watch(
    conn: quinn::Connection,
    min: Duration,
    rtt_rise_hold: Duration,
    on_retire: impl FnOnce(Retire) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut state = Liveness::default();
        let mut rise = RttRise::default();
        let mut tick = tokio::time::interval(SAMPLE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if conn.close_reason().is_some() {
                return;
            }
            let stats = conn.stats();
            let rtt = conn.rtt();
            let now = Instant::now();
            if state.sample(
                now,
                stats.udp_rx.datagrams,
                sent(&stats),
                unanswered_limit(min, rtt),
            ) {
                on_retire(Retire::Unanswered);
                return;
            }
            if rtt_rise_hold.is_zero() {
                continue;
            }
            if let Some(min) = rise.sample(now, rtt, rtt_rise_hold) {
                on_retire(Retire::RttRose { min, rtt });
                return;
            }
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

    #[test]
    fn slow_paths_get_more_time() {
        assert_eq!(unanswered_limit(LIMIT, Duration::from_millis(10)), LIMIT);
        assert_eq!(
            unanswered_limit(LIMIT, Duration::from_millis(300)),
            Duration::from_millis(2400)
        );
    }
}
