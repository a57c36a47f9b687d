//! An opaque TCP connection's first bytes travel with its CONNECT: the
//! client edge sends what the application wrote before the peer answered,
//! so a client-first protocol does not wait a round trip for the 200.
//!
//! The peer here is a tunnel server of the test's own (identity "api")
//! that reads the stream before it answers: it sees the application's
//! bytes only if they were sent ahead of the answer. It also checks the
//! bound (at most 64 KiB before the answer, the rest after it, nothing
//! lost) and that a server-first protocol, which sends nothing, still gets
//! its connection.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ferry_edge::RunningEdge;
use ferry_transport::identity::{IdentityFiles, IdentityStore};
use ferry_transport::metrics::TransportMetrics;
use ferry_transport::tls::TlsConfigs;
use ferry_transport::tunnel::{handler, IncomingStream, TunnelConfig, TunnelServer};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the peer reads before it answers.
const LISTEN: Duration = Duration::from_millis(400);

/// Reads the stream for [`LISTEN`] (or until `want` bytes), then answers
/// 200 and sends back `<n>\n` (the bytes it had before answering), then
/// echoes the rest of the stream's bytes counted as `<total>\n` at its end.
async fn answer_after_reading(mut s: IncomingStream, want: usize) {
    let mut before = 0usize;
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + LISTEN;
    while before < want {
        match tokio::time::timeout_at(deadline, s.body.data()).await {
            Ok(Ok(Some(b))) => before += b.len(),
            Ok(Ok(None)) => {
                ended = true;
                break;
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let ok = http::Response::builder().status(200).body(()).unwrap();
    let Ok(mut send) = s.responder.send_response(ok).await else {
        return;
    };
    let _ = send.send_data(Bytes::from(format!("{before}\n"))).await;
    let mut total = before;
    while !ended {
        match s.body.data().await {
            Ok(Some(b)) => total += b.len(),
            _ => ended = true,
        }
    }
    let _ = send.send_last(Bytes::from(format!("{total}\n"))).await;
}

/// The test's peer edge ("api") and a client edge ("web") whose service
/// `db` (declared `tcp`) has that peer as its one endpoint.
async fn setup(mesh: &Mesh, transport: &'static str, want: usize) -> (TunnelServer, RunningEdge) {
    let (api_id, api_dir) = mesh.identity("api");
    let store = IdentityStore::load(&IdentityFiles::in_dir(&api_dir)).unwrap();
    let tls = TlsConfigs::new(store, TransportMetrics::new());
    let peer = TunnelServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        TunnelConfig::default(),
        handler(move |s| answer_after_reading(s, want)),
    )
    .await
    .unwrap();
    let app: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "db",
            port: app.port(),
            protocol: "tcp",
            endpoints: vec![(app, peer.local_addr(), api_id)],
        }]),
    );
    let client = start_edge(
        mesh,
        "web",
        &mesh_file,
        &EdgeOpts {
            listeners: vec![format!("db.default:{}", app.port())],
            force_transport: Some(transport),
            ..Default::default()
        },
    )
    .await;
    (peer, client)
}

/// Connects through the client edge, writes `out` at once, half-closes,
/// and returns the two lines the peer sends.
async fn exchange(client: &RunningEdge, out: &[u8]) -> (usize, usize) {
    let mut s = TcpStream::connect(client.outbound[0].0).await.unwrap();
    s.write_all(out).await.unwrap();
    s.shutdown().await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text))
        .await
        .expect("the peer's answer in time")
        .expect("read the answer");
    let mut lines = text.lines().map(|l| l.parse::<usize>().expect(l));
    (lines.next().expect("before"), lines.next().expect("total"))
}

async fn client_first_bytes_precede_the_answer(transport: &'static str) {
    let mesh = Mesh::new();
    let (_peer, client) = setup(&mesh, transport, 5).await;
    let (before, total) = exchange(&client, b"HELLO").await;
    assert_eq!(
        before, 5,
        "{transport}: the application's first bytes reached the peer before its answer"
    );
    assert_eq!(total, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_first_bytes_precede_the_answer_quic() {
    client_first_bytes_precede_the_answer("quic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_first_bytes_precede_the_answer_h2() {
    client_first_bytes_precede_the_answer("h2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_most_64_kib_go_before_the_answer_and_nothing_is_lost() {
    let mesh = Mesh::new();
    const N: usize = 300_000;
    let (_peer, client) = setup(&mesh, "quic", N).await;
    let (before, total) = exchange(&client, &vec![7u8; N]).await;
    assert!(
        before > 0 && before <= 64 * 1024,
        "{before} bytes before the answer"
    );
    assert_eq!(total, N, "every byte arrived");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_first_protocol_still_connects() {
    let mesh = Mesh::new();
    let (_peer, client) = setup(&mesh, "quic", 1).await;
    let mut s = TcpStream::connect(client.outbound[0].0).await.unwrap();
    // Nothing sent: the peer answers after LISTEN with "0\n".
    let mut line = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut line))
        .await
        .expect("the answer in time")
        .unwrap();
    assert_eq!(&line, b"0\n");
    // The connection works both ways after it.
    s.write_all(b"late").await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "4\n");
}
