//! Third-party HTTP clients as applications talking through two edges on
//! loopback (client edge with an explicit outbound listener → QUIC → server
//! edge → an HTTP/1.1 + h2c application), protocol detected (`auto`):
//! - curl, HTTP/1.1: GET with a custom header, a 1 MiB POST, error statuses
//!   passed through, a 5 MB download compared byte for byte;
//! - nghttp, h2c with prior knowledge: GET and POST, the application is
//!   spoken to in HTTP/2;
//! - h2load, h2c: hundreds of multiplexed requests, every status counted.
//!
//! Responses and status codes are checked, and the application sees the
//! client edge's SPIFFE ID.

use std::process::Command;
use std::time::Duration;

use interop_tests::apps::HttpApp;
use interop_tests::digest::{sha256, Pattern};
use interop_tests::pair::{EdgePair, PairSpec};
use interop_tests::prereq::tool;
use interop_tests::process::run;

/// The first JSON value in `text` (nghttp prints the body and its frame log
/// on one line).
fn json(text: &str) -> serde_json::Value {
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON body in {text:?}"));
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<serde_json::Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("not the app's JSON: {text:?}"))
}

/// curl with `args`; (status, HTTP version, body).
fn curl(args: &[&str], body_file: &std::path::Path) -> (u16, String, Vec<u8>) {
    let mut c = Command::new("curl");
    c.args(["-q", "-sS", "-m", "20", "-o"])
        .arg(body_file)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args);
    let out = run(c, Duration::from_secs(30)).ok("curl");
    let (code, version) = out.stdout.trim().split_once(' ').expect("curl -w output");
    let body = std::fs::read(body_file).unwrap_or_default();
    (code.parse().unwrap(), version.to_string(), body)
}

#[test]
fn curl_http1_through_two_edges() {
    tool("curl", "curl");
    let app = HttpApp::loopback();
    let pair = EdgePair::start(&PairSpec::loopback(app.addr, "auto"));
    let base = format!("http://{}", pair.listener);
    let out = pair.dir.path().join("body");

    let (code, version, body) = curl(
        &["-H", "x-test: from-curl", &format!("{base}/hello?x=1")],
        &out,
    );
    assert_eq!((code, version.as_str()), (200, "1.1"));
    let d = json(&String::from_utf8_lossy(&body));
    assert_eq!(d["method"], "GET");
    assert_eq!(d["path"], "/hello");
    assert_eq!(d["query"], "x=1");
    assert_eq!(d["version"], "HTTP/1.1", "the app is spoken to in HTTP/1.1");
    assert_eq!(d["x_test"], "from-curl");
    assert_eq!(d["client_id"], pair.client_identity.id.as_str());

    let mut upload = vec![0u8; 1 << 20];
    Pattern::new(3).fill(&mut upload);
    let up = pair.dir.path().join("upload");
    std::fs::write(&up, &upload).unwrap();
    let (code, _, body) = curl(
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", up.display()),
            &format!("{base}/upload"),
        ],
        &out,
    );
    assert_eq!(code, 200);
    let d = json(&String::from_utf8_lossy(&body));
    assert_eq!(d["method"], "POST");
    assert_eq!(d["body_len"], 1 << 20);
    assert_eq!(d["body_sha256"], sha256(&upload));

    for status in [404u16, 503] {
        let (code, _, body) = curl(&[&format!("{base}/status/{status}")], &out);
        assert_eq!(code, status, "the application's status passes through");
        assert_eq!(String::from_utf8_lossy(&body), format!("status {status}"));
    }

    let n = 5_000_000;
    let (code, _, body) = curl(&[&format!("{base}/bytes/{n}?seed=7")], &out);
    assert_eq!(code, 200);
    let mut expected = vec![0u8; n];
    Pattern::new(7).fill(&mut expected);
    assert_eq!(body.len(), n);
    assert!(body == expected, "the 5 MB download arrived intact");

    let ok = [("direction", "outbound"), ("transport", "quic")];
    let m = pair.client.metrics();
    let count = |class| {
        interop_tests::metrics::metric(
            &m,
            "ferry_requests_total",
            &[ok[0], ok[1], ("status_class", class)],
        )
    };
    assert_eq!(count("2xx"), 3.0, "{m}");
    assert_eq!(count("4xx"), 1.0);
    assert_eq!(count("5xx"), 1.0);
}

#[test]
fn nghttp_h2c_through_two_edges() {
    tool("nghttp", "nghttp2-client");
    let app = HttpApp::loopback();
    let pair = EdgePair::start(&PairSpec::loopback(app.addr, "auto"));
    let base = format!("http://{}", pair.listener);

    let nghttp = |args: &[&str]| {
        let mut c = Command::new("nghttp");
        c.args(["-v", "-t", "20"]).args(args);
        run(c, Duration::from_secs(30)).ok("nghttp").stdout
    };
    let out = nghttp(&["-H", "x-test: from-nghttp", &format!("{base}/h2?y=2")]);
    assert!(out.contains(":status: 200"), "{out}");
    let d = json(&out);
    assert_eq!(d["path"], "/h2");
    assert_eq!(d["query"], "y=2");
    assert_eq!(d["version"], "HTTP/2.0", "the app is spoken to in h2c");
    assert_eq!(d["x_test"], "from-nghttp");
    assert_eq!(d["client_id"], pair.client_identity.id.as_str());

    let data = pair.dir.path().join("post");
    let mut upload = vec![0u8; 300_000];
    Pattern::new(5).fill(&mut upload);
    std::fs::write(&data, &upload).unwrap();
    let out = nghttp(&["-d", data.to_str().unwrap(), &format!("{base}/post")]);
    assert!(out.contains(":status: 200"), "{out}");
    let d = json(&out);
    assert_eq!(d["method"], "POST");
    assert_eq!(d["body_len"], 300_000);
    assert_eq!(d["body_sha256"], sha256(&upload));

    let out = nghttp(&[&format!("{base}/status/418")]);
    assert!(out.contains(":status: 418"), "{out}");
}

/// The `h2load` summary numbers: (succeeded, failed, errored, 2xx, 4xx).
/// h2load counts a 4xx/5xx answer as "failed" (but not "errored").
fn h2load(url: &str, n: usize) -> (usize, usize, usize, usize, usize) {
    let mut c = Command::new("h2load");
    c.args(["-n", &n.to_string(), "-c", "4", "-m", "16", "-T", "20", url]);
    let out = run(c, Duration::from_secs(60)).ok("h2load").stdout;
    // e.g. "requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored, 0 timeout"
    let num = |prefix: &str, word: &str| -> usize {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {out}"));
        line.split(',')
            .find_map(|part| {
                let (n, w) = part.trim().split_once(' ')?;
                (w == word).then(|| n.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {word:?} in {line:?}"))
    };
    (
        num("requests:", "succeeded"),
        num("requests:", "failed"),
        num("requests:", "errored"),
        num("status codes:", "2xx"),
        num("status codes:", "4xx"),
    )
}

#[test]
fn h2load_h2c_through_two_edges() {
    tool("h2load", "nghttp2-client");
    let app = HttpApp::loopback();
    let pair = EdgePair::start(&PairSpec::loopback(app.addr, "auto"));
    let base = format!("http://{}", pair.listener);

    assert_eq!(h2load(&format!("{base}/load"), 400), (400, 0, 0, 400, 0));
    assert_eq!(
        h2load(&format!("{base}/status/404"), 100),
        (0, 100, 0, 0, 100),
        "every 404 arrives as a 404"
    );
    let inbound_ok = pair.server.metric(
        "ferry_requests_total",
        &[("direction", "inbound"), ("status_class", "2xx")],
    );
    assert_eq!(inbound_ok, 400.0, "every request crossed both edges");
}
