//! rustls configuration shared by QUIC and TCP: TLS 1.3 only, mutual always,
//! SPIFFE identity checks on both sides.

pub mod configs;
pub mod peer;
pub mod reject;
pub mod session_name;
pub mod sessions;
pub mod verify;

pub use configs::{bootstrap_client, TlsConfigs, ALPN_H2, ALPN_H3};
pub use peer::{check_chain_current, current_peer_id};
pub use reject::RejectReason;
pub use session_name::{session_name, session_server_name};
pub use verify::Rejection;
