//! A gRPC server application for tests (tonic over h2c, hand-written prost
//! messages, no code generation): unary (names the caller's identity
//! header), server streaming and bidirectional streaming. Shared by the
//! edge's gRPC tests and the multicluster tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::server::{Grpc, ServerStreamingService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

pub const UNARY: &str = "/ferry.test.Echo/Unary";
pub const COUNT: &str = "/ferry.test.Echo/Count";
pub const CHAT: &str = "/ferry.test.Echo/Chat";
/// Messages may be larger than tonic's 4 MiB decoding default.
pub const MAX_MESSAGE: usize = 8 << 20;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

pub fn msg(text: impl Into<String>) -> Msg {
    Msg {
        text: text.into(),
        data: Vec::new(),
    }
}

pub type BoxFut<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;
pub type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// Unary: `text = "missing"` answers NOT_FOUND "nope" (trailers-only);
/// otherwise the reply names the `x-ferry-client-id` the server saw and
/// carries the request's data with every byte incremented.
struct Unary;
impl UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFut<Msg>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let caller = req
                .metadata()
                .get_all("x-ferry-client-id")
                .iter()
                .map(|v| v.to_str().unwrap_or("<binary>").to_string())
                .collect::<Vec<_>>()
                .join(",");
            let m = req.into_inner();
            if m.text == "missing" {
                return Err(Status::not_found("nope"));
            }
            Ok(Response::new(Msg {
                text: format!("{} from {caller}", m.text),
                data: m.data.iter().map(|b| b.wrapping_add(1)).collect(),
            }))
        })
    }
}

/// Server streaming: `text = "N"` sends "0".."N-1"; `text = "N!"` sends
/// them, then ends with ABORTED "stopped after N" in the trailers.
struct Count;
impl ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFut<MsgStream>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let text = req.into_inner().text;
        let (n, fail) = match text.strip_suffix('!') {
            Some(n) => (n.parse::<usize>().unwrap_or(0), true),
            None => (text.parse::<usize>().unwrap_or(0), false),
        };
        Box::pin(async move {
            let items = (0..n).map(|i| Ok(msg(i.to_string())));
            let end = fail.then(|| Err(Status::aborted(format!("stopped after {n}"))));
            let s = futures::stream::iter(items.chain(end));
            Ok(Response::new(Box::pin(s) as MsgStream))
        })
    }
}

/// Bidirectional: echoes each message as soon as it arrives ("echo " +
/// text, data reversed).
struct Echo;
impl StreamingService<Msg> for Echo {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFut<MsgStream>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let s = req.into_inner().map(|m| {
                m.map(|m| Msg {
                    text: format!("echo {}", m.text),
                    data: m.data.into_iter().rev().collect(),
                })
            });
            Ok(Response::new(Box::pin(s) as MsgStream))
        })
    }
}

/// A gRPC server application (h2c, hyper) dispatching by path.
pub async fn grpc_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let mut grpc = Grpc::new(ProstCodec::<Msg, Msg>::default())
                            .max_decoding_message_size(MAX_MESSAGE);
                        let resp = match req.uri().path() {
                            UNARY => grpc.unary(Unary, req).await,
                            COUNT => grpc.server_streaming(Count, req).await,
                            CHAT => grpc.streaming(Echo, req).await,
                            _ => Status::unimplemented("no such method").into_http(),
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}
