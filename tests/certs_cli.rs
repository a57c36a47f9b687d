//! End-to-end tests of `ferry certs ca` and `ferry certs issue`, running the
//! built binary.

use std::path::Path;
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ferry")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code 2 and a single `ferry: error:` line containing `needle`.
fn assert_fails_with(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "want one line, got: {err:?}");
    assert!(err.starts_with("ferry: error: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        stderr(out)
    );
}

fn make_ca(dir: &Path, trust_domain: &str) {
    assert_ok(&ferry(&[
        "certs",
        "ca",
        "--trust-domain",
        trust_domain,
        "--out",
        path(dir),
    ]));
}

fn pem_blocks(text: &str) -> usize {
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_then_issue_writes_files() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out = tmp.path().join("web");
    make_ca(&ca, "cluster.local");
    assert!(ca.join("ca.pem").is_file());
    assert!(ca.join("ca.key").is_file());

    assert_ok(&ferry(&[
        "certs",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        "spiffe://cluster.local/ns/default/sa/web",
        "--out",
        path(&out),
        "--ttl",
        "1h",
    ]));
    let chain = std::fs::read_to_string(out.join("cert.pem")).unwrap();
    assert_eq!(pem_blocks(&chain), 2, "leaf then CA: {chain}");
    let bundle = std::fs::read_to_string(out.join("bundle.pem")).unwrap();
    assert_eq!(pem_blocks(&bundle), 1);
    assert_eq!(bundle, std::fs::read_to_string(ca.join("ca.pem")).unwrap());
    let key = std::fs::read_to_string(out.join("key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");

    #[cfg(unix)]
    {
        assert_eq!(mode(&ca.join("ca.key")), 0o600);
        assert_eq!(mode(&out.join("key.pem")), 0o600);
    }
}

#[test]
fn id_outside_trust_domain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out = tmp.path().join("w");
    make_ca(&ca, "east.mesh");
    let res = ferry(&[
        "certs",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        "spiffe://west.mesh/ns/a/sa/b",
        "--out",
        path(&out),
    ]);
    assert_fails_with(&res, "outside the CA's trust domain");
    assert!(stderr(&res).contains("spiffe://west.mesh/ns/a/sa/b"));
    assert!(!out.exists(), "nothing written on error");
}

#[test]
fn invalid_spiffe_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    make_ca(&ca, "td");
    let res = ferry(&[
        "certs",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        "http://td/x",
        "--out",
        path(&tmp.path().join("w")),
    ]);
    assert_fails_with(&res, "spiffe://");
}

#[test]
fn missing_ca_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-ca");
    let res = ferry(&[
        "certs",
        "issue",
        "--ca",
        path(&missing),
        "--id",
        "spiffe://td/w",
        "--out",
        path(&tmp.path().join("w")),
    ]);
    assert_fails_with(&res, "no-such-ca/ca.pem");
}

#[test]
fn existing_output_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out = tmp.path().join("w");
    make_ca(&ca, "td");

    // The CA itself.
    let again = ["certs", "ca", "--trust-domain", "td", "--out", path(&ca)];
    assert_fails_with(&ferry(&again), "--force");
    let mut forced = again.to_vec();
    forced.push("--force");
    assert_ok(&ferry(&forced));

    // A workload certificate.
    let issue = [
        "certs",
        "issue",
        "--ca",
        path(&ca),
        "--id",
        "spiffe://td/w",
        "--out",
        path(&out),
    ];
    assert_ok(&ferry(&issue));
    let before = std::fs::read_to_string(out.join("cert.pem")).unwrap();
    let res = ferry(&issue);
    assert_fails_with(&res, "already exists");
    assert!(stderr(&res).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(out.join("cert.pem")).unwrap(),
        before
    );

    let mut forced = issue.to_vec();
    forced.push("--force");
    let res = ferry(&forced);
    assert_eq!(res.status.code(), Some(0), "stderr: {}", stderr(&res));
    assert_ne!(
        std::fs::read_to_string(out.join("cert.pem")).unwrap(),
        before
    );
}

#[test]
fn bad_arguments_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing required argument (clap).
    assert_eq!(ferry(&["certs", "ca"]).status.code(), Some(2));
    // Unparsable and zero TTLs (clap, via the TTL parser).
    let out = path(tmp.path());
    for ttl in ["soon", "0h"] {
        let res = ferry(&[
            "certs",
            "ca",
            "--trust-domain",
            "td",
            "--out",
            out,
            "--ttl",
            ttl,
        ]);
        assert_eq!(res.status.code(), Some(2), "{ttl}: {}", stderr(&res));
        assert!(stderr(&res).contains("invalid TTL"), "{}", stderr(&res));
    }
    // Invalid trust domain (library).
    let res = ferry(&["certs", "ca", "--trust-domain", "Bad!", "--out", out]);
    assert_fails_with(&res, "trust domain");
}
