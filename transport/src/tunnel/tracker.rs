//! Per-connection stream accounting: how many streams are open on a
//! connection (the pool opens a second connection only when the first is
//! full) and when it was last used (for idle eviction).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::transport::StreamGuard;

/// Shared state of one connection.
#[derive(Debug)]
pub struct ConnState {
    in_flight: AtomicUsize,
    total: AtomicU64,
    closed: AtomicBool,
    created: Instant,
    last_used_ms: AtomicU64,
    /// Signalled at each stream reserved (wakes the path watcher).
    opened: tokio::sync::Notify,
}

impl ConnState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            created: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            opened: tokio::sync::Notify::new(),
        })
    }

    /// Completes once a stream is reserved on this connection (at once if
    /// one was since the last call).
    pub(crate) async fn stream_opened(&self) {
        self.opened.notified().await
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn total_streams(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// How long since the last stream ended or started.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    /// Reserves a stream slot if fewer than `limit` are open.
    pub fn try_reserve(self: &Arc<Self>, limit: usize) -> Option<Reservation> {
        let mut cur = self.in_flight.load(Ordering::Acquire);
        loop {
            if cur >= limit {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.touch();
        self.opened.notify_one();
        Some(Reservation(Some(self.clone())))
    }
}

/// A reserved stream slot; released on drop.
#[derive(Debug)]
pub struct Reservation(Option<Arc<ConnState>>);

impl Reservation {
    /// A slot not tied to any connection state (server side).
    pub fn none() -> Self {
        Reservation(None)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            state.touch();
            state.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Held by both halves of a stream; the stream counts as open until both
/// halves are dropped.
pub struct StreamTicket {
    _slot: Reservation,
    _metric: StreamGuard,
    /// Whatever keeps the stream's connection open while the stream lives
    /// (a handle of a connection that has left the pool).
    _keep: Option<std::sync::Mutex<Box<dyn std::any::Any + Send>>>,
}

impl std::fmt::Debug for StreamTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTicket")
            .field("slot", &self._slot)
            .field("metric", &self._metric)
            .finish_non_exhaustive()
    }
}

impl StreamTicket {
    pub fn new(slot: Reservation, metric: StreamGuard) -> Arc<Self> {
        Self::keeping(slot, metric, None)
    }

    /// A ticket that also holds `keep` until both halves are dropped.
    pub fn keeping(
        slot: Reservation,
        metric: StreamGuard,
        keep: Option<Box<dyn std::any::Any + Send>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            _slot: slot,
            _metric: metric,
            _keep: keep.map(std::sync::Mutex::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reserved_stream_wakes_whoever_waits_for_one() {
        let state = ConnState::new();
        let waiter = tokio::spawn({
            let state = state.clone();
            async move { state.stream_opened().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "woke without a stream");
        let _slot = state.try_reserve(1).expect("a free slot");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the reservation")
            .expect("task");
    }

    #[tokio::test]
    async fn a_stream_reserved_before_the_wait_is_not_missed() {
        let state = ConnState::new();
        drop(state.try_reserve(1));
        tokio::time::timeout(Duration::from_secs(5), state.stream_opened())
            .await
            .expect("completes at once");
    }

    #[test]
    fn a_full_connection_reserves_nothing() {
        let state = ConnState::new();
        let first = state.try_reserve(1);
        assert!(first.is_some());
        assert!(state.try_reserve(1).is_none());
        drop(first);
        assert!(state.try_reserve(1).is_some());
    }
}
