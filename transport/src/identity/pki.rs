//! The small PKI behind `ferry certs`: a self-signed per-trust-domain CA that
//! issues SPIFFE X.509-SVIDs (ECDSA P-256 leaves whose only SAN is the
//! workload's `spiffe://` URI), plus the helpers the CLI uses to read and
//! write the PEM files.
//!
//! On-disk layout:
//!
//! * CA directory: [`CA_CERT_FILE`] (`ca.pem`) and [`CA_KEY_FILE`] (`ca.key`,
//!   mode 0600). The CA's trust domain is carried in the certificate itself,
//!   as the URI SAN `spiffe://<trust-domain>`, so [`CertificateAuthority::load`]
//!   needs nothing else.
//! * Workload directory: [`CERT_FILE`] (`cert.pem`, leaf then CA),
//!   [`KEY_FILE`] (`key.pem`, PKCS#8, mode 0600) and [`BUNDLE_FILE`]
//!   (`bundle.pem`, the CA certificate).
//!
//! Every file is written atomically (temporary file in the same directory,
//! then `rename`), so a watcher reloading them never sees half a file.
//! Nothing is overwritten unless the caller passes `force`.
//!
//! This is meant for development, tests and small meshes; it keeps the CA
//! key in a plain file and does not do revocation.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::identity::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a workload's certificate chain (leaf then CA).
pub const CERT_FILE: &str = "cert.pem";
/// File name of a workload's PKCS#8 private key.
pub const KEY_FILE: &str = "key.pem";
/// File name of a workload's trust bundle (the CA certificate).
pub const BUNDLE_FILE: &str = "bundle.pem";

/// How far `not_before` is backdated, to tolerate clock skew between peers.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(1);

/// Mode of private-key files.
const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (further restricted by the umask).
const CERT_MODE: u32 = 0o644;

/// Why a PKI operation failed. Every message is one line and names the file
/// or the value at fault.
///
/// I/O errors are part of the message (and kept in the `error` field) rather
/// than exposed as [`std::error::Error::source`], so printing the error alone
/// is complete and printing its chain does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file the CA needs is absent.
    #[error("CA file {} not found (create the CA with `ferry certs ca --out {}`)", .path.display(), .path.parent().unwrap_or(Path::new(".")).display())]
    MissingCaFile { path: PathBuf },
    /// A file exists but could not be read.
    #[error("cannot read {}: {error}", .path.display())]
    Read { path: PathBuf, error: io::Error },
    /// A file or directory could not be created or written.
    #[error("cannot write {}: {error}", .path.display())]
    Write { path: PathBuf, error: io::Error },
    /// A file was read but its contents are not what they should be.
    #[error("cannot use {}: {why}", .path.display())]
    Parse { path: PathBuf, why: String },
    /// The requested SPIFFE ID belongs to another trust domain than the CA.
    #[error("{id} is outside the CA's trust domain {trust_domain:?}")]
    ForeignTrustDomain { id: String, trust_domain: String },
    /// An output file exists and `force` was not given.
    #[error("{} already exists; pass --force to overwrite it", .path.display())]
    WouldOverwrite { path: PathBuf },
    /// The trust domain given on the command line is invalid.
    #[error(transparent)]
    InvalidTrustDomain(SpiffeIdError),
    /// The SPIFFE ID given on the command line is invalid.
    #[error(transparent)]
    InvalidSpiffeId(SpiffeIdError),
    /// A TTL string could not be parsed or is out of range.
    #[error("invalid TTL {input:?}: {why}")]
    InvalidTtl { input: String, why: String },
    /// The requested validity window is empty or cannot be represented.
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    /// The CA certificate is no longer valid, so issuing would be pointless.
    #[error("the CA certificate of trust domain {trust_domain:?} expired at {not_after}")]
    CaExpired {
        trust_domain: String,
        not_after: String,
    },
    /// Key generation, signing or encoding failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Generate(e.to_string())
    }
}

/// A trust domain's certificate authority: its self-signed certificate and
/// the key it signs workload certificates with.
#[derive(Debug)]
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    cert_pem: String,
    not_after: OffsetDateTime,
    /// Subject, key identifier and signing key of the CA (the key is elided
    /// from `Debug`).
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// Creates a new self-signed ECDSA P-256 CA for `trust_domain`, valid
    /// from one minute ago for `ttl`.
    pub fn generate(trust_domain: &TrustDomain, ttl: Duration) -> Result<Self, PkiError> {
        let now = OffsetDateTime::now_utc();
        let not_before = now - CLOCK_SKEW;
        let not_after = add_ttl(now, ttl)?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("ferry CA {trust_domain}"));
        params.distinguished_name = dn;
        params.subject_alt_names = vec![uri_san(&trust_domain.id_string())?];
        // The CA signs leaves only: no intermediates below it.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        params.not_before = not_before;
        params.not_after = not_after;

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            cert_pem: cert.pem(),
            not_after: truncate_to_seconds(not_after),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from `dir/ca.pem` and `dir/ca.key`. The trust domain is
    /// read from the certificate's `spiffe://<td>` URI SAN; the key must match
    /// the certificate.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_ca_file(&cert_path)?;
        let key_pem = read_ca_file(&key_path)?;

        let parse_err = |path: &Path, why: String| PkiError::Parse {
            path: path.to_path_buf(),
            why,
        };

        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| parse_err(&cert_path, format!("not a PEM certificate ({e})")))?;
        if pem.label != "CERTIFICATE" {
            return Err(parse_err(
                &cert_path,
                format!("expected a CERTIFICATE PEM block, found {:?}", pem.label),
            ));
        }
        let x509 = pem
            .parse_x509()
            .map_err(|e| parse_err(&cert_path, format!("invalid X.509 certificate ({e})")))?;
        if !x509.is_ca() {
            return Err(parse_err(&cert_path, "not a CA certificate".to_string()));
        }
        let trust_domain = ca_trust_domain(&x509).map_err(|why| parse_err(&cert_path, why))?;
        let distinguished_name =
            distinguished_name(&x509).map_err(|why| parse_err(&cert_path, why))?;
        let key_identifier_method = x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);

        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| parse_err(&key_path, format!("not a usable private key ({e})")))?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(parse_err(
                &key_path,
                format!("key does not match the certificate {}", cert_path.display()),
            ));
        }

        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name;
        params.key_identifier_method = key_identifier_method;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let not_after = x509.validity().not_after.to_datetime();

        Ok(Self {
            trust_domain,
            cert_pem: ensure_trailing_newline(pem_block(&cert_pem, &cert_path)?),
            not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes `dir/ca.pem` and `dir/ca.key` (mode 0600), creating `dir` if
    /// needed. Refuses to replace existing files unless `force`; in that
    /// case nothing is written.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), PkiError> {
        let cert = dir.join(CA_CERT_FILE);
        let key = dir.join(CA_KEY_FILE);
        prepare_output(dir, &[&cert, &key], force)?;
        write_atomic(&key, self.key_pem().as_bytes(), KEY_MODE)?;
        write_atomic(&cert, self.cert_pem.as_bytes(), CERT_MODE)?;
        Ok(())
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificate, PEM-encoded (this is the trust bundle).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a workload certificate for `id`, valid from one minute ago for
    /// `ttl` (cut short at the CA's own expiry). Refuses IDs of another trust
    /// domain.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<IssuedCert, PkiError> {
        self.check_trust_domain(id)?;
        let (not_before, not_after) = self.validity(ttl)?;
        self.issue_with_validity(id, not_before, not_after)
    }

    /// From one minute ago for `ttl`, cut short at the CA's own expiry;
    /// refused once the CA has expired.
    fn validity(&self, ttl: Duration) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
        let now = OffsetDateTime::now_utc();
        if self.not_after <= now {
            return Err(PkiError::CaExpired {
                trust_domain: self.trust_domain.to_string(),
                not_after: format_time(self.not_after),
            });
        }
        Ok((now - CLOCK_SKEW, add_ttl(now, ttl)?.min(self.not_after)))
    }

    /// Issues a workload certificate for `id` with an explicit validity
    /// window, which may lie in the past or the future (for tests of expired
    /// and not-yet-valid certificates).
    pub fn issue_with_validity(
        &self,
        id: &SpiffeId,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = self.sign(id, &key, not_before, not_after)?;
        Ok(IssuedCert {
            cert_chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            bundle_pem: self.cert_pem.clone(),
        })
    }

    /// Signs a certificate for `id` over a public key the workload holds
    /// (from its CSR; the private key never leaves the workload), valid from
    /// one minute ago for `ttl` (cut short at the CA's own expiry). Returns
    /// the leaf, DER.
    pub fn certify_key(
        &self,
        id: &SpiffeId,
        public_key: &impl rcgen::PublicKeyData,
        ttl: Duration,
    ) -> Result<Vec<u8>, PkiError> {
        let (not_before, not_after) = self.validity(ttl)?;
        Ok(self
            .sign(id, public_key, not_before, not_after)?
            .der()
            .to_vec())
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    fn sign(
        &self,
        id: &SpiffeId,
        public_key: &impl rcgen::PublicKeyData,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<rcgen::Certificate, PkiError> {
        self.check_trust_domain(id)?;
        if not_after <= not_before {
            return Err(PkiError::InvalidValidity(format!(
                "not_after {} is not after not_before {}",
                format_time(not_after),
                format_time(not_before)
            )));
        }

        let mut params = CertificateParams::default();
        // SPIFFE X509-SVIDs identify the workload by the URI SAN alone; with
        // an empty subject rcgen marks the SAN extension critical (RFC 5280).
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![uri_san(&id.to_string())?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = not_before;
        params.not_after = not_after;
        Ok(params.signed_by(public_key, &self.issuer)?)
    }

    fn check_trust_domain(&self, id: &SpiffeId) -> Result<(), PkiError> {
        if id.trust_domain() != &self.trust_domain {
            return Err(PkiError::ForeignTrustDomain {
                id: id.to_string(),
                trust_domain: self.trust_domain.to_string(),
            });
        }
        Ok(())
    }
}

/// A workload certificate and its key, ready to be written to disk.
#[derive(Clone)]
pub struct IssuedCert {
    /// The leaf certificate followed by the CA certificate, PEM-encoded.
    pub cert_chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    /// The trust bundle: the CA certificate, PEM-encoded.
    pub bundle_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"[elided]")
            .field("bundle_pem", &self.bundle_pem)
            .finish()
    }
}

impl IssuedCert {
    /// Writes `dir/cert.pem`, `dir/key.pem` (mode 0600) and `dir/bundle.pem`,
    /// creating `dir` if needed. Refuses to replace existing files unless
    /// `force`; in that case nothing is written.
    ///
    /// Each file is replaced atomically. `cert.pem` is written last, so a
    /// watcher keyed on it finds the matching key and bundle already there.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), PkiError> {
        let cert = dir.join(CERT_FILE);
        let key = dir.join(KEY_FILE);
        let bundle = dir.join(BUNDLE_FILE);
        prepare_output(dir, &[&cert, &key, &bundle], force)?;
        write_atomic(&bundle, self.bundle_pem.as_bytes(), CERT_MODE)?;
        write_atomic(&key, self.key_pem.as_bytes(), KEY_MODE)?;
        write_atomic(&cert, self.cert_chain_pem.as_bytes(), CERT_MODE)?;
        Ok(())
    }
}

/// Parses a TTL such as `90s`, `30m`, `24h`, `7d`, `1y` or a sum like
/// `1d12h`. Units: `s`, `m`, `h`, `d`, `w` (7 days) and `y` (365 days).
/// Zero is rejected.
pub fn parse_ttl(s: &str) -> Result<Duration, PkiError> {
    let err = |why: &str| PkiError::InvalidTtl {
        input: s.to_string(),
        why: why.to_string(),
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(err("empty; expected e.g. 90s, 30m, 24h, 7d or 1y"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err(
                "expected a number followed by a unit (s, m, h, d, w, y)",
            ));
        }
        let (number, after) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| err("number too large"))?;
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let (unit, after) = after.split_at(unit_len);
        let seconds_per_unit: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            "" => return Err(err("missing unit (s, m, h, d, w or y)")),
            _ => return Err(err("unknown unit; use s, m, h, d, w or y")),
        };
        total = number
            .checked_mul(seconds_per_unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| err("too large"))?;
        rest = after;
    }
    if total == 0 {
        return Err(err("must be greater than zero"));
    }
    Ok(Duration::from_secs(total))
}

/// `ferry certs ca`: creates a CA for `trust_domain` (bare `td` or
/// `spiffe://td`) and writes it to `out`. Prints a one-line summary on
/// stdout.
pub fn run_certs_ca(
    trust_domain: &str,
    out: &Path,
    ttl: Duration,
    force: bool,
) -> Result<(), PkiError> {
    let td: TrustDomain = trust_domain.parse().map_err(PkiError::InvalidTrustDomain)?;
    // Check before generating, so the error is the overwrite rather than a
    // wasted key generation.
    check_overwrite(&[&out.join(CA_CERT_FILE), &out.join(CA_KEY_FILE)], force)?;
    let ca = CertificateAuthority::generate(&td, ttl)?;
    ca.write(out, force)?;
    println!(
        "wrote CA for trust domain {td} to {} ({CA_CERT_FILE}, {CA_KEY_FILE}); expires {}",
        out.display(),
        format_time(ca.not_after())
    );
    Ok(())
}

/// `ferry certs issue`: loads the CA in `ca_dir`, issues a certificate for
/// the SPIFFE ID `id` and writes it to `out`. Prints a one-line summary on
/// stdout.
pub fn run_certs_issue(
    ca_dir: &Path,
    id: &str,
    out: &Path,
    ttl: Duration,
    force: bool,
) -> Result<(), PkiError> {
    let id = SpiffeId::parse(id).map_err(PkiError::InvalidSpiffeId)?;
    let ca = CertificateAuthority::load(ca_dir)?;
    check_overwrite(
        &[
            &out.join(CERT_FILE),
            &out.join(KEY_FILE),
            &out.join(BUNDLE_FILE),
        ],
        force,
    )?;
    let issued = ca.issue(&id, ttl)?;
    issued.write(out, force)?;
    println!(
        "wrote certificate for {id} to {} ({CERT_FILE}, {KEY_FILE}, {BUNDLE_FILE})",
        out.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// helpers

fn uri_san(uri: &str) -> Result<SanType, PkiError> {
    let ia5 = uri
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::Generate(format!("URI SAN {uri:?}: {e}")))?;
    Ok(SanType::URI(ia5))
}

/// A random, positive 128-bit serial number (RFC 5280 allows up to 20 bytes).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so it encodes in 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn add_ttl(now: OffsetDateTime, ttl: Duration) -> Result<OffsetDateTime, PkiError> {
    if ttl.is_zero() {
        return Err(PkiError::InvalidValidity(
            "TTL must be greater than zero".to_string(),
        ));
    }
    time::Duration::try_from(ttl)
        .ok()
        .and_then(|d| now.checked_add(d))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| PkiError::InvalidValidity(format!("TTL of {}s is too long", ttl.as_secs())))
}

/// X.509 times have one-second resolution.
fn truncate_to_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, without relying on `time`'s formatting feature.
fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The trust domain named by a CA certificate's `spiffe://<td>` URI SAN.
fn ca_trust_domain(x509: &X509Certificate<'_>) -> Result<TrustDomain, String> {
    let san = x509
        .subject_alternative_name()
        .map_err(|e| format!("invalid subjectAltName extension ({e})"))?
        .ok_or("the CA certificate has no URI SAN spiffe://<trust-domain>")?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [uri] => {
            let td = uri
                .parse::<TrustDomain>()
                .map_err(|e| format!("bad trust domain in URI SAN {uri:?}: {e}"))?;
            if td.id_string() != uri.trim_end_matches('/') {
                return Err(format!(
                    "CA URI SAN {uri:?} must be a bare trust domain (spiffe://<td>)"
                ));
            }
            Ok(td)
        }
        [] => Err("the CA certificate has no URI SAN spiffe://<trust-domain>".to_string()),
        _ => Err(format!(
            "the CA certificate has several spiffe:// URI SANs ({})",
            uris.join(", ")
        )),
    }
}

/// Rebuilds the CA's subject so that the issuer name written into leaves is
/// byte-for-byte the CA's subject (chain building compares them).
fn distinguished_name(x509: &X509Certificate<'_>) -> Result<DistinguishedName, String> {
    use x509_parser::der_parser::asn1_rs::Tag;

    let mut dn = DistinguishedName::new();
    for rdn in x509.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("subject has a multi-valued or empty RDN".to_string());
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("subject has an unsupported attribute type")?
            .collect();
        let data = attr.attr_value().data;
        let text = || {
            std::str::from_utf8(data)
                .map(str::to_string)
                .map_err(|_| "subject attribute is not valid text".to_string())
        };
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?),
            Tag::PrintableString => DnValue::PrintableString(
                text()?
                    .try_into()
                    .map_err(|e| format!("subject attribute: {e}"))?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text()?
                    .try_into()
                    .map_err(|e| format!("subject attribute: {e}"))?,
            ),
            tag => {
                return Err(format!(
                    "subject attribute has unsupported string type {tag}"
                ))
            }
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// The first PEM block of `text` (the CA file might carry trailing junk or
/// comments that we do not want to copy into every chain).
fn pem_block(text: &str, path: &Path) -> Result<String, PkiError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN);
    let end = start.and_then(|s| text[s..].find(END).map(|e| s + e + END.len()));
    match (start, end) {
        (Some(s), Some(e)) => Ok(text[s..e].to_string()),
        _ => Err(PkiError::Parse {
            path: path.to_path_buf(),
            why: "no CERTIFICATE PEM block".to_string(),
        }),
    }
}

fn ensure_trailing_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn read_ca_file(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => PkiError::MissingCaFile {
            path: path.to_path_buf(),
        },
        _ => PkiError::Read {
            path: path.to_path_buf(),
            error,
        },
    })
}

/// Fails with [`PkiError::WouldOverwrite`] on the first existing path unless
/// `force`.
fn check_overwrite(paths: &[&Path], force: bool) -> Result<(), PkiError> {
    if force {
        return Ok(());
    }
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => {
                return Err(PkiError::WouldOverwrite {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(PkiError::Read {
                    path: path.to_path_buf(),
                    error,
                })
            }
        }
    }
    Ok(())
}

/// Checks `paths` against overwriting, then creates `dir`.
fn prepare_output(dir: &Path, paths: &[&Path], force: bool) -> Result<(), PkiError> {
    check_overwrite(paths, force)?;
    fs::create_dir_all(dir).map_err(|error| PkiError::Write {
        path: dir.to_path_buf(),
        error,
    })
}

/// Writes `contents` to a temporary file next to `path` (created with
/// `mode`), syncs it and renames it over `path`.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let wrap = |error| PkiError::Write {
        path: path.to_path_buf(),
        error,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| wrap(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    ));

    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(error) = result {
        let _ = fs::remove_file(&tmp);
        return Err(wrap(error));
    }
    // Make the rename durable; failure here does not undo the write.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{CertificateDer, UnixTime};
    use x509_parser::pem::Pem;

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).unwrap()
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn ders(pem: &str) -> Vec<Vec<u8>> {
        Pem::iter_from_buffer(pem.as_bytes())
            .map(|p| p.unwrap().contents)
            .collect()
    }

    /// Verifies `leaf` against `ca_pem` with webpki, as rustls would.
    fn webpki_verify(
        chain_pem: &str,
        ca_pem: &str,
        at: OffsetDateTime,
    ) -> Result<(), webpki::Error> {
        let chain = ders(chain_pem);
        let ca = CertificateDer::from(ders(ca_pem).remove(0));
        let anchor = webpki::anchor_from_trusted_cert(&ca).unwrap();
        let leaf = CertificateDer::from(chain[0].clone());
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let time = UnixTime::since_unix_epoch(Duration::from_secs(at.unix_timestamp() as u64));
        for usage in [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ] {
            ee.verify_for_usage(
                &[webpki::aws_lc_rs::ECDSA_P256_SHA256],
                std::slice::from_ref(&anchor),
                &[],
                time,
                usage,
                None,
                None,
            )?;
        }
        Ok(())
    }

    fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
        cert.subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::URI(u) => u.to_string(),
                        other => panic!("unexpected SAN {other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn ca_is_self_signed_p256_ca_with_trust_domain_san() {
        let ca = CertificateAuthority::generate(&td("cluster.local"), Duration::from_secs(3600))
            .unwrap();
        assert_eq!(ca.trust_domain().as_str(), "cluster.local");
        let der = ders(ca.cert_pem()).remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.is_ca());
        assert_eq!(
            cert.basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(0)
        );
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        assert_eq!(uri_sans(&cert), ["spiffe://cluster.local"]);
        assert_eq!(cert.subject(), cert.issuer());
        assert!(cert
            .subject()
            .to_string()
            .contains("ferry CA cluster.local"));
        assert_eq!(
            cert.public_key()
                .algorithm
                .parameters
                .as_ref()
                .unwrap()
                .as_oid()
                .unwrap(),
            x509_parser::oid_registry::OID_EC_P256
        );
    }

    #[test]
    fn issued_leaf_has_one_uri_san_ekus_and_validity() {
        let ca = CertificateAuthority::generate(&td("cluster.local"), Duration::from_secs(86_400))
            .unwrap();
        let ttl = Duration::from_secs(3600);
        let before = OffsetDateTime::now_utc();
        let issued = ca
            .issue(&id("spiffe://cluster.local/ns/default/sa/web"), ttl)
            .unwrap();
        let after = OffsetDateTime::now_utc();

        let chain = ders(&issued.cert_chain_pem);
        assert_eq!(chain.len(), 2, "leaf then CA");
        assert_eq!(chain[1], ders(ca.cert_pem())[0]);
        assert_eq!(issued.bundle_pem, ca.cert_pem());
        assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));

        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert_eq!(
            uri_sans(&leaf),
            ["spiffe://cluster.local/ns/default/sa/web"]
        );
        assert!(!leaf.is_ca());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());

        let validity = leaf.validity();
        let nb = validity.not_before.to_datetime();
        let na = validity.not_after.to_datetime();
        let slack = time::Duration::seconds(2);
        assert!(nb >= before - CLOCK_SKEW - slack && nb <= after - CLOCK_SKEW + slack);
        assert!(na >= before + ttl - slack && na <= after + ttl + slack);
        assert!(leaf.raw_serial().len() >= 16);

        webpki_verify(
            &issued.cert_chain_pem,
            ca.cert_pem(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    }

    #[test]
    fn serials_are_random() {
        let ca = CertificateAuthority::generate(&td("td"), Duration::from_secs(3600)).unwrap();
        let a = ca
            .issue(&id("spiffe://td/a"), Duration::from_secs(60))
            .unwrap();
        let b = ca
            .issue(&id("spiffe://td/a"), Duration::from_secs(60))
            .unwrap();
        let serial = |pem: &str| {
            let der = ders(pem).remove(0);
            let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
            c.raw_serial().to_vec()
        };
        assert_ne!(serial(&a.cert_chain_pem), serial(&b.cert_chain_pem));
    }

    #[test]
    fn leaf_ttl_is_cut_at_ca_expiry() {
        let ca = CertificateAuthority::generate(&td("td"), Duration::from_secs(600)).unwrap();
        let issued = ca
            .issue(&id("spiffe://td/w"), Duration::from_secs(86_400))
            .unwrap();
        let der = ders(&issued.cert_chain_pem).remove(0);
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(leaf.validity().not_after.to_datetime(), ca.not_after());
    }

    #[test]
    fn foreign_trust_domain_is_refused() {
        let ca =
            CertificateAuthority::generate(&td("east.mesh"), Duration::from_secs(3600)).unwrap();
        let err = ca
            .issue(&id("spiffe://west.mesh/ns/a/sa/b"), Duration::from_secs(60))
            .unwrap_err();
        assert!(matches!(err, PkiError::ForeignTrustDomain { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("spiffe://west.mesh/ns/a/sa/b") && msg.contains("east.mesh"),
            "{msg}"
        );

        let now = OffsetDateTime::now_utc();
        assert!(matches!(
            ca.issue_with_validity(
                &id("spiffe://west.mesh/x"),
                now,
                now + time::Duration::hours(1)
            ),
            Err(PkiError::ForeignTrustDomain { .. })
        ));
    }

    #[test]
    fn explicit_validity_gives_expired_and_future_certs() {
        let ca = CertificateAuthority::generate(&td("td"), Duration::from_secs(86_400)).unwrap();
        let now = OffsetDateTime::now_utc();
        let expired = ca
            .issue_with_validity(
                &id("spiffe://td/old"),
                now - time::Duration::hours(2),
                now - time::Duration::hours(1),
            )
            .unwrap();
        assert!(matches!(
            webpki_verify(&expired.cert_chain_pem, ca.cert_pem(), now),
            Err(webpki::Error::CertExpired { .. })
        ));
        let future = ca
            .issue_with_validity(
                &id("spiffe://td/new"),
                now + time::Duration::hours(1),
                now + time::Duration::hours(2),
            )
            .unwrap();
        assert!(matches!(
            webpki_verify(&future.cert_chain_pem, ca.cert_pem(), now),
            Err(webpki::Error::CertNotValidYet { .. })
        ));
        assert!(matches!(
            ca.issue_with_validity(&id("spiffe://td/x"), now, now),
            Err(PkiError::InvalidValidity(_))
        ));
    }

    #[test]
    fn write_refuses_without_force_and_replaces_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ca");
        let ca = CertificateAuthority::generate(&td("td"), Duration::from_secs(3600)).unwrap();
        ca.write(&out, false).unwrap();

        let other = CertificateAuthority::generate(&td("td"), Duration::from_secs(3600)).unwrap();
        let err = other.write(&out, false).unwrap_err();
        assert!(matches!(err, PkiError::WouldOverwrite { .. }), "{err}");
        assert!(err.to_string().contains("--force"));
        assert_eq!(
            fs::read_to_string(out.join(CA_CERT_FILE)).unwrap(),
            ca.cert_pem()
        );

        other.write(&out, true).unwrap();
        assert_eq!(
            fs::read_to_string(out.join(CA_CERT_FILE)).unwrap(),
            other.cert_pem()
        );

        let leaf_dir = dir.path().join("leaf");
        let issued = other
            .issue(&id("spiffe://td/w"), Duration::from_secs(60))
            .unwrap();
        issued.write(&leaf_dir, false).unwrap();
        assert!(matches!(
            issued.write(&leaf_dir, false),
            Err(PkiError::WouldOverwrite { .. })
        ));
        issued.write(&leaf_dir, true).unwrap();
        assert_eq!(
            fs::read_to_string(leaf_dir.join(CERT_FILE)).unwrap(),
            issued.cert_chain_pem
        );
        assert_eq!(
            fs::read_to_string(leaf_dir.join(KEY_FILE)).unwrap(),
            issued.key_pem
        );
        assert_eq!(
            fs::read_to_string(leaf_dir.join(BUNDLE_FILE)).unwrap(),
            issued.bundle_pem
        );
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&leaf_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate(&td("td"), Duration::from_secs(3600)).unwrap();
        ca.write(dir.path(), false).unwrap();
        let issued = ca
            .issue(&id("spiffe://td/w"), Duration::from_secs(60))
            .unwrap();
        let leaf_dir = dir.path().join("w");
        issued.write(&leaf_dir, false).unwrap();
        // Also after a forced overwrite of a file that had looser permissions.
        fs::set_permissions(leaf_dir.join(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        issued.write(&leaf_dir, true).unwrap();
        for key in [dir.path().join(CA_KEY_FILE), leaf_dir.join(KEY_FILE)] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn load_round_trip_issues_verifiable_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            CertificateAuthority::generate(&td("prod.example"), Duration::from_secs(3600)).unwrap();
        ca.write(dir.path(), false).unwrap();

        let loaded = CertificateAuthority::load(dir.path()).unwrap();
        assert_eq!(loaded.trust_domain(), ca.trust_domain());
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert_eq!(loaded.not_after(), ca.not_after());
        assert_eq!(loaded.key_pem(), ca.key_pem());

        let issued = loaded
            .issue(
                &id("spiffe://prod.example/ns/x/sa/y"),
                Duration::from_secs(60),
            )
            .unwrap();
        // The issuer name and authority key id must match the CA exactly for
        // path building; webpki checks both plus the signature.
        webpki_verify(
            &issued.cert_chain_pem,
            ca.cert_pem(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let leaf_der = ders(&issued.cert_chain_pem).remove(0);
        let ca_der = ders(ca.cert_pem()).remove(0);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
    }

    #[test]
    fn load_reports_missing_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = CertificateAuthority::load(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, PkiError::MissingCaFile { .. }));
        assert!(err.to_string().contains("nope/ca.pem"), "{err}");

        let ca = CertificateAuthority::generate(&td("td"), Duration::from_secs(3600)).unwrap();
        ca.write(dir.path(), false).unwrap();
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = CertificateAuthority::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");

        let other = CertificateAuthority::generate(&td("td"), Duration::from_secs(3600)).unwrap();
        fs::write(dir.path().join(CA_KEY_FILE), other.key_pem()).unwrap();
        let err = CertificateAuthority::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");

        fs::write(dir.path().join(CA_CERT_FILE), "garbage").unwrap();
        let err = CertificateAuthority::load(dir.path()).unwrap_err();
        assert!(matches!(err, PkiError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");

        // A leaf is not a CA.
        let issued = other
            .issue(&id("spiffe://td/w"), Duration::from_secs(60))
            .unwrap();
        fs::write(dir.path().join(CA_CERT_FILE), &issued.cert_chain_pem).unwrap();
        let err = CertificateAuthority::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn parse_ttl_accepts_units_and_rejects_zero() {
        let cases = [
            ("90s", 90),
            ("30m", 1800),
            ("24h", 86_400),
            ("7d", 7 * 86_400),
            ("2w", 14 * 86_400),
            ("1y", 365 * 86_400),
            ("87600h", 87_600 * 3600),
            ("1d12h", 36 * 3600),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_ttl(input).unwrap(),
                Duration::from_secs(secs),
                "{input}"
            );
        }
        for bad in [
            "",
            "0s",
            "0h0m",
            "10",
            "h",
            "5x",
            "1.5h",
            "-1h",
            "99999999999999999999y",
        ] {
            let err = parse_ttl(bad).unwrap_err();
            assert!(matches!(err, PkiError::InvalidTtl { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn run_functions_validate_input() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let err = run_certs_ca("Bad Domain", &ca_dir, Duration::from_secs(60), false).unwrap_err();
        assert!(matches!(err, PkiError::InvalidTrustDomain(_)), "{err}");
        run_certs_ca("spiffe://td", &ca_dir, Duration::from_secs(3600), false).unwrap();
        assert_eq!(
            CertificateAuthority::load(&ca_dir)
                .unwrap()
                .trust_domain()
                .as_str(),
            "td"
        );
        let out = dir.path().join("w");
        let err =
            run_certs_issue(&ca_dir, "td/w", &out, Duration::from_secs(60), false).unwrap_err();
        assert!(matches!(err, PkiError::InvalidSpiffeId(_)), "{err}");
        run_certs_issue(
            &ca_dir,
            "spiffe://td/w",
            &out,
            Duration::from_secs(60),
            false,
        )
        .unwrap();
        assert!(out.join(CERT_FILE).exists());
    }
}
