//! End-to-end tunnel tests over real sockets on 127.0.0.1, for each
//! transport: bulk integrity, many concurrent streams on one connection,
//! a second connection when the first is full, half-close and reset
//! propagation.

mod support;

use std::time::Duration;

use ferry_transport::tunnel::{PeerKey, TunnelClient, TunnelConfig};
use ferry_transport::TransportKind;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_ID: &str = "spiffe://test.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://test.local/ns/default/sa/client";

struct Pair {
    _server: ferry_transport::tunnel::TunnelServer,
    client: TunnelClient,
    peer: PeerKey,
    seen: Seen,
}

async fn pair(kind: TransportKind) -> Pair {
    pair_with(TunnelConfig {
        force_transport: Some(kind),
        ..test_config()
    })
    .await
}

/// A tunnel server and a client to it, both with `cfg` (a server serves
/// both transports whatever `cfg.force_transport` says).
async fn pair_with(cfg: TunnelConfig) -> Pair {
    init();
    let pki = Pki::new("test.local");
    let (server, seen) = connect_server(tls(pki.store(SERVER_ID, &[])), cfg.clone()).await;
    let client = TunnelClient::new(tls(pki.store(CLIENT_ID, &[])), cfg).unwrap();
    let peer = PeerKey::new(server.local_addr(), id(SERVER_ID));
    Pair {
        _server: server,
        client,
        peer,
        seen,
    }
}

async fn bulk(kind: TransportKind) {
    const LEN: u64 = 256 << 20;
    let p = pair(kind).await;
    let (target, mut results) = sink_source_server(LEN, 7).await;
    let local = forwarder(p.client.clone(), p.peer.clone(), target).await;
    let tcp = dial(local).await;
    let (mut r, mut w) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let mut rng = Xorshift::new(11);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = LEN;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..k]);
            w.write_all(&buf[..k]).await.unwrap();
            left -= k as u64;
        }
        w.shutdown().await.unwrap();
    });
    let reader = tokio::spawn(async move {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = r.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
            h.update(&buf[..k]);
        }
        (n, <[u8; 32]>::from(h.finalize()))
    });
    writer.await.unwrap();
    let (down_n, down_hash) = reader.await.unwrap();
    let (up_n, up_hash) = results.recv().await.unwrap();
    assert_eq!(up_n, LEN, "client→server byte count");
    assert_eq!(
        up_hash,
        expected_hash(LEN, 11),
        "client→server bytes corrupted"
    );
    assert_eq!(down_n, LEN, "server→client byte count");
    assert_eq!(
        down_hash,
        expected_hash(LEN, 7),
        "server→client bytes corrupted"
    );
    let pooled = p.client.pooled(&p.peer);
    assert_eq!(pooled.len(), 1);
    assert_eq!(pooled[0].transport(), kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_256mib_each_way_quic() {
    bulk(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_256mib_each_way_h2() {
    bulk(TransportKind::H2).await;
}

async fn thousand_streams(kind: TransportKind) {
    let p = pair(kind).await;
    let echo = echo_server().await;
    let local = forwarder(p.client.clone(), p.peer.clone(), echo).await;
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        tasks.push(tokio::spawn(async move {
            let mut s = dial(local).await;
            let msg = format!("hello {i}");
            s.write_all(msg.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).await.unwrap();
            assert_eq!(back, msg);
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("stream finished in time")
            .unwrap();
    }
    // The pool fills a connection up to the stream limit before it dials
    // another: 1,000 streams need at most this many connections.
    let most = 1000usize.div_ceil(test_config().max_concurrent_streams as usize);
    let pooled = p.client.pooled(&p.peer);
    assert!(
        (1..=most).contains(&pooled.len()),
        "{} connections carried 1,000 streams (at most {most} expected)",
        pooled.len()
    );
    assert_eq!(p.seen.ids().len(), 1000);
    assert!(p.seen.ids().iter().all(|i| i.to_string() == CLIENT_ID));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_streams_quic() {
    thousand_streams(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_streams_h2() {
    thousand_streams(TransportKind::H2).await;
}

/// With every stream slot of the pooled connection taken, the next stream
/// goes to a second connection to the same peer, and works.
async fn full_connection(kind: TransportKind) {
    let Pair {
        _server,
        client,
        peer,
        ..
    } = pair_with(TunnelConfig {
        max_concurrent_streams: 2,
        force_transport: Some(kind),
        ..test_config()
    })
    .await;
    let echo = echo_server().await;
    let meta = ferry_transport::tunnel::ConnectMeta::default();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(client.connect_tcp(&peer, echo, &meta).await.unwrap());
    }
    assert_eq!(
        client.pooled(&peer).len(),
        1,
        "{kind:?}: two streams, one connection"
    );
    let third = tokio::time::timeout(
        Duration::from_secs(10),
        echo_once(&client, &peer, echo, b"third"),
    )
    .await
    .expect("a stream beyond a full connection is not left waiting")
    .unwrap();
    assert_eq!(third, kind);
    assert_eq!(
        client.pooled(&peer).len(),
        2,
        "{kind:?}: a second connection"
    );
    // The held streams still work.
    echo_through_each(held).await;
}

/// Sends a few bytes through each held stream to an echo server, ends it,
/// and checks the bytes come back.
async fn echo_through_each(held: Vec<ferry_transport::tunnel::tcp_tunnel::TcpTunnel>) {
    for mut t in held {
        t.send
            .send_data(bytes::Bytes::from_static(b"held"))
            .await
            .unwrap();
        t.send.finish().await.unwrap();
        let mut got = Vec::new();
        while let Some(b) = t.recv.data().await.unwrap() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"held");
    }
}

/// An accepted QUIC connection starts by allowing a few streams and grows
/// the allowance while they are in use: 200 streams held open at once all
/// open, on one connection (without the growth the 33rd would wait for
/// credit until its connect timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_streams_grow_the_allowance_of_one_quic_connection() {
    const HELD: usize = 200;
    assert!(HELD <= test_config().max_concurrent_streams as usize);
    assert!(HELD > ferry_transport::tunnel::stream_allowance::INITIAL as usize);
    let Pair {
        _server,
        client,
        peer,
        ..
    } = pair(TransportKind::Quic).await;
    let echo = echo_server().await;
    let meta = ferry_transport::tunnel::ConnectMeta::default();
    let mut held = Vec::new();
    for i in 0..HELD {
        let t = tokio::time::timeout(
            Duration::from_secs(10),
            client.connect_tcp(&peer, echo, &meta),
        )
        .await
        .unwrap_or_else(|_| panic!("stream {i} did not open within 10 s"))
        .unwrap();
        held.push(t);
    }
    assert_eq!(
        client.pooled(&peer).len(),
        1,
        "{HELD} streams, one connection"
    );
    echo_through_each(held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_makes_the_pool_dial_another_quic() {
    full_connection(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_makes_the_pool_dial_another_h2() {
    full_connection(TransportKind::H2).await;
}

/// The client half-closes first; the server still answers afterwards. Then
/// the server half-closes first; the client can still send afterwards.
async fn half_close(kind: TransportKind) {
    let p = pair(kind).await;
    // Target: reads until EOF, then replies with what it got, reversed, and closes.
    let l = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let target = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        got.reverse();
        s.write_all(&got).await.unwrap();
        s.shutdown().await.unwrap();
        // Second connection: the server speaks and closes its side first,
        // then keeps reading what the client sends afterwards.
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"banner").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"late data after server FIN");
    });
    let local = forwarder(p.client.clone(), p.peer.clone(), target).await;

    let mut s = dial(local).await;
    s.write_all(b"abc").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"cba");

    let mut s = dial(local).await;
    let mut banner = Vec::new();
    s.read_to_end(&mut banner).await.unwrap();
    assert_eq!(banner, b"banner");
    s.write_all(b"late data after server FIN").await.unwrap();
    s.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_each_direction_quic() {
    half_close(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_each_direction_h2() {
    half_close(TransportKind::H2).await;
}

/// A reset by the target reaches the client as a reset, and a reset by the
/// client reaches the target as a reset.
async fn reset_propagation(kind: TransportKind) {
    let p = pair(kind).await;
    let l = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let target = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<std::io::ErrorKind>();
    tokio::spawn(async move {
        // 1: the target resets after reading a byte.
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        // 2: the client resets; the target must see ECONNRESET.
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 16];
        let kind = loop {
            match s.read(&mut buf).await {
                Ok(0) => break std::io::ErrorKind::UnexpectedEof,
                Ok(_) => continue,
                Err(e) => break e.kind(),
            }
        };
        tx.send(kind).unwrap();
    });
    let local = forwarder(p.client.clone(), p.peer.clone(), target).await;

    let mut s = dial(local).await;
    s.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("reset arrives promptly");
    assert_eq!(
        r.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "client sees the target's reset"
    );

    let mut s = dial(local).await;
    s.write_all(b"y").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let seen = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("target notices promptly")
        .unwrap();
    assert_eq!(
        seen,
        std::io::ErrorKind::ConnectionReset,
        "target sees the client's reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_propagates_both_ways_quic() {
    reset_propagation(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_propagates_both_ways_h2() {
    reset_propagation(TransportKind::H2).await;
}
