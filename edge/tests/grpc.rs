//! gRPC through a pair of edges, with tonic on both ends (no code
//! generation: hand-written prost messages and services), for each
//! transport: unary, an error status (trailers-only response), server
//! streaming, bidirectional streaming in lock step, and 1 MiB messages.

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpListener;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::server::{Grpc, ServerStreamingService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(bytes = "vec", tag = "2")]
    data: Vec<u8>,
}

type BoxFut<T> = Pin<Box<dyn std::future::Future<Output = Result<Response<T>, Status>> + Send>>;
type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

struct Unary;
impl UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFut<Msg>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let caller = req
                .metadata()
                .get("x-ferry-client-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let m = req.into_inner();
            if m.text == "missing" {
                return Err(Status::not_found("nope"));
            }
            Ok(Response::new(Msg {
                text: format!("{} from {caller}", m.text),
                data: m.data,
            }))
        })
    }
}

struct Count;
impl ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFut<MsgStream>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let n: usize = req.into_inner().text.parse().unwrap_or(0);
        Box::pin(async move {
            let s = futures::stream::iter((0..n).map(|i| {
                Ok(Msg {
                    text: i.to_string(),
                    data: vec![],
                })
            }));
            Ok(Response::new(Box::pin(s) as MsgStream))
        })
    }
}

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
                    data: m.data,
                })
            });
            Ok(Response::new(Box::pin(s) as MsgStream))
        })
    }
}

/// A gRPC server (h2c) dispatching by path.
async fn grpc_app() -> SocketAddr {
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
                            .max_decoding_message_size(8 << 20);
                        let resp = match req.uri().path() {
                            "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                            "/test.Echo/Count" => grpc.server_streaming(Count, req).await,
                            "/test.Echo/Chat" => grpc.streaming(Echo, req).await,
                            _ => http::Response::builder()
                                .status(404)
                                .body(tonic::body::Body::empty())
                                .unwrap(),
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

async fn client(listener: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{listener}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel).max_decoding_message_size(8 << 20)
}

fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

async fn grpc(transport: &'static str) {
    let mesh = Mesh::new();
    let app = grpc_app().await;
    let empty = mesh.write("empty.toml", "");
    let server = start_edge(
        &mesh,
        "api",
        &empty,
        &EdgeOpts {
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let api =
        ferry_transport::identity::SpiffeId::parse(&format!("spiffe://{TD}/ns/default/sa/api"))
            .unwrap();
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "echo",
            port: 50051,
            protocol: "grpc",
            endpoints: vec![(app, server.tunnel, api)],
        }]),
    );
    let edge = start_edge(
        &mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec!["echo.default:50051".into()],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    let mut c = client(edge.outbound[0].0).await;

    // Unary, with the caller's identity seen by the server.
    c.ready().await.unwrap();
    let r = c
        .unary(
            Request::new(Msg {
                text: "hi".into(),
                data: vec![],
            }),
            PathAndQuery::from_static("/test.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.into_inner().text,
        format!("hi from spiffe://{TD}/ns/default/sa/web")
    );

    // An error status arrives intact (trailers-only response).
    c.ready().await.unwrap();
    let err = c
        .unary(
            Request::new(Msg {
                text: "missing".into(),
                data: vec![],
            }),
            PathAndQuery::from_static("/test.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "nope");

    // Server streaming: 100 messages in order.
    c.ready().await.unwrap();
    let mut s = c
        .server_streaming(
            Request::new(Msg {
                text: "100".into(),
                data: vec![],
            }),
            PathAndQuery::from_static("/test.Echo/Count"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    for i in 0..100 {
        assert_eq!(s.message().await.unwrap().unwrap().text, i.to_string());
    }
    assert!(
        s.message().await.unwrap().is_none(),
        "clean end with status OK"
    );

    // Bidirectional, lock step: each message is echoed before the next is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    c.ready().await.unwrap();
    let mut replies = c
        .streaming(
            Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            PathAndQuery::from_static("/test.Echo/Chat"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    for i in 0..20 {
        tx.send(Msg {
            text: i.to_string(),
            data: vec![],
        })
        .await
        .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .expect("echo before the stream ends")
            .unwrap()
            .unwrap();
        assert_eq!(m.text, format!("echo {i}"));
    }
    // 1 MiB each way.
    let big = vec![7u8; 1 << 20];
    tx.send(Msg {
        text: "big".into(),
        data: big.clone(),
    })
    .await
    .unwrap();
    let m = replies.message().await.unwrap().unwrap();
    assert_eq!(m.data, big);
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());

    let (_, metrics) = admin_get(edge.admin, "/metrics").await;
    let line = format!("ferry_requests_total{{direction=\"outbound\",transport=\"{transport}\",status_class=\"2xx\"}} 4");
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_errors_quic() {
    grpc("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_errors_h2() {
    grpc("h2").await;
}
