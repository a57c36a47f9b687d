//! iperf3 through two edges as opaque TCP (`protocol = "tcp"`), in two
//! network namespaces joined by a veth pair: the iperf3 server on host b
//! behind the server edge, the client on host a connecting to the client
//! edge's listener; a normal run (client sends) and a reverse run (`-R`,
//! server sends). Alongside the first run, a 64 MiB integrity-checked
//! transfer to a TCP echo application crosses the same edges.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_netem::TwoHosts;
use interop_tests::apps::TcpEcho;
use interop_tests::bulk::echo_transfer;
use interop_tests::pair::{EdgePair, PairSpec};
use interop_tests::prereq::{root, tool};
use interop_tests::process::{run, Daemon};

const IPERF_PORT: u16 = 5201;
const BULK: u64 = 64 << 20;

/// Runs the iperf3 client in `a` for 2 s; (bytes sent by the sender, bytes
/// counted by the receiver).
fn iperf3(hosts: &TwoHosts, listener: SocketAddr, reverse: bool) -> (f64, f64) {
    let mut c = hosts.a.command("iperf3");
    c.args(["-c", &listener.ip().to_string()])
        .args(["-p", &listener.port().to_string()])
        .args(["-t", "2", "-J", "--connect-timeout", "5000"]);
    if reverse {
        c.arg("-R");
    }
    let out = run(c, Duration::from_secs(30));
    let j: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 -J output ({e}): {}\n{}", out.stdout, out.stderr));
    assert!(
        j["error"].is_null() && out.status.success(),
        "iperf3 (reverse: {reverse}) failed: {}",
        j["error"]
    );
    let bytes = |k: &str| j["end"][k]["bytes"].as_f64().unwrap_or(0.0);
    (bytes("sum_sent"), bytes("sum_received"))
}

#[test]
fn iperf3_and_bulk_transfer_through_two_edges() {
    root();
    tool("iperf3", "iperf3");
    let hosts = TwoHosts::create("iperf").unwrap();
    let ip_b = hosts.ip_b;

    let mut srv = hosts.b.command("iperf3");
    srv.args(["-s", "-p", &IPERF_PORT.to_string()]);
    let logs = tempfile::tempdir().unwrap();
    let _iperf_server = Daemon::spawn("iperf3 server", srv, &logs.path().join("iperf3.log"));
    let echo = TcpEcho::start(
        hosts
            .b
            .tcp_listen(SocketAddr::new("127.0.0.1".parse().unwrap(), 0))
            .unwrap(),
    );
    let pair = EdgePair::start(&PairSpec::hosts(
        &hosts,
        vec![
            (SocketAddr::new(ip_b.into(), IPERF_PORT), "tcp"),
            (SocketAddr::new(ip_b.into(), echo.addr.port()), "tcp"),
        ],
    ));
    // The iperf3 server was started first; give it a moment to listen.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hosts
        .b
        .tcp_connect(
            SocketAddr::new("127.0.0.1".parse().unwrap(), IPERF_PORT),
            Duration::from_secs(1),
        )
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "iperf3 -s never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let bulk_stream = hosts
        .a
        .tcp_connect(pair.listeners[1], Duration::from_secs(5))
        .unwrap();
    let bulk =
        std::thread::spawn(move || echo_transfer(bulk_stream, BULK, 42, Duration::from_secs(20)));
    let (sent, received) = iperf3(&hosts, pair.listeners[0], false);
    let transfer = bulk.join().expect("bulk transfer");
    transfer.assert_intact("64 MiB alongside iperf3");
    assert_eq!(transfer.sent, BULK);
    let at_app = echo.wait_finished(1, Duration::from_secs(5));
    assert_eq!(at_app.len(), 1);
    assert_eq!(
        at_app[0].sha256, transfer.sent_sha256,
        "what the app received"
    );

    assert!(sent > 1e6, "iperf3 sent {sent} bytes in 2 s");
    assert!(
        received > 0.5 * sent && received <= sent,
        "iperf3: the server received {received} of {sent} bytes"
    );
    let (sent_r, received_r) = iperf3(&hosts, pair.listeners[0], true);
    assert!(sent_r > 1e6, "iperf3 -R sent {sent_r} bytes in 2 s");
    assert!(
        received_r > 0.5 * sent_r && received_r <= sent_r,
        "iperf3 -R: the client received {received_r} of {sent_r} bytes"
    );
    eprintln!(
        "iperf3: {:.0} Mbit/s, -R: {:.0} Mbit/s; 64 MiB echo in {:?}",
        received * 8.0 / 2e6,
        received_r * 8.0 / 2e6,
        transfer.elapsed
    );

    // iperf3 uses a control and a data connection per run; with the bulk
    // transfer that is at least 5 opaque streams, all over QUIC.
    let quic = [("direction", "outbound"), ("transport", "quic")];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = pair.client.metric("ferry_tcp_connections_total", &quic);
        if n >= 5.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "opaque TCP connections over QUIC: {n}\n{}\n{:#?}",
            pair.client.metrics(),
            pair.client.access_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let carried = pair.client.metric(
        "ferry_tcp_bytes_total",
        &[quic[0], quic[1], ("flow", "sent")],
    );
    assert!(
        carried >= received + BULK as f64,
        "the client edge carried {carried} bytes towards the peer"
    );
}
