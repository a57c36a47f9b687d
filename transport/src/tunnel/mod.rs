//! The tunnel: one port serving QUIC (HTTP/3) and TLS/TCP (HTTP/2), the
//! client pool that dials peers QUIC-first, and opaque TCP over CONNECT.

pub mod body;
pub mod broken;
pub mod client;
pub mod config;
pub mod connection;
mod dial;
mod early_data;
pub mod error;
pub mod headers;
pub mod incoming;
mod liveness;
pub mod path_mtu;
pub mod quic_endpoint;
pub mod relay;
mod rtt_rise;
pub mod segmenting_socket;
pub mod server;
pub mod splice;
pub mod stream_allowance;
pub mod stream_io;
pub mod tcp_tunnel;
pub mod tracker;

pub use body::{RecvBody, SendBody};
pub use client::{PeerKey, TunnelClient, Via};
pub use config::{
    check_concurrent_streams, check_pool_idle_timeout, check_udp_payload, Congestion, TunnelConfig,
};
pub use connection::{OpenedStream, PeerConnection, ResponseFuture};
pub use error::{StreamError, TunnelError};
pub use incoming::{IncomingStream, PeerInfo, Responder};
pub use relay::{relay, RelayStats};
pub use server::{handler, StreamHandler, TunnelServer};
pub use splice::{splice, SpliceStats};
pub use stream_io::stream_io;
pub use tcp_tunnel::{parse_target, refuse, serve_connect, ConnectMeta, PendingTunnel, TcpTunnel};
