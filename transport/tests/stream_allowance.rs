//! The stream allowances a QUIC connection's two ends give each other: the
//! accepting end allows `max_concurrent_streams` bidirectional streams
//! (when that is below the allowance it starts with; the tunnel server
//! grows it from there, tested in tunnel.rs), the dialing end none (an HTTP/3 server never opens one), checked on a real
//! connection over loopback with the tunnel's own endpoint builders.

mod support;

use std::time::Duration;

use ferry_transport::tunnel::TunnelConfig;
use support::*;

/// Long enough for a stream credit to arrive over loopback, were there one.
const NO_CREDIT_WAIT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn server_allows_the_configured_streams_and_the_client_none() {
    init();
    let cfg = TunnelConfig {
        max_concurrent_streams: 3,
        ..test_config()
    };
    let pair = QuicPair::connect(&cfg).await;
    let (to_server, accepted) = (&pair.dialed, &pair.accepted);

    // The client may open exactly three streams at once.
    let mut open = Vec::new();
    for i in 0..3u8 {
        let (mut send, recv) = tokio::time::timeout(Duration::from_secs(5), to_server.open_bi())
            .await
            .expect("a stream within the allowance opens at once")
            .unwrap();
        send.write_all(&[i]).await.unwrap();
        open.push((send, recv));
    }
    assert!(
        tokio::time::timeout(NO_CREDIT_WAIT, to_server.open_bi())
            .await
            .is_err(),
        "a fourth concurrent stream opened"
    );
    // The server end can open no bidirectional stream towards the client.
    assert!(
        tokio::time::timeout(NO_CREDIT_WAIT, accepted.open_bi())
            .await
            .is_err(),
        "the dialing end allowed a server-initiated bidirectional stream"
    );
    // A stream ended in both directions gives its slot back.
    let (mut send, mut recv) = open.remove(0);
    send.finish().unwrap();
    let (mut server_send, mut server_recv) = accepted.accept_bi().await.unwrap();
    assert_eq!(server_recv.read_to_end(16).await.unwrap(), vec![0]);
    server_send.finish().unwrap();
    assert!(recv.read_to_end(16).await.unwrap().is_empty());
    drop((send, recv, server_send, server_recv));
    tokio::time::timeout(Duration::from_secs(5), to_server.open_bi())
        .await
        .expect("a slot comes back when a stream ends")
        .unwrap();
}
