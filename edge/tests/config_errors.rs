//! Bad configuration files are refused with a message naming the file, the
//! line and the field: the edge configuration (`EdgeConfig::load`) and the
//! mesh file (`discovery::mesh_file::load`). Errors found after parsing
//! (duplicates, port 0, bad names) point at the offending entry of an array
//! of tables, not at the first line that happens to use the same key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_edge::config::EdgeConfig;
use ferry_edge::discovery::mesh_file;

/// A valid edge configuration: 10 lines.
const BASE: &str = "\
[identity]
cert = \"c.pem\"
key = \"k.pem\"
bundles = [\"b.pem\"]
[tunnel]
listen = \"127.0.0.1:0\"
[admin]
listen = \"127.0.0.1:0\"
[discovery]
mesh_file = \"mesh.toml\"
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Loads `text` as an edge config; returns the error message.
fn edge_error(text: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "edge.toml", text);
    let err = EdgeConfig::load(&p)
        .expect_err("must be refused")
        .to_string();
    (err, p.display().to_string())
}

fn mesh_error(text: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "mesh.toml", text);
    let err = mesh_file::load(&p)
        .expect_err("must be refused")
        .to_string();
    (err, p.display().to_string())
}

/// The message names the file, the line (either toml's "at line N" or our
/// "line N:") and the field.
#[track_caller]
fn assert_names(err: &str, path: &str, line: usize, field: &str) {
    assert!(err.starts_with(&format!("{path}: ")), "file: {err}");
    assert!(
        err.contains(&format!("at line {line},")) || err.contains(&format!(": line {line}: ")),
        "line {line}: {err}"
    );
    assert!(err.contains(field), "field {field:?}: {err}");
}

#[test]
fn the_base_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "edge.toml", BASE);
    let cfg = EdgeConfig::load(&p).unwrap();
    // Relative paths resolve against the file's directory.
    assert_eq!(
        cfg.identity.as_ref().expect("identity").cert,
        dir.path().join("c.pem")
    );
    assert_eq!(
        cfg.discovery.mesh_file.as_deref(),
        Some(dir.path().join("mesh.toml").as_path())
    );
}

#[test]
fn toml_syntax_error() {
    let (err, path) = edge_error(&format!("{BASE}[outbound\ndetect_timeout = \"1s\"\n"));
    assert_names(&err, &path, 11, "[outbound");
    let (err, path) = edge_error(&BASE.replace("key = \"k.pem\"", "key = \"k.pem"));
    assert_names(&err, &path, 3, "key");
}

#[test]
fn unknown_field_is_an_error() {
    let (err, path) = edge_error(&format!(
        "{BASE}[[outbound.listeners]]\nlistn = \"127.0.0.1:9000\"\nservice = \"a.b:1\"\n"
    ));
    assert_names(&err, &path, 12, "unknown field `listn`");
    assert!(err.contains("`listen`"), "suggests the known fields: {err}");
    // At the top level too.
    let (err, path) = edge_error(&format!("shutdown_grase = \"1s\"\n{BASE}"));
    assert_names(&err, &path, 1, "unknown field `shutdown_grase`");
}

#[test]
fn invalid_spiffe_id_in_allow_ids() {
    let (err, path) = edge_error(&format!(
        "{BASE}[[inbound.ports]]\nport = 80\nallow_ids = [\"spiffe://cluster.local/ns/a/sa/b\", \"spiffe://Bad Domain/x\"]\n"
    ));
    assert_names(&err, &path, 13, "allow_ids");
    assert!(err.contains("Bad Domain"), "{err}");
    let (err, path) = edge_error(&format!(
        "{BASE}[[inbound.ports]]\nport = 80\nallow_ids = [\"https://cluster.local/ns/a\"]\n"
    ));
    assert_names(&err, &path, 13, "allow_ids");
}

#[test]
fn invalid_socket_addresses() {
    let (err, path) = edge_error(&BASE.replace(
        "[tunnel]\nlisten = \"127.0.0.1:0\"",
        "[tunnel]\nlisten = \"localhost:4143\"",
    ));
    assert_names(&err, &path, 6, "listen");
    assert!(err.contains("socket address"), "{err}");
    let (err, path) = edge_error(&format!(
        "{BASE}[[outbound.listeners]]\nlisten = \"127.0.0.1:99999\"\nservice = \"a.b:1\"\n"
    ));
    assert_names(&err, &path, 12, "listen");
}

#[test]
fn missing_identity_section() {
    let text = BASE.replace(
        "[identity]\ncert = \"c.pem\"\nkey = \"k.pem\"\nbundles = [\"b.pem\"]\n",
        "",
    );
    let (err, path) = edge_error(&text);
    assert_names(&err, &path, 1, "identity");
    assert!(err.contains("no certificate source"), "{err}");
    // And a missing required key inside it.
    let (err, path) = edge_error(&BASE.replace("key = \"k.pem\"\n", ""));
    assert!(err.starts_with(&format!("{path}: ")), "{err}");
    assert!(err.contains("missing field `key`"), "{err}");
    assert!(err.contains("line "), "{err}");
    // An empty bundle list parses but is refused, at its line.
    let (err, path) = edge_error(&BASE.replace("[\"b.pem\"]", "[]"));
    assert_names(&err, &path, 4, "identity.bundles");
}

#[test]
fn duplicate_listener_address_names_the_second_listener() {
    // The `[tunnel]` and `[admin]` `listen` lines come first: the error must
    // point at the duplicate, line 19, not at line 6.
    let (err, path) = edge_error(&format!(
        "{BASE}[[outbound.listeners]]\nlisten = \"127.0.0.1:9000\"\nservice = \"a.b:1\"\n\
         [[outbound.listeners]]\nservice = \"c.d:1\"\nlisten = \"127.0.0.1:9001\"\n\
         [[outbound.listeners]]\n# the same port again\nlisten = \"127.0.0.1:9000\"\nservice = \"e.f:1\"\n"
    ));
    assert_names(&err, &path, 19, "outbound.listeners[2].listen");
    assert!(
        err.contains("127.0.0.1:9000 is used by two listeners"),
        "{err}"
    );
}

#[test]
fn inbound_port_zero_names_its_entry() {
    let (err, path) = edge_error(&format!(
        "{BASE}[[inbound.ports]]\nport = 80\n[[inbound.ports]]\nport = 0\n"
    ));
    assert_names(&err, &path, 14, "inbound.ports[1].port");
}

const ENDPOINT: &str = "[[services.endpoints]]\naddress = \"127.0.0.1:1\"\ntunnel = \"127.0.0.1:2\"\nid = \"spiffe://t/ns/a/sa/b\"\n";

#[test]
fn invalid_identity_header_is_refused() {
    let text = format!("{BASE}[inbound]\nidentity_header = \"x client id\"\n");
    let (err, path) = edge_error(&text);
    assert_names(&err, &path, 12, "inbound.identity_header");
    assert!(err.contains("not an HTTP header name"), "{err}");
}

fn service(name: &str, namespace: &str, port: u16) -> String {
    format!(
        "[[services]]\nname = \"{name}\"\nnamespace = \"{namespace}\"\nport = {port}\n{ENDPOINT}"
    )
}

#[test]
fn mesh_file_good() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "mesh.toml",
        &(service("a", "default", 80) + &service("b", "default", 80)),
    );
    let s = mesh_file::load(&p).unwrap();
    assert_eq!(s.services.len(), 2);
    assert_eq!(s.service("b.default:80").unwrap().endpoints.len(), 1);
}

#[test]
fn mesh_file_bad_service_name() {
    // Each service block is 8 lines: the second one's `name` is line 10.
    let (err, path) =
        mesh_error(&(service("ok", "default", 80) + &service("Bad_Name", "default", 80)));
    assert_names(&err, &path, 10, "services[1].name");
    assert!(err.contains("Bad_Name"), "{err}");
    let (err, path) = mesh_error(&(service("ok", "default", 80) + &service("ok2", "Prod", 80)));
    assert_names(&err, &path, 11, "services[1].namespace");
    let (err, path) = mesh_error(&(service("ok", "default", 80) + &service("ok2", "default", 0)));
    assert_names(&err, &path, 12, "services[1].port");
}

#[test]
fn mesh_file_duplicate_service() {
    let (err, path) = mesh_error(
        &(service("a", "default", 80)
            + &service("b", "default", 80)
            + &service("a", "default", 80)),
    );
    assert_names(&err, &path, 18, "services[2].name");
    assert!(err.contains("a.default:80 is declared twice"), "{err}");
    // The same name on another port is another service.
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "mesh.toml",
        &(service("a", "default", 80) + &service("a", "default", 81)),
    );
    assert_eq!(mesh_file::load(&p).unwrap().services.len(), 2);
}

#[test]
fn mesh_file_invalid_endpoint_id() {
    let bad = ENDPOINT.replace("spiffe://t/ns/a/sa/b", "http://t/ns/a");
    let (err, path) = mesh_error(&format!(
        "[[services]]\nname = \"a\"\nnamespace = \"default\"\nport = 80\n{ENDPOINT}{bad}"
    ));
    assert_names(&err, &path, 12, "id");
    assert!(err.contains("spiffe://"), "{err}");
    // And an unknown endpoint field.
    let (err, path) = mesh_error(&format!(
        "[[services]]\nname = \"a\"\nnamespace = \"default\"\nport = 80\n{}",
        ENDPOINT.replace("tunnel =", "tunel =")
    ));
    assert_names(&err, &path, 7, "unknown field `tunel`");
}

#[test]
fn unreadable_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = EdgeConfig::load(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );
    let err = mesh_file::load(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );
}

/// `BASE` with `line` added to its `[tunnel]` table (as line 6).
fn with_tunnel_line(line: &str) -> String {
    BASE.replacen("[tunnel]\n", &format!("[tunnel]\n{line}\n"), 1)
}

#[test]
fn tunnel_stream_limit_out_of_range_is_refused() {
    for bad in ["0", "10001"] {
        let (err, path) = edge_error(&with_tunnel_line(&format!(
            "max_concurrent_streams = {bad}"
        )));
        assert_names(&err, &path, 6, "tunnel.max_concurrent_streams");
        assert!(err.contains(&format!("{bad} is out of range")), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "edge.toml",
        &with_tunnel_line("max_concurrent_streams = 64"),
    );
    let cfg = EdgeConfig::load(&p).unwrap();
    assert_eq!(cfg.tunnel.max_concurrent_streams, Some(64));
}

#[test]
fn tunnel_pool_idle_timeout_out_of_range_is_refused() {
    let (err, path) = edge_error(&with_tunnel_line("pool_idle_timeout = \"50ms\""));
    assert_names(&err, &path, 6, "tunnel.pool_idle_timeout");
    assert!(err.contains("50ms is out of range: 100ms to 24h"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "edge.toml",
        &with_tunnel_line("pool_idle_timeout = \"2s\""),
    );
    let cfg = EdgeConfig::load(&p).unwrap();
    assert_eq!(cfg.tunnel.pool_idle_timeout, Some(Duration::from_secs(2)));
}

#[test]
fn tunnel_udp_payload_out_of_range_is_refused() {
    let (err, path) = edge_error(&with_tunnel_line("max_udp_payload = 1000"));
    assert_names(&err, &path, 6, "tunnel.max_udp_payload");
    assert!(err.contains("1000 is out of range: 1200 to 65527"), "{err}");
}

#[test]
fn tunnel_early_data_is_on_unless_turned_off_and_must_be_a_bool() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "on.toml",
        &with_tunnel_line("max_udp_payload = 1452"),
    );
    assert!(EdgeConfig::load(&p).unwrap().tunnel.early_data);
    let p = write(
        dir.path(),
        "off.toml",
        &with_tunnel_line("early_data = false"),
    );
    assert!(!EdgeConfig::load(&p).unwrap().tunnel.early_data);
    let (err, path) = edge_error(&with_tunnel_line("early_data = \"yes\""));
    assert_names(&err, &path, 6, "early_data");
}

#[test]
fn tunnel_cipher_suites_default_to_all_three_and_bad_lists_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "default.toml", &with_tunnel_line(""));
    assert_eq!(
        EdgeConfig::load(&p).unwrap().tunnel.cipher_suites,
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
    );
    let p = write(
        dir.path(),
        "aes256.toml",
        &with_tunnel_line("cipher_suites = [\"TLS_AES_256_GCM_SHA384\"]"),
    );
    assert_eq!(
        EdgeConfig::load(&p).unwrap().tunnel.cipher_suites,
        ["TLS_AES_256_GCM_SHA384"]
    );
    let (err, path) = edge_error(&with_tunnel_line(
        "cipher_suites = [\"TLS_AES_256_CBC_SHA\"]",
    ));
    assert_names(&err, &path, 6, "tunnel.cipher_suites");
    assert!(
        err.contains("unknown TLS 1.3 cipher suite \"TLS_AES_256_CBC_SHA\""),
        "{err}"
    );
    let (err, path) = edge_error(&with_tunnel_line("cipher_suites = []"));
    assert_names(&err, &path, 6, "tunnel.cipher_suites");
    assert!(err.contains("at least one"), "{err}");
}
