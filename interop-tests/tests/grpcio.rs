//! grpcio (Python) client and server talking through two edges on loopback
//! (client edge outbound listener → QUIC → server edge → grpcio server),
//! with no generated code: a unary echo (its metadata shows the caller's
//! SPIFFE ID, added by the server edge), a 1 MiB unary message, an error
//! status with details, a server-streaming call and a bidirectional stream.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use interop_tests::pair::{EdgePair, PairSpec};
use interop_tests::prereq::{python, script};
use interop_tests::process::{run, Daemon};

#[test]
fn grpcio_through_two_edges() {
    let py = python(&["grpc"]);
    let logs = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&py);
    cmd.arg(script("grpc_echo.py")).arg("server");
    let mut server = Daemon::spawn("grpcio server", cmd, &logs.path().join("grpc.log"));
    let line = server.first_line(Duration::from_secs(20));
    let port = serde_json::from_str::<serde_json::Value>(&line).unwrap()["port"]
        .as_u64()
        .unwrap_or_else(|| panic!("grpcio server printed no port: {line}"));
    let app: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    for protocol in ["auto", "grpc"] {
        let pair = EdgePair::start(&PairSpec::loopback(app, protocol));
        let mut c = Command::new(&py);
        c.arg(script("grpc_echo.py"))
            .arg("client")
            .args(["--target", &pair.listener.to_string()]);
        let out = run(c, Duration::from_secs(60)).ok("grpcio client");
        let r: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("client result ({e}): {}\n{}", out.stdout, out.stderr));

        assert_eq!(r["echo"]["response"], "ping", "{protocol}: {r}");
        assert_eq!(r["echo"]["code"], "OK");
        assert_eq!(
            r["echo"]["client_id"],
            pair.client_identity.id.as_str(),
            "the server sees the caller's SPIFFE ID"
        );
        assert_eq!(r["big_echo"]["received"], 1 << 20);
        assert_eq!(
            r["big_echo"]["received_sha256"],
            r["big_echo"]["sent_sha256"]
        );
        assert_eq!(r["fail"]["code"], "NOT_FOUND", "{r}");
        assert_eq!(r["fail"]["details"], "no such thing");
        let count: Vec<String> = (0..50).map(|i| format!("item-{i}")).collect();
        assert_eq!(r["count"], serde_json::json!(count));
        let chat: Vec<String> = (0..20)
            .map(|i| format!("message-{i}").chars().rev().collect())
            .collect();
        assert_eq!(r["chat"], serde_json::json!(chat));

        // Five calls, each one request through both edges over QUIC (a
        // request is counted when its stream has ended on both sides).
        let calls = pair.server.metric_reaches(
            "ferry_requests_total",
            &[("direction", "inbound"), ("transport", "quic")],
            5.0,
            Duration::from_secs(5),
        );
        assert_eq!(calls, 5.0, "{protocol}");
        assert!(server.running(), "the grpcio server is still up");
    }
}
