//! QUIC 0-RTT on the dialing side: a new connection to a peer this proxy
//! holds a session ticket for carries its first requests in the client's
//! first flight, one round trip before the handshake completes.
//!
//! This module owns what happens after such a dial:
//! - [`watch_handshake`] waits for the handshake and publishes its outcome
//!   ([`Early`]): the server accepted the early data, refused it (the
//!   handshake completed, the data was discarded unread: the ticket was
//!   unknown after a restart, stale after a rotation), or the connection
//!   failed first;
//! - [`EarlyStream`] is what a stream opened before that outcome shares
//!   between its two halves: a copy of what it sent, bounded by
//!   [`REPLAY_BUFFER`], so that if the server refused the early data the
//!   request is opened again on another connection (dialed without 0-RTT)
//!   and sent again, headers, body and end, without the caller noticing.
//!
//! A stream is sent again only after a refusal, which the server
//! guarantees it never processed. After a failure (no completed handshake)
//! the server may have processed it: the stream fails like any stream of a
//! lost connection. Replays by third parties are refused by the server:
//! tickets are stateful and redeemed once (`crate::tls::sessions`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::watch;

use super::body::SendBody;
use super::connection::{OpenedStream, ResponseFuture};
use super::error::{StreamError, TunnelError};
use super::tracker::ConnState;
use crate::metrics::transport::{EarlyDataResult, TransportMetrics};

/// Bytes of a stream's body kept for a possible resend while the handshake
/// is pending; a stream that sends more waits for the handshake first.
pub const REPLAY_BUFFER: usize = 64 << 10;

/// What became of a connection's early data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Early {
    /// The handshake has not completed.
    Pending,
    /// The server processed the early data: streams carry on.
    Accepted,
    /// The handshake completed and the server discarded the early data:
    /// streams opened before are sent again elsewhere.
    Refused,
    /// The connection failed before completing its handshake: streams
    /// opened on it fail.
    Failed,
}

/// Waits (at most `timeout`) for a 0-RTT connection's handshake and
/// publishes the outcome `judge` makes of it (`None`: timed out; else
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
                Some(false)
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

/// Opens the same request again, on a connection dialed without 0-RTT.
pub(crate) type Reopen = Box<
    dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<OpenedStream, TunnelError>> + Send>> + Send,
>;

/// How a stream sent in early data ended, as far as it was sent.
enum End {
    Open,
    Finished,
    Trailers(HeaderMap),
}

/// What an early stream has sent, or what replaced it.
enum Record {
    /// Sent on the early connection; copies kept.
    Sending {
        chunks: Vec<Bytes>,
        len: usize,
        end: End,
    },
    /// Being sent again on another connection.
    Replacing,
    /// Sent again: the new halves, each taken once by its side.
    Replaced {
        send: Option<Box<SendBody>>,
        response: Option<Box<ResponseFuture>>,
    },
    /// No resend: the sender reset the stream, or opening it again failed.
    Gone(StreamError),
}

/// One operation of the sending half.
pub(crate) enum SendOp {
    Data(Bytes),
    Finish,
    Trailers(HeaderMap),
}

/// Where the sending half should apply an operation.
pub(crate) enum Route {
    /// On the early stream (its copy is kept).
    Here,
    /// The replay buffer is full: wait for the handshake, then ask again.
    Wait,
    /// On the replacement stream.
    Moved,
}

/// The state a stream opened on a 0-RTT connection shares between its
/// sending half and its response.
pub struct EarlyStream {
    outcome: watch::Receiver<Early>,
    reopen: Mutex<Option<Reopen>>,
    record: Mutex<Record>,
    replacing: tokio::sync::Mutex<()>,
    metrics: TransportMetrics,
}

impl EarlyStream {
    pub(crate) fn new(
        outcome: watch::Receiver<Early>,
        reopen: Reopen,
        metrics: TransportMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            outcome,
            reopen: Mutex::new(Some(reopen)),
            record: Mutex::new(Record::Sending {
                chunks: Vec::new(),
                len: 0,
                end: End::Open,
            }),
            replacing: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection's outcome so far.
    pub(crate) fn outcome(&self) -> Early {
        *self.outcome.borrow()
    }

    /// Waits for the connection's outcome.
    pub(crate) async fn settled(&self) -> Early {
        settled(&mut self.outcome.clone()).await
    }

    /// Decides where `op` goes while the handshake is pending, keeping a
    /// copy if it goes on the early stream.
    pub(crate) fn route(&self, op: &SendOp) -> Route {
        let mut record = self.lock();
        let Record::Sending { chunks, len, end } = &mut *record else {
            return Route::Moved;
        };
        match op {
            SendOp::Data(d) => {
                if *len + d.len() > REPLAY_BUFFER {
                    return Route::Wait;
                }
                *len += d.len();
                chunks.push(d.clone());
            }
            SendOp::Finish => *end = End::Finished,
            SendOp::Trailers(t) => *end = End::Trailers(t.clone()),
        }
        Route::Here
    }

    /// The sender reset the stream: nothing is sent again, and a
    /// replacement already sent is reset too.
    pub(crate) fn reset(&self) {
        let mut record = self.lock();
        match &mut *record {
            Record::Sending { .. } => {
                *record = Record::Gone(StreamError::Reset("reset by the sender".into()));
            }
            Record::Replaced {
                send: Some(send), ..
            } => send.reset(),
            _ => {}
        }
    }

    /// Sends the stream again on a new connection, once (later calls wait
    /// for the first).
    async fn replace(&self) {
        let _one = self.replacing.lock().await;
        let (chunks, end) = {
            let mut record = self.lock();
            match std::mem::replace(&mut *record, Record::Replacing) {
                Record::Sending { chunks, end, .. } => (chunks, end),
                other => {
                    *record = other;
                    return;
                }
            }
        };
        self.metrics.early_replay();
        let reopen = self.reopen.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = async {
            let reopen = reopen.ok_or_else(|| StreamError::Protocol("sent again twice".into()))?;
            let mut opened = reopen().await.map_err(|e| match e {
                TunnelError::Stream(s) => s,
                other => StreamError::Connection(other.to_string()),
            })?;
            for chunk in chunks {
                opened.send.send_data(chunk).await?;
            }
            match end {
                End::Open => {}
                End::Finished => opened.send.finish().await?,
                End::Trailers(t) => opened.send.send_trailers(t).await?,
            }
            Ok::<_, StreamError>(opened)
        }
        .await;
        *self.lock() = match result {
            Ok(o) => Record::Replaced {
                send: Some(Box::new(o.send)),
                response: Some(Box::new(o.response)),
            },
            Err(e) => {
                tracing::debug!(error = %e, "sending a stream again after refused early data failed");
                Record::Gone(e)
            }
        };
    }

    /// The replacement's sending half (for the sending side, once).
    pub(crate) async fn replacement_send(&self) -> Result<SendBody, StreamError> {
        self.replacement(|send, _| send.take()).await
    }

    /// The replacement's response (for the receiving side, once).
    pub(crate) async fn replacement_response(&self) -> Result<ResponseFuture, StreamError> {
        self.replacement(|_, response| response.take()).await
    }

    /// Sends the stream again if no one has, and takes one half of the
    /// replacement with `take`.
    async fn replacement<T>(
        &self,
        take: impl FnOnce(
            &mut Option<Box<SendBody>>,
            &mut Option<Box<ResponseFuture>>,
        ) -> Option<Box<T>>,
    ) -> Result<T, StreamError> {
        self.replace().await;
        match &mut *self.lock() {
            Record::Replaced { send, response } => take(send, response)
                .map(|b| *b)
                .ok_or_else(|| StreamError::Protocol("replacement taken twice".into())),
            Record::Gone(e) => Err(e.clone()),
            _ => Err(StreamError::Protocol("stream was not sent again".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> (watch::Sender<Early>, Arc<EarlyStream>) {
        let (tx, rx) = watch::channel(Early::Pending);
        let reopen: Reopen = Box::new(|| {
            Box::pin(async {
                Err(TunnelError::Open {
                    addr: "127.0.0.1:1".parse().expect("addr"),
                    detail: "no peer in a unit test".into(),
                })
            })
        });
        (tx, EarlyStream::new(rx, reopen, TransportMetrics::new()))
    }

    #[test]
    fn data_is_copied_up_to_the_replay_buffer_then_waits() {
        let (_tx, e) = stream();
        let half = Bytes::from(vec![0u8; REPLAY_BUFFER / 2]);
        assert!(matches!(e.route(&SendOp::Data(half.clone())), Route::Here));
        assert!(matches!(e.route(&SendOp::Data(half)), Route::Here));
        assert!(matches!(
            e.route(&SendOp::Data(Bytes::from_static(b"x"))),
            Route::Wait
        ));
        // The end of the stream costs no buffer.
        assert!(matches!(e.route(&SendOp::Finish), Route::Here));
    }

    #[test]
    fn a_reset_stream_is_never_sent_again() {
        let (_tx, e) = stream();
        assert!(matches!(
            e.route(&SendOp::Data(Bytes::from_static(b"x"))),
            Route::Here
        ));
        e.reset();
        assert!(matches!(e.route(&SendOp::Finish), Route::Moved));
    }

    #[tokio::test]
    async fn a_failed_resend_is_the_streams_error_on_both_halves() {
        let (tx, e) = stream();
        tx.send(Early::Refused).expect("receiver alive");
        assert_eq!(e.settled().await, Early::Refused);
        let send = e.replacement_send().await.err().expect("no replacement");
        assert!(
            send.to_string().contains("no peer in a unit test"),
            "{send}"
        );
        let resp = e
            .replacement_response()
            .await
            .err()
            .expect("no replacement");
        assert_eq!(resp.to_string(), send.to_string());
    }

    #[tokio::test]
    async fn a_dropped_watcher_settles_as_failed() {
        let (tx, e) = stream();
        drop(tx);
        assert_eq!(e.settled().await, Early::Failed);
    }
}
