//! The two halves of a tunnel stream, the same whichever transport carries
//! them: [`SendBody`] writes data, trailers and the end of stream (or a
//! reset); [`RecvBody`] reads them. Callers never branch on the transport.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::HeaderMap;

use super::error::StreamError;
use super::tracker::StreamTicket;
use crate::TransportKind;

type QuicSend = h3_quinn::SendStream<Bytes>;
type QuicRecv = h3_quinn::RecvStream;

pub(crate) enum SendInner {
    QuicClient(h3::client::RequestStream<QuicSend, Bytes>),
    QuicServer(h3::server::RequestStream<QuicSend, Bytes>),
    H2(h2::SendStream<Bytes>),
}

pub(crate) enum RecvInner {
    QuicClient(h3::client::RequestStream<QuicRecv, Bytes>),
    QuicServer(h3::server::RequestStream<QuicRecv, Bytes>),
    H2(h2::RecvStream),
    /// A QUIC receive half given up by [`RecvBody::stop`]: the stream was
    /// dropped, which makes quinn send STOP_SENDING.
    QuicStopped,
}

/// The sending half of a stream.
pub struct SendBody {
    inner: SendInner,
    _ticket: Arc<StreamTicket>,
}

/// The receiving half of a stream.
pub struct RecvBody {
    inner: RecvInner,
    _ticket: Arc<StreamTicket>,
    done: bool,
}

impl SendBody {
    pub(crate) fn new(inner: SendInner, ticket: Arc<StreamTicket>) -> Self {
        Self {
            inner,
            _ticket: ticket,
        }
    }

    pub fn transport(&self) -> TransportKind {
        match self.inner {
            SendInner::H2(_) => TransportKind::H2,
            _ => TransportKind::Quic,
        }
    }

    /// Sends one chunk; waits while the peer's flow-control window is full,
    /// so a slow reader pushes back all the way to our source.
    pub async fn send_data(&mut self, data: Bytes) -> Result<(), StreamError> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.inner {
            SendInner::QuicClient(s) => Ok(s.send_data(data).await?),
            SendInner::QuicServer(s) => Ok(s.send_data(data).await?),
            SendInner::H2(s) => h2_send(s, data).await,
        }
    }

    /// Sends the last chunk and ends the stream with it. Over HTTP/2 the
    /// end of stream travels on that chunk's DATA frame instead of an empty
    /// frame after it: a peer that has all the bytes it expects (an HTTP
    /// body with a `content-length`) may drop the stream before a separate
    /// end arrives, which cancels it (RST_STREAM), and a stream of such
    /// cancels at thousands of requests per second made h2 close the whole
    /// connection (`too_many_internal_resets`).
    pub async fn send_last(&mut self, data: Bytes) -> Result<(), StreamError> {
        match &mut self.inner {
            SendInner::H2(s) => h2_send_end(s, data, true).await,
            _ => {
                self.send_data(data).await?;
                self.finish().await
            }
        }
    }

    /// Sends trailers, which also ends the stream.
    pub async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError> {
        match &mut self.inner {
            SendInner::QuicClient(s) => {
                quic_end(s.send_trailers(trailers).await)?;
                quic_end(s.finish().await)
            }
            SendInner::QuicServer(s) => {
                quic_end(s.send_trailers(trailers).await)?;
                quic_end(s.finish().await)
            }
            SendInner::H2(s) => match s.send_trailers(trailers) {
                Err(_) if h2_peer_needs_no_more(s) => Ok(()),
                other => Ok(other?),
            },
        }
    }

    /// Ends the stream in this direction (TCP FIN).
    pub async fn finish(&mut self) -> Result<(), StreamError> {
        match &mut self.inner {
            SendInner::QuicClient(s) => quic_end(s.finish().await),
            SendInner::QuicServer(s) => quic_end(s.finish().await),
            SendInner::H2(s) => h2_send_end(s, Bytes::new(), true).await,
        }
    }

    /// Aborts the stream (TCP RST).
    pub fn reset(&mut self) {
        match &mut self.inner {
            SendInner::QuicClient(s) => s.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED),
            SendInner::QuicServer(s) => s.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED),
            SendInner::H2(s) => s.send_reset(h2::Reason::CANCEL),
        }
    }
}

/// The outcome of ending a QUIC stream: a peer that stopped reading with
/// `H3_NO_ERROR` (or quinn's 0, what dropping an unread stream sends) has
/// what it wanted, so the end is not a failure.
fn quic_end(r: Result<(), h3::error::StreamError>) -> Result<(), StreamError> {
    match r {
        Err(h3::error::StreamError::RemoteTerminate { code, .. })
            if code == h3::error::Code::H3_NO_ERROR || code == 0 =>
        {
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Whether the peer has reset the stream with `NO_ERROR`: an HTTP/2 server
/// that has sent its whole response may ask the client to stop sending the
/// request that way (RFC 9113 §8.1), and ending the stream then is not a
/// failure even though h2 refuses the frame.
fn h2_peer_needs_no_more(s: &mut h2::SendStream<Bytes>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(
        s.poll_reset(&mut cx),
        std::task::Poll::Ready(Ok(h2::Reason::NO_ERROR))
    )
}

async fn h2_send(s: &mut h2::SendStream<Bytes>, data: Bytes) -> Result<(), StreamError> {
    h2_send_end(s, data, false).await
}

/// Sends `data` as flow control allows; with `end`, the last DATA frame
/// (an empty one if `data` is empty) ends the stream. Ending a stream the
/// peer no longer needs (see [`h2_peer_needs_no_more`]) succeeds.
async fn h2_send_end(
    s: &mut h2::SendStream<Bytes>,
    data: Bytes,
    end: bool,
) -> Result<(), StreamError> {
    match h2_send_chunks(s, data, end).await {
        Err(_) if end && h2_peer_needs_no_more(s) => Ok(()),
        other => other,
    }
}

async fn h2_send_chunks(
    s: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), StreamError> {
    if data.is_empty() {
        if end {
            s.send_data(data, true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| s.poll_capacity(cx)).await {
            None => return Err(StreamError::Reset("stream closed while sending".into())),
            Some(r) => r?,
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        s.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

impl RecvBody {
    pub(crate) fn new(inner: RecvInner, ticket: Arc<StreamTicket>) -> Self {
        Self {
            inner,
            _ticket: ticket,
            done: false,
        }
    }

    pub fn transport(&self) -> TransportKind {
        match self.inner {
            RecvInner::H2(_) => TransportKind::H2,
            _ => TransportKind::Quic,
        }
    }

    /// The next chunk of data; `None` at the end of the stream.
    ///
    /// Never an empty chunk: an empty DATA frame (HTTP/2 ends a stream with
    /// one) is skipped. Handed on, it would become an empty frame that does
    /// not end the stream on the next hop, and h2 peers close a connection
    /// after 100 of those (`too_many_data_frames`).
    ///
    /// Cancel-safe: dropped before it completes, it has taken nothing from
    /// the stream (the splice polls it once to take chunks that already
    /// arrived).
    pub async fn data(&mut self) -> Result<Option<Bytes>, StreamError> {
        loop {
            match self.next_chunk().await? {
                Some(chunk) if chunk.is_empty() => continue,
                other => return Ok(other),
            }
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        if self.done {
            return Ok(None);
        }
        let chunk = match &mut self.inner {
            RecvInner::QuicClient(s) => s
                .recv_data()
                .await?
                .map(|mut b| b.copy_to_bytes(b.remaining())),
            RecvInner::QuicServer(s) => s
                .recv_data()
                .await?
                .map(|mut b| b.copy_to_bytes(b.remaining())),
            RecvInner::H2(s) => match s.data().await {
                None => None,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(b)) => {
                    // The bytes leave h2's buffer now; the caller writes them
                    // before asking for more, so the window bounds buffering.
                    let _ = s.flow_control().release_capacity(b.len());
                    Some(b)
                }
            },
            RecvInner::QuicStopped => None,
        };
        if chunk.is_none() {
            self.done = true;
        }
        Ok(chunk)
    }

    /// Trailers, after [`RecvBody::data`] returned `None`.
    pub async fn trailers(&mut self) -> Result<Option<HeaderMap>, StreamError> {
        match &mut self.inner {
            RecvInner::QuicClient(s) => Ok(s.recv_trailers().await?),
            RecvInner::QuicServer(s) => Ok(s.recv_trailers().await?),
            RecvInner::H2(s) => Ok(s.trailers().await?),
            RecvInner::QuicStopped => Ok(None),
        }
    }

    /// Tells the peer to stop sending (we will not read any more).
    ///
    /// Over QUIC the stream is dropped rather than stopped through h3: h3's
    /// `recv_data` may hand out buffered data while a read of the underlying
    /// stream is still in flight, and h3-quinn's `stop_sending` then panics
    /// (it unwraps the stream that read holds). A quinn receive stream
    /// dropped before its end sends STOP_SENDING itself, so the peer learns
    /// the same thing. Over HTTP/2, h2 resets the stream when both halves
    /// are gone.
    pub fn stop(&mut self) {
        if !matches!(self.inner, RecvInner::H2(_)) {
            self.inner = RecvInner::QuicStopped;
            self.done = true;
        }
    }
}
