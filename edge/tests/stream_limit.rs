//! `tunnel.max_concurrent_streams`: a client edge puts at most that many
//! streams on one tunnel connection to a peer and dials another beyond it.
//! Checked with opaque TCP connections held open through two real edges
//! (each one stream), counting the client edge's open tunnel connections
//! on its `/metrics`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `ferry_transport_open_connections` of the dialing side for `transport`.
async fn dialed_connections(admin: SocketAddr, transport: &str) -> u64 {
    let (_, metrics) = admin_get(admin, "/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_transport_open_connections{"))
        .filter(|l| {
            l.contains("side=\"client\"") && l.contains(&format!("transport=\"{transport}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Opens an application connection through `listener` and checks that
/// it carries a byte each way (so its stream is open).
async fn held_connection(listener: SocketAddr, tag: u8) -> TcpStream {
    let mut c = TcpStream::connect(listener).await.unwrap();
    c.write_all(&[tag]).await.unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut b))
        .await
        .expect("echo within 10 s")
        .unwrap();
    assert_eq!(b[0], tag);
    c
}

/// How many tunnel connections three application connections held open
/// use, with `limit` streams per connection (`None`: the default).
async fn tunnel_connections_for_three_streams(transport: &'static str, limit: Option<u32>) -> u64 {
    let mesh = Mesh::new();
    let echo = tcp_echo_app().await;
    let opts = EdgeOpts {
        force_transport: Some(transport),
        tunnel_extra: limit
            .map(|n| format!("max_concurrent_streams = {n}\n"))
            .unwrap_or_default(),
        ..Default::default()
    };
    let (_server, client) = edge_pair_with(&mesh, echo, "echo", "tcp", &opts).await;
    let listener = client.outbound[0].0;
    let mut held = Vec::new();
    for tag in 0..3u8 {
        held.push(held_connection(listener, tag).await);
    }
    let n = dialed_connections(client.admin, transport).await;
    drop(held);
    n
}

#[tokio::test]
async fn streams_beyond_the_limit_go_to_another_connection() {
    init();
    for transport in ["quic", "h2"] {
        assert_eq!(
            tunnel_connections_for_three_streams(transport, Some(1)).await,
            3,
            "{transport}: one stream per connection"
        );
        assert_eq!(
            tunnel_connections_for_three_streams(transport, Some(2)).await,
            2,
            "{transport}: two streams per connection"
        );
        assert_eq!(
            tunnel_connections_for_three_streams(transport, None).await,
            1,
            "{transport}: the default allows many streams per connection"
        );
    }
}
