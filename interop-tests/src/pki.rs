//! A mesh PKI built with `ferry certs` (the CLI users run): a CA per trust
//! domain and one identity per workload.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::prereq::ferry_bin;
use crate::process::run;

/// A certificate authority made by `ferry certs ca`.
pub struct Pki {
    pub trust_domain: String,
    pub dir: PathBuf,
}

/// A workload identity made by `ferry certs issue`.
#[derive(Clone, Debug)]
pub struct Identity {
    pub id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl Pki {
    /// Creates a CA for `trust_domain` in `dir`.
    pub fn create(dir: &Path, trust_domain: &str) -> Pki {
        let mut c = Command::new(ferry_bin());
        c.args(["certs", "ca", "--trust-domain", trust_domain, "--out"])
            .arg(dir);
        run(c, Duration::from_secs(20)).ok("ferry certs ca");
        Pki {
            trust_domain: trust_domain.to_string(),
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate (a trust bundle with only this CA).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues `spiffe://<td>/ns/default/sa/<sa>` into `out`.
    pub fn issue(&self, sa: &str, out: &Path) -> Identity {
        let id = format!("spiffe://{}/ns/default/sa/{sa}", self.trust_domain);
        let mut c = Command::new(ferry_bin());
        c.args(["certs", "issue", "--ca"])
            .arg(&self.dir)
            .args(["--id", &id, "--out"])
            .arg(out);
        run(c, Duration::from_secs(20)).ok("ferry certs issue");
        Identity {
            id,
            cert: out.join("cert.pem"),
            key: out.join("key.pem"),
            bundle: out.join("bundle.pem"),
        }
    }
}
