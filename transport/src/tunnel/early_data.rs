//! QUIC 0-RTT on the dialing side: a new connection to a peer this proxy
//! holds a session ticket for carries the head of an idempotent request in
//! the client's first flight, one round trip before the handshake
//! completes (a request whose method is not idempotent waits for the
//! handshake: a connection that fails before completing it may have been
//! read by the peer, and the caller may send the request elsewhere).
//!
//! [`watch_handshake`] waits for such a connection's handshake and
//! publishes its outcome ([`Early`]): the peer accepted the early data,
//! refused it (the handshake completed and the data was discarded unread:
//! the ticket was unknown after a restart, stale after a rotation), the
//! connection failed first, or nothing answered within the head start.
//! `TunnelClient::open` hands a stream sent early to its caller only once
//! the peer accepted it, and otherwise opens it again on a full dial (the
//! request is idempotent, so even a peer that read it may get it again).
//! Replays by third parties are refused by the server: tickets are
//! stateful and redeemed once (`crate::tls::sessions`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::tracker::ConnState;
use crate::metrics::transport::{EarlyDataResult, TransportMetrics};

/// What became of a connection's early data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Early {
    /// The handshake has not completed.
    Pending,
    /// The server processed the early data: streams carry on.
    Accepted,
    /// The handshake completed and the server discarded the early data:
    /// streams opened before are opened again on a new connection.
    Refused,
    /// The connection failed before completing its handshake.
    Failed,
    /// No handshake within the head start (UDP dropped, or the peer gone):
    /// given up, as a full dial gives QUIC up to the TLS/TCP race.
    Unanswered,
}

/// Waits (at most `head_start`) for a 0-RTT connection's handshake and
/// publishes the outcome `judge` makes of it (`None`: no handshake in
/// time; else whether the server accepted the early data). `judge` also
/// checks the server's chain (a resumed session may carry one that has
/// expired since) and counts the handshake. Unless accepted, the
/// connection leaves the pool and is closed (after a refusal its HTTP/3
/// control stream is gone with the early data).
///
/// The wait is the head start a full dial gives QUIC before it races
/// TLS/TCP: a peer that answered QUIC when it issued the ticket and does
/// not answer now has lost UDP, or is gone, and its stream is opened
/// again on a full dial, with that race.
pub(crate) fn watch_handshake(
    conn: quinn::Connection,
    accepted: quinn::ZeroRttAccepted,
    head_start: Duration,
    state: Arc<ConnState>,
    metrics: TransportMetrics,
    judge: impl FnOnce(&quinn::Connection, Option<bool>) -> Early + Send + 'static,
) -> watch::Receiver<Early> {
    let (tx, rx) = watch::channel(Early::Pending);
    tokio::spawn(async move {
        let waited = tokio::time::timeout(head_start, accepted).await.ok();
        let outcome = judge(&conn, waited);
        metrics.early_data(match outcome {
            Early::Accepted => EarlyDataResult::Accepted,
            Early::Refused => EarlyDataResult::Refused,
            Early::Pending | Early::Failed | Early::Unanswered => EarlyDataResult::Failed,
        });
        if outcome != Early::Accepted {
            state.mark_closed();
        }
        let _ = tx.send(outcome);
        if outcome != Early::Accepted && conn.close_reason().is_none() {
            tracing::debug!(addr = %conn.remote_address(), ?outcome, "0-RTT connection given up; its streams are opened again on a full dial");
            conn.close(quinn::VarInt::from_u32(0x100), b"early data not taken");
        }
    });
    rx
}

/// Waits until `rx` leaves [`Early::Pending`].
pub(crate) async fn settled(rx: &mut watch::Receiver<Early>) -> Early {
    match rx.wait_for(|e| *e != Early::Pending).await {
        Ok(e) => *e,
        // The watcher is gone without an outcome (runtime shutting down).
        Err(_) => Early::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_watcher_settles_as_failed() {
        let (tx, mut rx) = watch::channel(Early::Pending);
        drop(tx);
        assert_eq!(settled(&mut rx).await, Early::Failed);
    }

    #[tokio::test]
    async fn settled_waits_for_the_outcome() {
        let (tx, mut rx) = watch::channel(Early::Pending);
        let waiter = tokio::spawn(async move { settled(&mut rx).await });
        tokio::task::yield_now().await;
        tx.send(Early::Refused).expect("receiver alive");
        assert_eq!(waiter.await.expect("task"), Early::Refused);
    }
}
