//! Both ends of a QUIC tunnel connection ask each other for a short
//! acknowledgement delay (the ACK_FREQUENCY extension): checked on a real
//! connection over loopback built with the tunnel's own endpoint builders,
//! from quinn's per-frame counters on each end.

mod support;

use std::time::Duration;

use support::*;

#[tokio::test]
async fn both_ends_request_their_ack_delay() {
    init();
    let cfg = test_config();
    assert!(
        cfg.ack_delay < Duration::from_millis(25),
        "quinn's own is 25 ms"
    );
    let pair = QuicPair::connect(&cfg).await;
    let (dialed, accepted) = (&pair.dialed, &pair.accepted);

    // One exchange of data, so both ends have sent 1-RTT packets.
    let (mut send, mut recv) = dialed.open_bi().await.unwrap();
    send.write_all(b"ping").await.unwrap();
    send.finish().unwrap();
    let (mut server_send, mut server_recv) = accepted.accept_bi().await.unwrap();
    assert_eq!(server_recv.read_to_end(16).await.unwrap(), b"ping");
    server_send.write_all(b"pong").await.unwrap();
    server_send.finish().unwrap();
    assert_eq!(recv.read_to_end(16).await.unwrap(), b"pong");

    let exchanged = wait_until(Duration::from_secs(5), || {
        let (d, a) = (dialed.stats(), accepted.stats());
        d.frame_tx.ack_frequency >= 1
            && a.frame_rx.ack_frequency >= 1
            && a.frame_tx.ack_frequency >= 1
            && d.frame_rx.ack_frequency >= 1
    })
    .await;
    let (d, a) = (dialed.stats(), accepted.stats());
    assert!(
        exchanged,
        "ACK_FREQUENCY frames: dialing end sent {} received {}, accepting end sent {} received {}",
        d.frame_tx.ack_frequency,
        d.frame_rx.ack_frequency,
        a.frame_tx.ack_frequency,
        a.frame_rx.ack_frequency
    );
}
