//! Bytes an opaque TCP connection carried before it ended with a reset are
//! still counted (metrics and access log) on both edges. Found by the
//! iperf3 interop test: iperf3 ends its data connections with RST, and the
//! edges reported 0 bytes for flows that had carried hundreds of MB.
//!
//! The application reads everything the client sends, then resets the
//! connection; both edges must count the bytes that reached it.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const N: usize = 300_000;

/// Reads exactly `N` bytes, then closes with RST.
async fn read_then_reset_app() -> std::net::SocketAddr {
    raw_app(|mut s| async move {
        let mut buf = vec![0u8; N];
        if s.read_exact(&mut buf).await.is_ok() {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
    })
    .await
}

async fn counted_after_reset(transport: &'static str) {
    let mesh = Mesh::new();
    let app = read_then_reset_app().await;
    let (server, client) = edge_pair(&mesh, app, "sink", "tcp", transport).await;

    let mut s = TcpStream::connect(client.outbound[0].0).await.unwrap();
    s.write_all(&vec![7u8; N]).await.unwrap();
    // The reset comes back through both edges.
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the connection ends");
    assert!(end.is_err() || end.unwrap() == 0);

    let counted = |admin, direction: &'static str, flow: &'static str| async move {
        let (_, m) = admin_get(admin, "/metrics").await;
        let prefix = format!(
            "ferry_tcp_bytes_total{{direction=\"{direction}\",transport=\"{transport}\",flow=\"{flow}\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    // The server edge's flow labels are not what this test is about (the
    // application sent nothing back): both flows together must be N.
    let inbound = || async {
        Some(
            counted(server.admin, "inbound", "sent").await.unwrap_or(0)
                + counted(server.admin, "inbound", "received")
                    .await
                    .unwrap_or(0),
        )
    };
    let ok = wait_until(Duration::from_secs(5), || async {
        counted(client.admin, "outbound", "sent").await == Some(N as u64)
            && inbound().await == Some(N as u64)
    })
    .await;
    assert!(
        ok,
        "{transport}: bytes before the reset: client edge sent {:?}, server edge carried {:?} (want {N})",
        counted(client.admin, "outbound", "sent").await,
        inbound().await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_before_a_reset_are_counted_quic() {
    counted_after_reset("quic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_before_a_reset_are_counted_h2() {
    counted_after_reset("h2").await;
}
