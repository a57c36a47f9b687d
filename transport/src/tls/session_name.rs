//! The server name a dial hands rustls, which files the peer's session
//! tickets under it. Peers are identified by their SPIFFE ID (checked by
//! Ferry's own verifier), so the name serves nothing else and never goes on
//! the wire: the client configs send no SNI. It names the peer's address
//! *and port*, so two peers behind one IP (two edges on one host) keep
//! their own tickets instead of being offered each other's, whose early
//! data would be refused.

use std::net::{IpAddr, SocketAddr};

use rustls_pki_types::ServerName;

/// `p<port>.<address, '-' between its parts>.peer.invalid` (`.invalid` is
/// reserved, RFC 2606): a valid DNS name for every socket address.
pub fn session_name(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => join(v4.octets().iter().map(|o| o.to_string())),
        IpAddr::V6(v6) => join(v6.segments().iter().map(|s| format!("{s:x}"))),
    };
    format!("p{}.{ip}.peer.invalid", addr.port())
}

/// [`session_name`] as rustls takes it.
pub fn session_server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::try_from(session_name(addr))
        // Unreachable (digits, hex and dashes); the IP keeps resumption
        // working per address should it ever happen.
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()))
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_per_address_and_port_and_each_a_dns_name() {
        let addrs: Vec<SocketAddr> = [
            "127.0.0.1:4143",
            "127.0.0.1:4144",
            "10.0.0.7:4143",
            "[fd00::7]:4143",
            "[::ffff:10.0.0.7]:4143",
            "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let names: Vec<String> = addrs.iter().map(|a| session_name(*a)).collect();
        assert_eq!(names[0], "p4143.127-0-0-1.peer.invalid");
        assert_eq!(names[3], "p4143.fd00-0-0-0-0-0-0-7.peer.invalid");
        for (a, n) in addrs.iter().zip(&names) {
            assert!(
                matches!(session_server_name(*a), ServerName::DnsName(_)),
                "{n} is not taken as a DNS name"
            );
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
