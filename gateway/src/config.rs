//! The gateway's configuration file (TOML): its identity (files, or the
//! control plane), the tunnel port, the admin port, where the map of its
//! cluster comes from (the control plane), and its limits. Errors name the
//! file, the line and the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_control::client::ControlConfig;
use ferry_control::config_file::{line_of_key, load_toml, ConfigError, TrustDomainValue};
use ferry_transport::tunnel::check_udp_payload;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Certificate files; absent: the certificate comes from `control`.
    #[serde(default)]
    pub identity: Option<IdentityFiles>,
    /// The control plane: the gateway's certificate (without `identity`),
    /// its cluster's exported services and the linked trust domains.
    pub control: ControlConfig,
    #[serde(default)]
    pub tunnel: TunnelSection,
    #[serde(default)]
    pub admin: AdminSection,
    /// Trust domains admitted in addition to the linked clusters the
    /// control plane names.
    #[serde(default)]
    pub allow_trust_domains: Vec<TrustDomainValue>,
    #[serde(default)]
    pub limits: Limits,
    /// How long relays in flight get to finish at shutdown.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundles: Vec<PathBuf>,
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_reload() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    #[serde(default = "default_tunnel")]
    pub listen: SocketAddr,
    /// Ceiling of the UDP payload: each QUIC connection's path-MTU
    /// discovery probes up to its route's MTU less the headers, at most this.
    #[serde(default = "default_udp_payload")]
    pub max_udp_payload: u16,
    /// TLS 1.3 cipher suites by IANA name, in order of preference (as an
    /// edge's `tunnel.cipher_suites`).
    #[serde(default = "ferry_transport::crypto::default_cipher_suite_names")]
    pub cipher_suites: Vec<String>,
}

fn default_tunnel() -> SocketAddr {
    "0.0.0.0:4143".parse().expect("static")
}
fn default_udp_payload() -> u16 {
    ferry_transport::tunnel::path_mtu::DEFAULT_CEILING
}

impl Default for TunnelSection {
    fn default() -> Self {
        Self {
            listen: default_tunnel(),
            max_udp_payload: default_udp_payload(),
            cipher_suites: ferry_transport::crypto::default_cipher_suite_names(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    #[serde(default = "default_admin")]
    pub listen: SocketAddr,
}

fn default_admin() -> SocketAddr {
    "127.0.0.1:4191".parse().expect("static")
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: default_admin(),
        }
    }
}

/// What one caller may use, so one cluster cannot exhaust the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Relays (inner sessions) open at once per calling identity.
    #[serde(default = "default_per_caller")]
    pub relays_per_caller: usize,
    /// Relays open at once in total.
    #[serde(default = "default_total")]
    pub relays_total: usize,
    /// A relay with no bytes in either direction for this long is reset.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Accepted tunnel connections at once (each transport).
    #[serde(default = "default_connections")]
    pub max_connections: usize,
}

fn default_per_caller() -> usize {
    1024
}
fn default_total() -> usize {
    10_000
}
fn default_idle() -> Duration {
    Duration::from_secs(3600)
}
fn default_connections() -> usize {
    10_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            relays_per_caller: default_per_caller(),
            relays_total: default_total(),
            idle_timeout: default_idle(),
            max_connections: default_connections(),
        }
    }
}

impl GatewayConfig {
    /// Loads the file; relative paths resolve against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (mut cfg, text): (GatewayConfig, String) = load_toml(path)?;
        check_udp_payload(cfg.tunnel.max_udp_payload).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            line: line_of_key(&text, "max_udp_payload"),
            field: "tunnel.max_udp_payload".into(),
            message,
        })?;
        ferry_transport::crypto::parse_cipher_suites(&cfg.tunnel.cipher_suites).map_err(
            |message| ConfigError::Invalid {
                path: path.display().to_string(),
                line: line_of_key(&text, "cipher_suites"),
                field: "tunnel.cipher_suites".into(),
                message,
            },
        )?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.control.resolve_paths(&base);
        if let Some(id) = &mut cfg.identity {
            for p in [&mut id.cert, &mut id.key]
                .into_iter()
                .chain(id.bundles.iter_mut())
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<GatewayConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway.toml");
        std::fs::write(&p, text).unwrap();
        GatewayConfig::load(&p).map_err(|e| e.to_string())
    }

    /// Five lines: the `[tunnel]` table starts on line 6.
    const CONTROL: &str = "[control]\naddress = \"127.0.0.1:1\"\nworkload_id = \"spiffe://t/ns/a/sa/gw\"\ntoken_file = \"t\"\nbundle = \"b.pem\"\n";

    #[test]
    fn udp_payload_out_of_range_names_line_and_field() {
        let err = load(&format!("{CONTROL}[tunnel]\nmax_udp_payload = 900\n")).unwrap_err();
        assert!(err.contains("line 7"), "{err}");
        assert!(err.contains("tunnel.max_udp_payload"), "{err}");
        assert!(err.contains("900 is out of range"), "{err}");
        load(&format!("{CONTROL}[tunnel]\nmax_udp_payload = 65507\n")).unwrap();
    }

    #[test]
    fn an_unknown_cipher_suite_names_line_and_field() {
        let err = load(&format!(
            "{CONTROL}[tunnel]\ncipher_suites = [\"TLS_AES_128_CCM_SHA256\"]\n"
        ))
        .unwrap_err();
        assert!(err.contains("line 7"), "{err}");
        assert!(err.contains("tunnel.cipher_suites"), "{err}");
        assert!(err.contains("\"TLS_AES_128_CCM_SHA256\""), "{err}");
        let ok = load(&format!(
            "{CONTROL}[tunnel]\ncipher_suites = [\"TLS_AES_256_GCM_SHA384\"]\n"
        ))
        .unwrap();
        assert_eq!(ok.tunnel.cipher_suites, ["TLS_AES_256_GCM_SHA384"]);
    }
}
