//! Certificates for one run, all ECDSA P-256: a CA, a server and a client
//! certificate for the mutual-TLS proxy pairs (rcgen; DNS name
//! `server.bench`, which the client-side proxies verify), and Ferry's
//! SPIFFE identities made with `ferry certs` itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The name the server-side proxies' certificate carries.
pub const SERVER_NAME: &str = "server.bench";

/// Files for the TLS proxy pairs.
pub struct PairPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Certificate then key in one file (HAProxy's `crt`).
    pub server_combined: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_combined: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

impl PairPki {
    pub fn generate(dir: &Path) -> Result<PairPki> {
        std::fs::create_dir_all(dir)?;
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let mut ca_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ferry-bench CA");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate_for(alg)?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |cn: &str,
                    sans: Vec<String>,
                    eku: ExtendedKeyUsagePurpose|
         -> Result<(String, String)> {
            let mut p = CertificateParams::new(sans)?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![eku];
            p.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate_for(alg)?;
            let cert = p.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(
            SERVER_NAME,
            vec![SERVER_NAME.to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_cert, client_key) = leaf(
            "client.bench",
            vec!["client.bench".to_string()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let pki = PairPki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            server_combined: dir.join("server-combined.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            client_combined: dir.join("client-combined.pem"),
        };
        write(&pki.ca, &ca_cert.pem())?;
        write(&pki.server_cert, &server_cert)?;
        write(&pki.server_key, &server_key)?;
        write(&pki.server_combined, &format!("{server_cert}{server_key}"))?;
        write(&pki.client_cert, &client_cert)?;
        write(&pki.client_key, &client_key)?;
        write(&pki.client_combined, &format!("{client_cert}{client_key}"))?;
        Ok(pki)
    }
}

/// Ferry's identities: `<dir>/ca`, `<dir>/client`, `<dir>/server` made with
/// `ferry certs` (trust domain `bench.local`).
pub struct FerryPki {
    pub client_dir: PathBuf,
    pub server_dir: PathBuf,
}

pub const TRUST_DOMAIN: &str = "bench.local";

pub fn ferry_id(sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}")
}

fn run_ferry(ferry: &Path, args: &[&str], dir: &Path) -> Result<()> {
    let out = Command::new(ferry)
        .args(args)
        .arg(dir)
        .output()
        .with_context(|| format!("run {} {}", ferry.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{} {} {}` failed: {}",
            ferry.display(),
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl FerryPki {
    pub fn generate(ferry: &Path, dir: &Path) -> Result<FerryPki> {
        let ca = dir.join("ca");
        let ca_s = ca.to_string_lossy().into_owned();
        run_ferry(
            ferry,
            &[
                "certs",
                "ca",
                "--trust-domain",
                TRUST_DOMAIN,
                "--force",
                "--out",
            ],
            &ca,
        )?;
        for sa in ["client", "server"] {
            let id = ferry_id(sa);
            run_ferry(
                ferry,
                &[
                    "certs", "issue", "--ca", &ca_s, "--id", &id, "--force", "--out",
                ],
                &dir.join(sa),
            )?;
        }
        Ok(FerryPki {
            client_dir: dir.join("client"),
            server_dir: dir.join("server"),
        })
    }
}
