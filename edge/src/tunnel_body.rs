//! Bridges between hyper bodies and tunnel stream halves: a tunnel
//! [`RecvBody`] as an `http_body::Body` (data, then trailers), and pumping
//! an `http_body::Body` into a [`SendBody`]. Both are streaming: nothing is
//! buffered beyond one frame.

use bytes::Bytes;
use ferry_transport::tunnel::{RecvBody, SendBody, StreamError};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// A small complete body (error responses).
pub fn full(text: impl Into<Bytes>) -> ProxyBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

enum ReadState {
    Data(RecvBody),
    Done,
}

/// Exposes a tunnel receive half as an HTTP body.
pub fn recv_to_body(recv: RecvBody) -> ProxyBody {
    let stream = futures::stream::unfold(ReadState::Data(recv), |state| async move {
        let ReadState::Data(mut recv) = state else {
            return None;
        };
        match recv.data().await {
            Ok(Some(chunk)) => Some((Ok(Frame::data(chunk)), ReadState::Data(recv))),
            Ok(None) => match recv.trailers().await {
                Ok(Some(t)) => Some((Ok(Frame::trailers(t)), ReadState::Done)),
                Ok(None) => None,
                Err(e) => Some((Err(Box::new(e) as BodyError), ReadState::Done)),
            },
            Err(e) => Some((Err(Box::new(e) as BodyError), ReadState::Done)),
        }
    });
    StreamBody::new(stream).boxed()
}

/// How pumping a body ended.
#[derive(Debug)]
pub enum PumpEnd {
    /// Every frame was sent and the stream finished.
    Complete(u64),
    /// The source body failed (client went away): the stream was reset.
    SourceFailed(String),
    /// The tunnel stream failed.
    Stream(StreamError),
}

/// Sends every frame of `body` into `send`, then ends the stream.
pub async fn pump_body<B>(body: B, mut send: SendBody) -> PumpEnd
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut bytes = 0u64;
    loop {
        match body.frame().await {
            None => {
                return match send.finish().await {
                    Ok(()) => PumpEnd::Complete(bytes),
                    Err(e) => PumpEnd::Stream(e),
                };
            }
            Some(Err(e)) => {
                send.reset();
                return PumpEnd::SourceFailed(e.to_string());
            }
            Some(Ok(frame)) => match frame.into_data() {
                // The body knows it is complete (a `content-length` body
                // read to its end): the stream ends with this chunk.
                Ok(data) if body.is_end_stream() => {
                    bytes += data.len() as u64;
                    return match send.send_last(data).await {
                        Ok(()) => PumpEnd::Complete(bytes),
                        Err(e) => PumpEnd::Stream(e),
                    };
                }
                Ok(data) => {
                    bytes += data.len() as u64;
                    if let Err(e) = send.send_data(data).await {
                        return PumpEnd::Stream(e);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return match send.send_trailers(trailers).await {
                            Ok(()) => PumpEnd::Complete(bytes),
                            Err(e) => PumpEnd::Stream(e),
                        };
                    }
                }
            },
        }
    }
}
