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
//! the ticket was unknown after a restart, stale after a rotation), or the
//! connection failed first. `TunnelClient::open` hands a stream sent early
//! to its caller only once the peer accepted it, opens it again on a full
//! dial after a refusal, and fails the open after a failure. Replays by
//! third parties are refused by the server: tickets are stateful and
//! redeemed once (`crate::tls::sessions`).

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
    /// The connection failed before completing its handshake: opens of
    /// streams sent on it fail.
    Failed,
}

/// Waits (at most `timeout`) for a 0-RTT connection's handshake and
/// publishes the outcome `judge` makes of it (`None`: timed out, or the
/// peer is gone; else
/// whether the server accepted the early data). `judge` also checks the
/// server's chain (a resumed session may carry one that has expired since)
/// and counts the handshake. Unless accepted, the connection leaves the
/// pool; a refused one is then closed (its HTTP/3 control stream was
/// discarded with the early data).
///
/// A peer that has gone away must not hold its streams for the whole
/// handshake timeout (a full dial learns it from the TLS/TCP race): once
/// `head_start` passes without a completed handshake, a TCP connect to the
/// peer's port that is refused closes the connection (its streams fail,
/// and the edge retries what it may elsewhere).
pub(crate) fn watch_handshake(
    conn: quinn::Connection,
    accepted: quinn::ZeroRttAccepted,
    (timeout, head_start): (Duration, Duration),
    state: Arc<ConnState>,
    metrics: TransportMetrics,
    judge: impl FnOnce(&quinn::Connection, Option<bool>) -> Early + Send + 'static,
) -> watch::Receiver<Early> {
    let (tx, rx) = watch::channel(Early::Pending);
    tokio::spawn(async move {
        let addr = conn.remote_address();
        let waited = tokio::select! {
            r = tokio::time::timeout(timeout, accepted) => r.ok(),
            () = refuses_tcp_after(addr, head_start) => {
                tracing::debug!(%addr, "no QUIC handshake and the peer's TCP port refuses: peer down");
                conn.close(quinn::VarInt::from_u32(0x100), b"peer down");
                // Judged like a handshake that timed out: no answer.
                None
            }
        };
        let outcome = judge(&conn, waited);
        metrics.early_data(match outcome {
            Early::Accepted => EarlyDataResult::Accepted,
            Early::Refused => EarlyDataResult::Refused,
            Early::Pending | Early::Failed => EarlyDataResult::Failed,
        });
        if outcome != Early::Accepted {
            state.mark_closed();
        }
        let _ = tx.send(outcome);
        match outcome {
            Early::Refused => {
                tracing::debug!(addr = %conn.remote_address(), "peer refused early data; streams sent in it go again on a new connection");
                conn.close(quinn::VarInt::from_u32(0x100), b"early data refused");
            }
            Early::Failed if conn.close_reason().is_none() => {
                conn.close(quinn::VarInt::from_u32(0x100), b"handshake failed");
            }
            _ => {}
        }
    });
    rx
}

/// Returns once a TCP connect to `addr`, tried after `wait`, is refused;
/// never otherwise.
async fn refuses_tcp_after(addr: std::net::SocketAddr, wait: Duration) {
    tokio::time::sleep(wait).await;
    match tokio::net::TcpStream::connect(addr).await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        _ => std::future::pending().await,
    }
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
