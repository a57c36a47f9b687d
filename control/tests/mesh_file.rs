//! The mesh file: a valid file becomes services, endpoints and per-identity
//! policies; every kind of mistake is refused with the file, the line and
//! the field, and all mistakes of a file are reported at once.

use std::path::PathBuf;
use std::time::Duration;

use ferry_control::api;
use ferry_control::mesh;
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::TrustDomain;

const HASH: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(td: &str) -> Self {
        ferry_transport::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::generate(&TrustDomain::new(td).unwrap(), Duration::from_secs(3600))
            .unwrap()
            .write(&dir.path().join("ca"), false)
            .unwrap();
        Self { dir }
    }

    fn write(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("mesh.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn base() -> String {
    format!(
        r#"trust_domain = "mesh.test"
[ca]
dir = "ca"

[[workloads]]
name = "api-1"
id = "spiffe://mesh.test/ns/prod/sa/api"
address = "10.0.0.1"
tunnel = "10.0.0.1:4143"
ports = {{ http = 8080 }}
token_sha256 = "{HASH}"

[[workloads]]
name = "api-2"
id = "spiffe://mesh.test/ns/prod/sa/api"
address = "10.0.0.2"
tunnel = "10.0.0.2:4143"
ports = {{ http = 9090 }}
token_sha256 = "{HASH}"

[[services]]
name = "api"
namespace = "prod"
addresses = ["10.96.0.1"]
workloads = ["api-1", "api-2"]
[[services.ports]]
port = 80
target_port = "http"
protocol = "http"
[[services.ports]]
port = 81
protocol = "tcp"

[[policies]]
service = "api.prod"
port = 80
allow_namespaces = ["web"]
"#
    )
}

#[test]
fn a_valid_file_becomes_services_and_policies() {
    let d = Dir::new("mesh.test");
    let loaded = mesh::load(&d.write(&base())).unwrap();
    let m = &loaded.mesh;
    assert_eq!(m.services.len(), 2);
    let http = &m.services["api.prod:80"];
    assert_eq!(http.protocol, api::Protocol::Http as i32);
    assert_eq!(http.addresses, vec!["10.96.0.1:80"]);
    let ends: Vec<(&str, &str)> = http
        .endpoints
        .iter()
        .map(|e| (e.address.as_str(), e.tunnel.as_str()))
        .collect();
    assert_eq!(
        ends,
        vec![
            ("10.0.0.1:8080", "10.0.0.1:4143"),
            ("10.0.0.2:9090", "10.0.0.2:4143")
        ],
        "named target ports resolve per workload"
    );
    let tcp = &m.services["api.prod:81"];
    assert_eq!(
        tcp.endpoints[0].address, "10.0.0.1:81",
        "no target port: the service port"
    );
    let id =
        ferry_transport::identity::SpiffeId::parse("spiffe://mesh.test/ns/prod/sa/api").unwrap();
    let policy = &m.policies[&id];
    let ports: Vec<u32> = policy.ports.iter().map(|p| p.port).collect();
    assert_eq!(
        ports,
        vec![8080, 9090],
        "the policy applies to each workload's target port"
    );
    assert_eq!(policy.ports[0].allow_namespaces, vec!["web"]);
    assert_eq!(
        m.control_id.to_string(),
        "spiffe://mesh.test/ns/ferry-system/sa/control"
    );
    assert_eq!(m.tokens.len(), 1);
}

fn error_of(text: &str) -> (String, String) {
    let d = Dir::new("mesh.test");
    let path = d.write(text);
    let err = mesh::load(&path).unwrap_err().to_string();
    (err, path.display().to_string())
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn each_mistake_names_file_line_and_field() {
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            base().replace(
                "workloads = [\"api-1\", \"api-2\"]",
                "workloads = [\"api-1\", \"api-9\"]",
            ),
            "workloads = [\"api-1\", \"api-9\"]",
            "services[0].workloads[1]",
            "no workload named \"api-9\"",
        ),
        (
            base().replace("ports = { http = 9090 }", "ports = { grpc = 9090 }"),
            "target_port = \"http\"",
            "services[0].ports[0].target_port",
            "workload \"api-2\" has no port \"http\"",
        ),
        (
            base().replace(
                "id = \"spiffe://mesh.test/ns/prod/sa/api\"\naddress = \"10.0.0.2\"",
                "id = \"spiffe://other.test/ns/prod/sa/api\"\naddress = \"10.0.0.2\"",
            ),
            "id = \"spiffe://other.test/ns/prod/sa/api\"",
            "workloads[1].id",
            "not in the trust domain mesh.test",
        ),
        (
            base().replacen(
                &format!("token_sha256 = \"{HASH}\""),
                "token_sha256 = \"abc\"",
                1,
            ),
            "token_sha256 = \"abc\"",
            "workloads[0].token_sha256",
            "64 hex digits",
        ),
        (
            base().replace("service = \"api.prod\"", "service = \"api.dev\""),
            "service = \"api.dev\"",
            "policies[0].service",
            "no service \"api.dev\"",
        ),
        (
            base().replace("port = 80\nallow_namespaces", "port = 82\nallow_namespaces"),
            "port = 82",
            "policies[0].port",
            "has no port 82",
        ),
        (
            base().replace("name = \"api-2\"", "name = \"api-1\""),
            "name = \"api-1\"\nid = \"spiffe://mesh.test/ns/prod/sa/api\"\naddress = \"10.0.0.2\"",
            "workloads[1].name",
            "declared twice",
        ),
        (
            base().replace("port = 81\n", "port = 80\n"),
            "",
            "services[0].ports[1].port",
            "declared twice",
        ),
    ];
    for (text, needle, field, message) in cases {
        let (err, path) = error_of(&text);
        assert!(err.contains(&format!("{path}: line ")), "file: {err}");
        assert!(err.contains(field), "field {field}: {err}");
        assert!(err.contains(message), "message {message}: {err}");
        if !needle.is_empty() {
            let first = needle.lines().next().unwrap();
            // The duplicated name is the second `name = "api-1"`.
            let line = if field == "workloads[1].name" {
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains(first))
                    .nth(1)
                    .unwrap()
                    .0
                    + 1
            } else {
                line_of(&text, first)
            };
            assert!(err.contains(&format!("line {line}:")), "line {line}: {err}");
        }
    }
}

#[test]
fn all_mistakes_of_a_file_are_reported_together() {
    let text = base()
        .replace("service = \"api.prod\"", "service = \"nope.prod\"")
        .replacen(
            &format!("token_sha256 = \"{HASH}\""),
            "token_sha256 = \"xyz\"",
            1,
        );
    let (err, _) = error_of(&text);
    assert!(err.contains("2 errors"), "{err}");
    assert!(
        err.contains("policies[0].service") && err.contains("workloads[0].token_sha256"),
        "{err}"
    );
}

#[test]
fn syntax_and_unknown_fields_are_refused_with_their_line() {
    let (err, path) = error_of(&base().replace("protocol = \"tcp\"", "protocol = \"udp\""));
    assert!(err.starts_with(&format!("{path}: ")), "{err}");
    assert!(err.contains("udp"), "{err}");
    let (err, _) = error_of(&format!("{}\n[[workloads]]\nnmae = \"x\"\n", base()));
    assert!(err.contains("unknown field `nmae`"), "{err}");
    assert!(err.contains("line "), "{err}");
}

#[test]
fn the_ca_must_exist_and_belong_to_the_trust_domain() {
    let d = Dir::new("other.test");
    let err = mesh::load(&d.write(&base())).unwrap_err().to_string();
    assert!(err.contains("ca.dir"), "{err}");
    assert!(
        err.contains("other.test") && err.contains("mesh.test"),
        "{err}"
    );
    let err = mesh::load(&d.write(&base().replace("dir = \"ca\"", "dir = \"missing\"")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.dir") && err.contains("missing"), "{err}");
}
