//! How many bidirectional streams an accepted QUIC connection allows its
//! peer: a small allowance at first, the full `max_concurrent_streams` as
//! soon as the peer uses half of it.
//!
//! quinn sets up state for every stream a connection allows (two hash-map
//! entries, about 85 bytes) when the allowance is granted, so the full 256
//! from the first packet cost every accepted connection about 20 KiB,
//! though most mesh connections never carry more than a few streams at
//! once. Sans-IO: the server's accept loop reports each stream it accepts
//! and applies what this returns with `set_max_concurrent_bi_streams`.
//!
//! As the peer sees it, a stream holds its slot from when it opens it
//! until the credit for it comes back: the peer's acknowledgement of the
//! end of the answer has to reach the server and the server's new
//! `MAX_STREAMS` the peer, about two round trips after the server's
//! handler is done with it. So the streams in use are estimated as the
//! handlers still running plus the streams that arrived within the last
//! two round trips (and the peer's acknowledgement delay): with short
//! handlers on a long path, the second term is most of them. The estimate
//! misses streams the server has not accepted yet (a busy server), which
//! is why the allowance goes straight to the ceiling at half in use rather
//! than step by step: a connection that is more than lightly used gets
//! all of it.

use std::time::{Duration, Instant};

/// The allowance a connection starts with (or `max`, if smaller).
pub const INITIAL: u32 = 32;

/// The allowance of one accepted connection.
#[derive(Debug, Clone)]
pub struct StreamAllowance {
    current: u32,
    max: u32,
    /// Arrivals counted per window of one round trip: the current window
    /// (when it started, how many so far) and the one before it.
    window_start: Option<Instant>,
    this_window: u32,
    last_window: u32,
}

impl StreamAllowance {
    /// A new connection's allowance, with `max` the configured ceiling.
    pub fn new(max: u32) -> Self {
        Self {
            current: Self::initial(max),
            max,
            window_start: None,
            this_window: 0,
            last_window: 0,
        }
    }

    /// What a connection allows before any stream arrives.
    pub fn initial(max: u32) -> u32 {
        INITIAL.min(max)
    }

    /// The allowance granted so far.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// Whether the allowance can still grow: once it is at the ceiling
    /// the server stops reporting streams (no clock or RTT read per
    /// stream on a busy connection).
    pub fn growing(&self) -> bool {
        self.current < self.max
    }

    /// A stream arrived at `now`, with `running` handlers (this one
    /// included) and `window` the time a finished stream keeps its slot
    /// (two round trips plus the peer's acknowledgement delay). Returns the
    /// allowance to grant, if it changes: the ceiling, once half of the
    /// initial allowance is estimated in use.
    pub fn on_stream(&mut self, now: Instant, window: Duration, running: usize) -> Option<u32> {
        let recent = self.count_arrival(now, window.max(Duration::from_micros(100)));
        let in_use = running.saturating_add(recent as usize);
        if !self.growing() || in_use.saturating_mul(2) < self.current as usize {
            return None;
        }
        self.current = self.max;
        Some(self.current)
    }

    /// Counts one arrival; returns the arrivals of the last full window or
    /// of the current one, whichever is larger.
    fn count_arrival(&mut self, now: Instant, window: Duration) -> u32 {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < window => {}
            Some(start) if now.saturating_duration_since(start) < window * 2 => {
                self.last_window = self.this_window;
                self.this_window = 0;
                self.window_start = Some(now);
            }
            _ => {
                // First arrival, or a quiet gap longer than a window.
                self.last_window = 0;
                self.this_window = 0;
                self.window_start = Some(now);
            }
        }
        self.this_window = self.this_window.saturating_add(1);
        self.this_window.max(self.last_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(20);
    /// What the server passes at 20 ms: two round trips and 2 ms.
    const WINDOW: Duration = Duration::from_millis(42);

    #[test]
    fn starts_small_or_at_the_ceiling() {
        assert_eq!(StreamAllowance::new(256).current(), 32);
        assert_eq!(StreamAllowance::new(3).current(), 3);
        assert_eq!(StreamAllowance::new(32).current(), 32);
    }

    #[test]
    fn long_running_handlers_open_it_fully_at_half() {
        // Streams arriving far apart (no two in one window): only the
        // running handlers and the one arrival count.
        let mut a = StreamAllowance::new(256);
        let t0 = Instant::now();
        let mut grown = Vec::new();
        for running in 1..=100usize {
            let now = t0 + WINDOW * 3 * running as u32;
            if let Some(n) = a.on_stream(now, WINDOW, running) {
                grown.push((running, n));
            }
        }
        // 15 running + 1 arrival = 16 of 32.
        assert_eq!(grown, vec![(15, 256)]);
    }

    #[test]
    fn a_few_streams_keep_the_initial_allowance() {
        let mut a = StreamAllowance::new(256);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            // Four streams per round trip, each handled at once.
            let now = t0 + RTT / 4 * i;
            assert_eq!(a.on_stream(now, WINDOW, 1), None);
        }
        assert_eq!(a.current(), 32);
    }

    #[test]
    fn quick_handlers_on_a_long_path_count_by_arrivals() {
        // 64 request streams in a closed loop at 20 ms: 64 arrivals per
        // round trip, while only one or two handlers run at a time. The
        // peer reopens each stream one round trip after opening it, but
        // gets its slot back about two round trips after: it needs about
        // 128.
        let mut a = StreamAllowance::new(256);
        let t0 = Instant::now();
        let mut grown_at = None;
        for i in 0..640u32 {
            if a.on_stream(t0 + RTT / 64 * i, WINDOW, 2).is_some() {
                grown_at.get_or_insert(i);
            }
        }
        assert_eq!(a.current(), 256);
        assert_eq!(grown_at, Some(13), "within the first round trip");
    }

    #[test]
    fn a_small_ceiling_is_granted_whole() {
        let mut a = StreamAllowance::new(40);
        assert_eq!(a.current(), 32);
        assert!(a.growing());
        assert_eq!(a.on_stream(Instant::now(), WINDOW, 16), Some(40));
        assert!(!a.growing());
        assert_eq!(a.on_stream(Instant::now(), WINDOW, 40), None);
    }

    #[test]
    fn never_shrinks() {
        let mut a = StreamAllowance::new(256);
        let t0 = Instant::now();
        a.on_stream(t0, WINDOW, 16);
        assert_eq!(a.on_stream(t0 + WINDOW * 10, WINDOW, 0), None);
        assert_eq!(a.current(), 256);
    }
}
