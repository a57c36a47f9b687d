//! QUIC endpoints: the UDP socket (large buffers), quinn's transport
//! parameters tuned for a mesh, and the server and client endpoint builders.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AckFrequencyConfig, EndpointConfig, MtuDiscoveryConfig, TransportConfig, VarInt};

use super::config::{Congestion, TunnelConfig};
use super::path_mtu;
use super::segmenting_socket::bind_udp;
use super::stream_allowance::StreamAllowance;

/// Which end of a connection a transport configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections and the peer's request streams.
    Server,
    /// Dials and opens request streams; accepts no bidirectional stream.
    Client,
}

/// quinn transport parameters for mesh links, for one end.
///
/// quinn sets up its state for every stream the peer may open as soon as
/// the connection starts (two hash-map entries per stream), so the
/// allowance is a cost per connection: a dialing end allows the peer no
/// bidirectional stream (an HTTP/3 server never opens one, RFC 9114
/// section 6.1), and the accepting end starts with a small allowance that
/// its server grows up to `max_concurrent_streams` as the peer uses it
/// ([`StreamAllowance`]).
///
/// Path-MTU discovery may probe up to `cfg.max_udp_payload` itself; a
/// connection to a known peer takes [`transport_config_to`].
pub fn transport_config(cfg: &TunnelConfig, role: Role) -> Arc<TransportConfig> {
    build_transport(cfg, role, cfg.max_udp_payload)
}

/// [`transport_config`] for a connection with `peer`: path-MTU discovery
/// probes up to what the kernel's route to the peer carries, at most
/// `cfg.max_udp_payload` ([`path_mtu::upper_bound`]).
pub fn transport_config_to(
    cfg: &TunnelConfig,
    role: Role,
    peer: SocketAddr,
) -> Arc<TransportConfig> {
    let bound = path_mtu::upper_bound(cfg.max_udp_payload, peer);
    tracing::debug!(%peer, ?role, bound, "QUIC path-MTU discovery bound");
    build_transport(cfg, role, bound)
}

fn build_transport(cfg: &TunnelConfig, role: Role, mtu_bound: u16) -> Arc<TransportConfig> {
    let peer_bidi = match role {
        Role::Server => StreamAllowance::initial(cfg.max_concurrent_streams),
        Role::Client => 0,
    };
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(peer_bidi))
        // HTTP/3 needs three unidirectional streams per side; allow a few more.
        .max_concurrent_uni_streams(VarInt::from_u32(16))
        .stream_receive_window(VarInt::from_u32(cfg.stream_window))
        .receive_window(VarInt::from_u32(cfg.connection_window))
        .send_window(u64::from(cfg.connection_window))
        .keep_alive_interval(Some(cfg.keep_alive))
        .max_idle_timeout(Some(
            cfg.idle_timeout
                .try_into()
                .unwrap_or_else(|_| VarInt::from_u32(30_000).into()),
        ))
        .initial_rtt(std::time::Duration::from_millis(10))
        .enable_segmentation_offload(true);
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(mtu_bound);
    t.mtu_discovery_config(Some(mtu));
    t.congestion_controller_factory(controller_factory(cfg.congestion));
    t.ack_frequency_config(Some(ack_frequency(cfg)));
    Arc::new(t)
}

/// What this end asks its peer to do about acknowledgements.
///
/// Only the delay changes: an acknowledgement still goes out after every
/// second packet, and at once for a packet out of order (the reordering
/// threshold of 1 is RFC 9000's own behaviour; the extension's default of
/// 2 would hold back the signal of a loss).
fn ack_frequency(cfg: &TunnelConfig) -> AckFrequencyConfig {
    let mut a = AckFrequencyConfig::default();
    a.max_ack_delay(Some(cfg.ack_delay))
        .reordering_threshold(VarInt::from_u32(1));
    a
}

/// quinn's factory for the configured congestion controller.
fn controller_factory(
    c: Congestion,
) -> Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> {
    match c {
        Congestion::Cubic => Arc::new(quinn::congestion::CubicConfig::default()),
        Congestion::NewReno => Arc::new(quinn::congestion::NewRenoConfig::default()),
        Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
    }
}

fn endpoint_config(cfg: &TunnelConfig) -> EndpointConfig {
    let mut e = EndpointConfig::default();
    // Path-MTU discovery can only grow the datagram up to what both ends accept.
    let _ = e.max_udp_payload_size(cfg.max_udp_payload.max(1200));
    e
}

/// What protects QUIC's Initial packets: AES-128-GCM, always (RFC 9001
/// section 5), whichever suites the TLS configs offer for the rest of the
/// connection (`tunnel.cipher_suites` may leave it out).
fn initial_suite() -> Result<rustls::quic::Suite, String> {
    crate::crypto::provider()
        .cipher_suites
        .iter()
        .find_map(|cs| match (cs.suite(), cs.tls13()) {
            (rustls::CipherSuite::TLS13_AES_128_GCM_SHA256, Some(s)) => s.quic_suite(),
            _ => None,
        })
        .ok_or_else(|| {
            "the crypto provider has no TLS_AES_128_GCM_SHA256 for QUIC's Initial packets".into()
        })
}

/// quinn's server config from a rustls config: what a QUIC endpoint
/// accepts connections with (see [`server_config_for`] for one peer).
pub fn server_config(
    tls: Arc<rustls::ServerConfig>,
    cfg: &TunnelConfig,
) -> std::io::Result<quinn::ServerConfig> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let crypto = QuicServerConfig::with_initial(tls, initial_suite().map_err(invalid)?)
        .map_err(|e| invalid(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config(cfg, Role::Server));
    server.max_incoming(cfg.max_connections.max(1));
    Ok(server)
}

/// `base` for a connection accepted from `peer`: path-MTU discovery
/// bounded by the route back to it ([`transport_config_to`]).
pub fn server_config_for(
    base: &quinn::ServerConfig,
    cfg: &TunnelConfig,
    peer: SocketAddr,
) -> Arc<quinn::ServerConfig> {
    let mut s = base.clone();
    s.transport_config(transport_config_to(cfg, Role::Server, peer));
    Arc::new(s)
}

/// A QUIC endpoint that accepts connections (and can also dial).
pub fn server_endpoint(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    cfg: &TunnelConfig,
) -> std::io::Result<quinn::Endpoint> {
    server_endpoint_with(addr, server_config(tls, cfg)?, cfg)
}

/// [`server_endpoint`] from a server config already built.
pub fn server_endpoint_with(
    addr: SocketAddr,
    server: quinn::ServerConfig,
    cfg: &TunnelConfig,
) -> std::io::Result<quinn::Endpoint> {
    let socket = bind_udp(addr, cfg)?;
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(cfg),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// A client-only QUIC endpoint on an ephemeral port.
pub fn client_endpoint(bind: SocketAddr, cfg: &TunnelConfig) -> std::io::Result<quinn::Endpoint> {
    let socket = bind_udp(bind, cfg)?;
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(cfg),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// quinn's client config from a rustls config.
pub fn client_config(
    tls: Arc<rustls::ClientConfig>,
    cfg: &TunnelConfig,
) -> Result<quinn::ClientConfig, String> {
    with_transport(tls, transport_config(cfg, Role::Client))
}

/// [`client_config`] for a connection to `peer`: path-MTU discovery
/// bounded by the route to it ([`transport_config_to`]).
pub fn client_config_to(
    tls: Arc<rustls::ClientConfig>,
    cfg: &TunnelConfig,
    peer: SocketAddr,
) -> Result<quinn::ClientConfig, String> {
    with_transport(tls, transport_config_to(cfg, Role::Client, peer))
}

fn with_transport(
    tls: Arc<rustls::ClientConfig>,
    transport: Arc<TransportConfig>,
) -> Result<quinn::ClientConfig, String> {
    let crypto =
        QuicClientConfig::with_initial(tls, initial_suite()?).map_err(|e| e.to_string())?;
    let mut c = quinn::ClientConfig::new(Arc::new(crypto));
    c.transport_config(transport);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::congestion::{Bbr, Cubic, NewReno};

    /// The controller a connection built from `c` runs.
    fn built(c: Congestion) -> Box<dyn std::any::Any> {
        controller_factory(c)
            .build(std::time::Instant::now(), 1200)
            .into_any()
    }

    #[test]
    fn default_congestion_controller_is_bbr() {
        assert_eq!(TunnelConfig::default().congestion, Congestion::Bbr);
        assert!(built(TunnelConfig::default().congestion).is::<Bbr>());
    }

    #[test]
    fn each_choice_builds_its_controller() {
        assert!(built(Congestion::Cubic).is::<Cubic>());
        assert!(built(Congestion::NewReno).is::<NewReno>());
        assert!(built(Congestion::Bbr).is::<Bbr>());
    }

    #[test]
    fn names_parse() {
        for (name, c) in [
            ("cubic", Congestion::Cubic),
            ("newreno", Congestion::NewReno),
            ("bbr", Congestion::Bbr),
        ] {
            assert_eq!(name.parse::<Congestion>(), Ok(c));
        }
        assert!("reno".parse::<Congestion>().is_err());
    }
}
