//! Copying between a TCP connection and a tunnel stream, each direction on
//! its own: TCP FIN ↔ end of stream (half-close), TCP RST ↔ stream reset.
//! Buffers are bounded: one chunk (16 KiB, growing to 256 KiB while a
//! transfer keeps filling it) per direction is in hand at a time, and a
//! slow reader stalls the writer through flow control, never through
//! unbounded buffering.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::body::{RecvBody, SendBody};
use super::error::StreamError;

/// The first read from TCP takes up to this many bytes; an idle connection
/// holds no more than this.
pub const MIN_CHUNK: usize = 16 * 1024;
/// Reads that fill the buffer double it up to this: bulk transfers move
/// big chunks (the per-chunk cost dominates on a fast link).
pub const MAX_CHUNK: usize = 256 * 1024;

/// How a spliced connection ended, and how many bytes moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Bytes read from TCP and sent into the stream.
    pub tcp_to_stream: u64,
    /// Bytes received from the stream and written to TCP.
    pub stream_to_tcp: u64,
    /// Whether either side ended with a reset.
    pub reset: bool,
}

enum Up {
    Done,
    Reset,
}

/// Runs both directions until both have ended (or one side resets, which
/// aborts both). A direction with no traffic in either way for `idle`
/// aborts the whole splice.
pub async fn splice(
    tcp: TcpStream,
    mut send: SendBody,
    mut recv: RecvBody,
    idle: Duration,
) -> Result<SpliceStats, StreamError> {
    let (mut rd, mut wr) = tcp.into_split();
    let activity = tokio::sync::watch::channel(());
    let (tick_tx, mut tick_rx) = activity;
    // Counted outside the two directions, so a reset that ends one of them
    // early still reports what the other one moved.
    let up_bytes = AtomicU64::new(0);
    let down_bytes = AtomicU64::new(0);
    let up = async {
        let mut chunk = MIN_CHUNK;
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(chunk);
            let room = buf.capacity() - buf.len();
            match rd.read_buf(&mut buf).await {
                Ok(0) => {
                    let _ = send.finish().await;
                    return Up::Done;
                }
                Ok(k) => {
                    up_bytes.fetch_add(k as u64, Ordering::Relaxed);
                    if k >= room {
                        chunk = (chunk * 2).min(MAX_CHUNK);
                    }
                    let _ = tick_tx.send(());
                    if send.send_data(buf.split().freeze()).await.is_err() {
                        // The peer stopped reading: treat as a reset.
                        return Up::Reset;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, reset = is_reset(e.kind()), "TCP read failed; resetting the stream");
                    send.reset();
                    return Up::Reset;
                }
            }
        }
    };
    let down = async {
        loop {
            match recv.data().await {
                Ok(Some(chunk)) => {
                    down_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    let _ = tick_tx.send(());
                    if wr.write_all(&chunk).await.is_err() {
                        recv.stop();
                        return (true, wr);
                    }
                }
                Ok(None) => {
                    tracing::trace!("stream finished; half-closing TCP");
                    let _ = wr.shutdown().await;
                    return (false, wr);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "stream ended with an error; resetting TCP");
                    return (true, wr);
                }
            }
        }
    };
    let idle_watch = async {
        loop {
            match tokio::time::timeout(idle, tick_rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => std::future::pending::<()>().await,
                Err(_) => return,
            }
        }
    };
    tokio::pin!(up, down, idle_watch);
    let mut up_result: Option<Up> = None;
    let mut down_result: Option<(bool, OwnedWriteHalf)> = None;
    let stats = |reset| SpliceStats {
        tcp_to_stream: up_bytes.load(Ordering::Relaxed),
        stream_to_tcp: down_bytes.load(Ordering::Relaxed),
        reset,
    };
    loop {
        tokio::select! {
            r = &mut up, if up_result.is_none() => {
                if let Up::Reset = r {
                    // TCP reset (or stream refused): abort the other way too.
                    return Ok(stats(true));
                }
                up_result = Some(r);
            }
            r = &mut down, if down_result.is_none() => {
                let (reset, wr) = r;
                if reset {
                    reset_tcp(wr, None);
                    return Ok(stats(true));
                }
                down_result = Some((reset, wr));
            }
            _ = &mut idle_watch => {
                return Err(StreamError::Idle(idle));
            }
        }
        if let (Some(Up::Done), Some(_)) = (&up_result, &down_result) {
            return Ok(stats(false));
        }
    }
}

fn is_reset(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Closes a TCP connection with RST instead of FIN.
pub fn reset_tcp(wr: OwnedWriteHalf, rd: Option<OwnedReadHalf>) {
    let _ = socket2::SockRef::from(wr.as_ref()).set_linger(Some(Duration::ZERO));
    // Dropping a write half sends FIN first; `forget` skips that, so the
    // socket closes (with RST) once the read half is dropped.
    wr.forget();
    drop(rd);
}

/// Resets a whole TCP stream (RST).
pub fn reset_tcp_stream(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    drop(tcp);
}
