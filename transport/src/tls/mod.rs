//! rustls configuration shared by QUIC and TCP: TLS 1.3 only, mutual always,
//! SPIFFE identity checks on both sides.

pub mod configs;
pub mod reject;
pub mod verify;

pub use configs::{bootstrap_client, peer_id_from_chain, TlsConfigs, ALPN_H2, ALPN_H3};
pub use reject::RejectReason;
pub use verify::Rejection;
