//! The configuration structures and their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::PortPolicy;

fn d<T: Default>() -> T {
    T::default()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// A name for logs and `/config` (defaults to the SPIFFE ID).
    #[serde(default)]
    pub name: Option<String>,
    /// Certificate files; absent: the certificate comes from `control`.
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    /// The control plane; used for the certificate when `identity` is
    /// absent, and for discovery when `discovery.mesh_file` is.
    #[serde(default)]
    pub control: Option<ControlConfig>,
    #[serde(default)]
    pub tunnel: TunnelSection,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub outbound: OutboundConfig,
    #[serde(default)]
    pub inbound: InboundConfig,
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// How long in-flight requests and streams get to finish at shutdown.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundles: Vec<PathBuf>,
    /// How often the files are checked for rotation.
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_reload() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// The tunnel port (UDP for QUIC and TCP for the fallback).
    #[serde(default = "default_tunnel")]
    pub listen: SocketAddr,
    /// QUIC's head start before TLS/TCP is raced.
    #[serde(default = "default_head_start", with = "humantime_serde")]
    pub head_start: Duration,
    /// `quic`, `h2`, or unset (QUIC first with fallback).
    #[serde(default)]
    pub force_transport: Option<ForceTransport>,
    /// Ceiling of the UDP payload: each QUIC connection's path-MTU
    /// discovery probes up to its route's MTU less the headers, at most this.
    #[serde(default = "default_udp_payload")]
    pub max_udp_payload: u16,
    /// QUIC congestion controller: `cubic`, `newreno` or `bbr` (unset: the
    /// transport's default).
    #[serde(default)]
    pub congestion: Option<CongestionChoice>,
    /// Streams per tunnel connection: what this edge allows a peer on a
    /// connection it accepted, and what its pool puts on one connection
    /// before dialing another to the same peer (unset: the transport's
    /// default, 256).
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// How long a tunnel connection with no streams stays in the pool
    /// before it is closed (100 ms to 24 h; unset: 90 s). A closed connection
    /// costs the next stream a handshake (resumed when the peer still
    /// holds the session).
    #[serde(default, with = "humantime_serde")]
    pub pool_idle_timeout: Option<Duration>,
    /// Whether a new QUIC connection to a peer that issued this edge a
    /// session ticket carries an idempotent request's head in 0-RTT data
    /// (on by default; this edge always accepts 0-RTT data from its peers).
    #[serde(default = "default_early_data")]
    pub early_data: bool,
    /// TLS 1.3 cipher suites offered and accepted on the tunnel port and
    /// in dials, by IANA name, in order of preference (default: all three,
    /// AES-128-GCM first). QUIC's Initial packets use AES-128-GCM whatever
    /// this says (RFC 9001).
    #[serde(default = "ferry_transport::crypto::default_cipher_suite_names")]
    pub cipher_suites: Vec<String>,
}

/// A QUIC congestion controller, as the configuration names it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CongestionChoice {
    Cubic,
    NewReno,
    Bbr,
}

fn default_tunnel() -> SocketAddr {
    "0.0.0.0:4143".parse().expect("static")
}
fn default_head_start() -> Duration {
    Duration::from_millis(300)
}
fn default_udp_payload() -> u16 {
    ferry_transport::tunnel::path_mtu::DEFAULT_CEILING
}
fn default_early_data() -> bool {
    true
}

impl Default for TunnelSection {
    fn default() -> Self {
        Self {
            listen: default_tunnel(),
            head_start: default_head_start(),
            force_transport: None,
            max_udp_payload: default_udp_payload(),
            congestion: None,
            max_concurrent_streams: None,
            pool_idle_timeout: None,
            early_data: default_early_data(),
            cipher_suites: ferry_transport::crypto::default_cipher_suite_names(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForceTransport {
    Quic,
    H2,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin")]
    pub listen: SocketAddr,
}

fn default_admin() -> SocketAddr {
    "127.0.0.1:4191".parse().expect("static")
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin(),
        }
    }
}

/// What to do with traffic to destinations with no known identity.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NonMeshPolicy {
    /// Connect directly, as the application asked.
    #[default]
    Passthrough,
    /// Refuse (503 for HTTP, reset for TCP).
    Refuse,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Explicit listeners: `127.0.0.1:PORT → service`.
    #[serde(default)]
    pub listeners: Vec<OutboundListener>,
    /// The transparent listener (iptables REDIRECT target), if any.
    #[serde(default)]
    pub transparent: Option<SocketAddr>,
    #[serde(default)]
    pub non_mesh: NonMeshPolicy,
    /// Ports where the server speaks first: no protocol detection.
    #[serde(default = "default_server_first")]
    pub server_first_ports: Vec<u16>,
    /// How long to wait for the client's first bytes before treating the
    /// connection as opaque TCP.
    #[serde(default = "default_detect", with = "humantime_serde")]
    pub detect_timeout: Duration,
    /// Time limit of one HTTP request through the mesh (0: none).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time limit of connecting to a peer (handshake included).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_server_first() -> Vec<u16> {
    vec![25, 587, 3306, 4444, 5432, 6379, 9300, 11211]
}
fn default_detect() -> Duration {
    Duration::from_millis(300)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            listeners: d(),
            transparent: None,
            non_mesh: NonMeshPolicy::default(),
            server_first_ports: default_server_first(),
            detect_timeout: default_detect(),
            request_timeout: default_request_timeout(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundListener {
    /// Where the application connects, e.g. `127.0.0.1:9000`.
    pub listen: SocketAddr,
    /// The service it reaches: `name.namespace:port`.
    pub service: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Header carrying the authenticated client SPIFFE ID to the application.
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    /// Authorization per application port; ports not listed allow any
    /// authenticated mesh identity.
    #[serde(default)]
    pub ports: Vec<PortPolicy>,
    /// The address local applications listen on.
    #[serde(default = "default_app_host")]
    pub app_host: std::net::IpAddr,
}

fn default_identity_header() -> String {
    "x-ferry-client-id".into()
}

impl InboundConfig {
    /// `identity_header` as a header name, or why it is not one.
    pub fn identity_header_name(&self) -> Result<http::HeaderName, String> {
        http::HeaderName::from_bytes(self.identity_header.as_bytes())
            .map_err(|e| format!("{:?} is not an HTTP header name: {e}", self.identity_header))
    }
}
fn default_app_host() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            identity_header: default_identity_header(),
            ports: d(),
            app_host: default_app_host(),
        }
    }
}

pub use ferry_control::client::ControlConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The mesh file (services and their endpoints), reloaded on change.
    pub mesh_file: Option<PathBuf>,
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            mesh_file: None,
            reload_interval: default_reload(),
        }
    }
}
