//! The mesh file's multicluster parts: `cluster`, `[[links]]` (defaults,
//! the bundle loaded), `export` and `failover`; and each mistake in a link
//! refused with the file, the line and the field.

use std::path::PathBuf;
use std::time::Duration;

use ferry_control::mesh;
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::TrustDomain;

const HASH: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

/// A mesh directory (`ca/` for east.test) with `west.pem` (west.test's CA)
/// and `other.pem` (third.test's CA) next to the mesh file.
fn dir() -> tempfile::TempDir {
    ferry_transport::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = |td: &str| {
        CertificateAuthority::generate(&TrustDomain::new(td).unwrap(), Duration::from_secs(3600))
            .unwrap()
    };
    ca("east.test")
        .write(&dir.path().join("ca"), false)
        .unwrap();
    std::fs::write(dir.path().join("west.pem"), ca("west.test").cert_pem()).unwrap();
    std::fs::write(dir.path().join("other.pem"), ca("third.test").cert_pem()).unwrap();
    dir
}

fn text(link: &str) -> String {
    format!(
        r#"trust_domain = "east.test"
cluster = "east"
[ca]
dir = "ca"

[[workloads]]
name = "api-1"
id = "spiffe://east.test/ns/prod/sa/api"
address = "10.0.0.1"
tunnel = "10.0.0.1:4143"
token_sha256 = "{HASH}"

[[services]]
name = "api"
namespace = "prod"
workloads = ["api-1"]
export = true
failover = true
[[services.ports]]
port = 80

[[services]]
name = "db"
namespace = "prod"
workloads = ["api-1"]
[[services.ports]]
port = 5432

[[links]]
{link}"#
    )
}

const LINK: &str = r#"cluster = "west"
trust_domain = "west.test"
control = "10.1.0.1:4180"
gateway = "10.1.0.2:4143"
gateway_health = "10.1.0.2:4191"
bundle = "west.pem"
"#;

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("mesh.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn links_exports_and_failover_are_read_with_their_defaults() {
    let d = dir();
    let m = mesh::load(&write(&d, &text(LINK))).unwrap().mesh;
    assert_eq!(m.cluster, "east");
    assert!(m.services["api.prod:80"].exported);
    assert!(!m.services["db.prod:5432"].exported);
    assert_eq!(m.failover.iter().collect::<Vec<_>>(), ["api.prod:80"]);
    let l = &m.links[0];
    assert_eq!(l.cluster, "west");
    assert_eq!(
        l.control_id.to_string(),
        "spiffe://west.test/ns/ferry-system/sa/control"
    );
    assert_eq!(
        l.gateway_id.to_string(),
        "spiffe://west.test/ns/ferry-system/sa/gateway"
    );
    assert_eq!(l.probe_interval, Duration::from_secs(1));
    assert_eq!(l.roots_der.len(), 1);

    let d2 = dir();
    let plain = text(LINK).replace("cluster = \"east\"\n", "");
    let plain = &plain[..plain.find("[[links]]").unwrap()];
    let m = mesh::load(&write(&d2, plain)).unwrap().mesh;
    assert_eq!(m.cluster, "local");
    assert!(m.links.is_empty());
}

#[test]
fn each_link_mistake_names_file_line_and_field() {
    let twice = format!("{LINK}\n[[links]]\n{LINK}");
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            LINK.replace("cluster = \"west\"", "cluster = \"West\""),
            "cluster = \"West\"",
            "links[0].cluster",
            "not a DNS label",
        ),
        (
            LINK.replace("cluster = \"west\"", "cluster = \"east\""),
            "cluster = \"east\"\ntrust_domain = \"west.test\"",
            "links[0].cluster",
            "own name",
        ),
        (
            LINK.replace("\"west.test\"", "\"east.test\""),
            "trust_domain = \"east.test\"\ncontrol",
            "links[0].trust_domain",
            "own trust domain",
        ),
        (
            LINK.replace("west.pem", "other.pem"),
            "bundle = \"other.pem\"",
            "links[0].bundle",
            "third.test",
        ),
        (
            LINK.replace("west.pem", "missing.pem"),
            "bundle = \"missing.pem\"",
            "links[0].bundle",
            "missing.pem",
        ),
        (
            format!("{LINK}control_id = \"spiffe://east.test/ns/x/sa/y\"\n"),
            "control_id = ",
            "links[0].control_id",
            "not in the trust domain west.test",
        ),
        (twice, "", "links[1].cluster", "linked twice"),
    ];
    for (link, needle, field, message) in cases {
        let d = dir();
        let text = text(&link);
        let path = write(&d, &text);
        let err = mesh::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{}: line ", path.display())),
            "file: {err}"
        );
        assert!(err.contains(field), "field {field}: {err}");
        assert!(err.contains(message), "message {message}: {err}");
        if !needle.is_empty() {
            let first = needle.lines().next().unwrap();
            let second = needle.lines().nth(1);
            let lines: Vec<&str> = text.lines().collect();
            let line = (0..lines.len())
                .find(|&i| {
                    lines[i].contains(first)
                        && second.is_none_or(|s| lines.get(i + 1).is_some_and(|l| l.contains(s)))
                })
                .unwrap()
                + 1;
            assert!(err.contains(&format!("line {line}:")), "line {line}: {err}");
        }
    }
}
