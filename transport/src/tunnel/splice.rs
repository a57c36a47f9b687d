//! Copying between a TCP connection and a tunnel stream, each direction on
//! its own: TCP FIN ↔ end of stream (half-close), TCP RST ↔ stream reset.
//! Buffers are bounded: one chunk (16 KiB, growing to 256 KiB while a
//! transfer keeps filling it) per direction is in hand at a time, and a
//! slow reader stalls the writer through flow control, never through
//! unbounded buffering. Towards TCP, the stream's chunks that have already
//! arrived (up to 256 KiB) go out in one vectored write.

use std::io::{ErrorKind, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
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
        let mut batch: Vec<Bytes> = Vec::new();
        loop {
            let (got, end) = next_batch(&mut recv, &mut batch).await;
            if got > 0 {
                down_bytes.fetch_add(got as u64, Ordering::Relaxed);
                let _ = tick_tx.send(());
                if write_batch(&mut wr, &mut batch).await.is_err() {
                    recv.stop();
                    return (true, wr);
                }
            }
            match end {
                None => {}
                Some(Ok(())) => {
                    tracing::trace!("stream finished; half-closing TCP");
                    let _ = wr.shutdown().await;
                    return (false, wr);
                }
                Some(Err(e)) => {
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

/// Chunks written to TCP in one call at most (`IOV_MAX` is 1,024).
const MAX_SLICES: usize = 64;

/// Waits for the next chunk from the stream, then takes whatever else has
/// already arrived (up to [`MAX_CHUNK`] bytes and [`MAX_SLICES`] chunks)
/// without waiting: a QUIC receiver hands out about one packet per chunk,
/// and writing each to TCP on its own cost a syscall per packet. Returns the
/// bytes added to `batch` and, if the stream ended, how.
async fn next_batch(
    recv: &mut RecvBody,
    batch: &mut Vec<Bytes>,
) -> (usize, Option<Result<(), StreamError>>) {
    let mut got = 0;
    let mut next = recv.data().await;
    loop {
        match next {
            Ok(Some(chunk)) => {
                got += chunk.len();
                batch.push(chunk);
            }
            Ok(None) => return (got, Some(Ok(()))),
            Err(e) => return (got, Some(Err(e))),
        }
        if got >= MAX_CHUNK || batch.len() >= MAX_SLICES {
            return (got, None);
        }
        // `data` is cancel-safe: a chunk not ready yet stays in the stream.
        match recv.data().now_or_never() {
            Some(r) => next = r,
            None => return (got, None),
        }
    }
}

/// Writes every chunk of `batch` (vectored) and empties it.
async fn write_batch(wr: &mut OwnedWriteHalf, batch: &mut Vec<Bytes>) -> std::io::Result<()> {
    if let [one] = batch.as_slice() {
        wr.write_all(one).await?;
        batch.clear();
        return Ok(());
    }
    let mut first = 0;
    while first < batch.len() {
        let slices: Vec<IoSlice<'_>> = batch[first..].iter().map(|b| IoSlice::new(b)).collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let len = batch[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                batch[first].advance(n);
                n = 0;
            }
        }
    }
    batch.clear();
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_batch_arrives_whole_and_in_order() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut tcp, _) = l.accept().await.unwrap();
            let mut all = Vec::new();
            tcp.read_to_end(&mut all).await.unwrap();
            all
        });
        let (_rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
        // Big enough that one vectored write cannot take it all while the
        // reader lags, so partial writes (mid-chunk) happen.
        let mut expected = Vec::new();
        for round in 0..4u8 {
            let mut batch: Vec<Bytes> = (0..MAX_SLICES)
                .map(|i| {
                    let len = 1 + (i * 7919 + round as usize * 131) % 60_000;
                    Bytes::from(vec![(i as u8).wrapping_add(round); len])
                })
                .collect();
            for b in &batch {
                expected.extend_from_slice(b);
            }
            write_batch(&mut wr, &mut batch).await.unwrap();
            assert!(batch.is_empty());
        }
        let mut one = vec![Bytes::from_static(b"end")];
        write_batch(&mut wr, &mut one).await.unwrap();
        expected.extend_from_slice(b"end");
        drop(wr);
        drop(_rd);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
    }
}
