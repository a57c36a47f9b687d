//! Noticing that a QUIC connection's path got slower for good (a route
//! change, a pod moved to a farther node, a link now shared with a VPN).
//!
//! quinn's BBR keeps the connection's lifetime minimum RTT and sizes its
//! window from it. A connection that learned 1 ms and then runs over a 20 ms
//! path stays window-limited for the rest of its life: measured at 280–320
//! requests/s against 2,100–2,470 on a fresh connection over the same path
//! (docs/benchmarks.md, "Performance fixes", 2). A fresh connection learns
//! the new path, so the pool retires one whose smoothed RTT has stayed well
//! above the lowest it has seen for [`HOLD`]: new streams go to a new
//! connection, streams already on the old one finish there.
//!
//! The detector is sans-IO: [`RttRise::sample`] takes a time and the
//! smoothed RTT; `liveness::watch` feeds it.

use std::time::{Duration, Instant};

/// How long the RTT must stay risen before the connection is retired. Long
/// enough that a burst of queueing (a busy host, a large transfer filling a
/// buffer) does not trigger it, short next to the life of a pooled
/// connection.
pub const HOLD: Duration = Duration::from_secs(10);

/// The smoothed RTT counts as risen at this many times the minimum…
const FACTOR: u32 = 4;
/// …and at least this much above it (loopback and same-node paths have
/// minimums of tens of microseconds, where four times is still nothing).
const MARGIN: Duration = Duration::from_millis(5);

/// The threshold above which `rtt` counts as risen over `min`.
pub fn risen_threshold(min: Duration) -> Duration {
    (min * FACTOR).max(min + MARGIN)
}

/// The detector's state between samples.
#[derive(Debug, Default)]
pub(crate) struct RttRise {
    /// The lowest smoothed RTT seen.
    min: Option<Duration>,
    /// The first sample of the current risen spell.
    risen_since: Option<Instant>,
}

impl RttRise {
    /// Feeds one sample; the lowest RTT seen when the RTT has stayed risen
    /// above it for `hold`.
    pub(crate) fn sample(
        &mut self,
        now: Instant,
        rtt: Duration,
        hold: Duration,
    ) -> Option<Duration> {
        let min = rtt.min(self.min.unwrap_or(rtt));
        self.min = Some(min);
        if rtt < risen_threshold(min) {
            self.risen_since = None;
            return None;
        }
        let since = *self.risen_since.get_or_insert(now);
        (now.duration_since(since) >= hold).then_some(min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(10);

    /// Feeds (ms since start, RTT in µs) samples; the first time (ms) it
    /// said risen.
    fn run(samples: impl IntoIterator<Item = (u64, u64)>) -> Option<u64> {
        let t = Instant::now();
        let mut r = RttRise::default();
        samples.into_iter().find_map(|(ms, us)| {
            r.sample(
                t + Duration::from_millis(ms),
                Duration::from_micros(us),
                HOLD,
            )
            .map(|_| ms)
        })
    }

    #[test]
    fn a_steady_path_is_never_retired() {
        assert_eq!(run((0..1_000).map(|i| (50 * i, 1_000 + i % 300))), None);
    }

    #[test]
    fn a_path_that_rises_for_good_is_retired_after_the_hold() {
        // 1 ms for 5 s, then 20 ms.
        let s = (0..100)
            .map(|i| (50 * i, 1_000))
            .chain((100..400).map(|i| (50 * i, 20_000)));
        assert_eq!(run(s), Some(5_000 + 10_000));
    }

    #[test]
    fn a_burst_of_queueing_shorter_than_the_hold_is_not() {
        // 1 ms, 9 s at 30 ms, back to 1 ms, then another 9 s spell: the
        // clock restarts with each spell.
        let s = (0..100)
            .map(|i| (50 * i, 1_000))
            .chain((100..280).map(|i| (50 * i, 30_000)))
            .chain((280..300).map(|i| (50 * i, 1_000)))
            .chain((300..480).map(|i| (50 * i, 30_000)))
            .chain((480..600).map(|i| (50 * i, 1_000)));
        assert_eq!(run(s), None);
    }

    #[test]
    fn loopback_jitter_under_the_margin_is_not_a_rise() {
        // 50 µs minimum, spells of 2 ms (40×, but under 5 ms above it).
        let s = (0..10)
            .map(|i| (50 * i, 50))
            .chain((10..1_000).map(|i| (50 * i, 2_000)));
        assert_eq!(run(s), None);
    }

    #[test]
    fn a_slow_path_from_the_start_is_its_own_minimum() {
        // 40 ms from the first sample: nothing to compare against but itself.
        assert_eq!(
            run((0..1_000).map(|i| (50 * i, 40_000 + (i % 7) * 1_000))),
            None
        );
    }

    #[test]
    fn a_lower_minimum_later_moves_the_threshold() {
        let mut r = RttRise::default();
        let t = Instant::now();
        assert_eq!(r.sample(t, Duration::from_millis(10), HOLD), None);
        assert_eq!(r.sample(t, Duration::from_millis(2), HOLD), None);
        // 9 ms is risen over 2 ms (threshold 8 ms), though not over 10.
        assert_eq!(r.sample(t, Duration::from_millis(9), HOLD), None);
        assert_eq!(
            r.sample(t + HOLD, Duration::from_millis(9), HOLD),
            Some(Duration::from_millis(2))
        );
    }

    #[test]
    fn the_threshold_is_four_times_or_five_ms_above() {
        assert_eq!(
            risen_threshold(Duration::from_micros(100)),
            Duration::from_micros(5_100)
        );
        assert_eq!(
            risen_threshold(Duration::from_millis(10)),
            Duration::from_millis(40)
        );
    }
}
