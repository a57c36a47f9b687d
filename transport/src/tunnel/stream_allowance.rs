//! How many bidirectional streams an accepted QUIC connection allows its
//! peer: a small allowance at first, doubled while the peer uses most of
//! it, up to `max_concurrent_streams`.
//!
//! quinn sets up state for every stream a connection allows (two hash-map
//! entries, about 85 bytes) when the allowance is granted, so the full 256
//! from the first packet cost every accepted connection about 20 KiB,
//! though most mesh connections never carry more than a few streams at
//! once. Sans-IO: the server's accept loop reports the streams in flight
//! and applies what this returns with `set_max_concurrent_bi_streams`.

/// The allowance a connection starts with (or `max`, if smaller).
pub const INITIAL: u32 = 32;

/// The allowance of one accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAllowance {
    current: u32,
    max: u32,
}

impl StreamAllowance {
    /// A new connection's allowance, with `max` the configured ceiling.
    pub fn new(max: u32) -> Self {
        Self {
            current: Self::initial(max),
            max,
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

    /// With `in_flight` streams being served, the larger allowance to
    /// grant, if any: doubled once three quarters are in use, never above
    /// the ceiling. Growing before the peer is out of slots means a busy
    /// connection's next streams open without waiting a round trip for
    /// credit.
    pub fn grow(&mut self, in_flight: usize) -> Option<u32> {
        let used_most = in_flight.saturating_mul(4) >= (self.current as usize).saturating_mul(3);
        if self.current >= self.max || !used_most {
            return None;
        }
        self.current = self.current.saturating_mul(2).min(self.max);
        Some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_or_at_the_ceiling() {
        assert_eq!(StreamAllowance::new(256).current(), 32);
        assert_eq!(StreamAllowance::new(3).current(), 3);
        assert_eq!(StreamAllowance::new(32).current(), 32);
    }

    #[test]
    fn doubles_at_three_quarters_up_to_the_ceiling() {
        let mut a = StreamAllowance::new(256);
        assert_eq!(a.grow(0), None);
        assert_eq!(a.grow(23), None);
        assert_eq!(a.grow(24), Some(64));
        assert_eq!(a.grow(24), None, "24 of 64 is not most of it");
        assert_eq!(a.grow(48), Some(128));
        assert_eq!(a.grow(96), Some(256));
        assert_eq!(a.grow(256), None, "the ceiling");
        assert_eq!(a.current(), 256);
    }

    #[test]
    fn a_ceiling_between_steps_is_reached_exactly() {
        let mut a = StreamAllowance::new(100);
        assert_eq!(a.grow(24), Some(64));
        assert_eq!(a.grow(48), Some(100));
        assert_eq!(a.grow(100), None);
    }

    #[test]
    fn never_shrinks() {
        let mut a = StreamAllowance::new(256);
        a.grow(24);
        assert_eq!(a.grow(0), None);
        assert_eq!(a.current(), 64);
    }
}
