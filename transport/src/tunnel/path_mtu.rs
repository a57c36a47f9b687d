//! How large a datagram path-MTU discovery may try towards one peer: the
//! MTU of the route the kernel would use to reach it, less the IP and UDP
//! headers, never above the configured ceiling (`max_udp_payload`).
//!
//! QUIC starts every connection at 1,200-byte datagrams and discovers the
//! path's MTU by probing up to an upper bound. A fixed bound of 1,452 bytes
//! (quinn's, sized for a 1,500-byte path) leaves a jumbo-frame network
//! (MTU 9,000, as in many datacenters) at a sixth of the packet size it
//! could use, and QUIC's cost is per packet. Asking the kernel for the
//! route's MTU sets the bound per connection with no setting to tune: a
//! 1,500-byte link gives 1,472 (IPv4) or 1,452 (IPv6), a 9,000-byte link
//! 8,972, loopback 65,507. Discovery still probes: a path whose routers
//! carry less than the first hop's MTU settles below the bound.

use std::net::{IpAddr, SocketAddr};

/// The default ceiling (`max_udp_payload`): the largest payload of one
/// UDP send over IPv4, so the route alone sets the bound.
pub const DEFAULT_CEILING: u16 = 65_507;

/// The bound when the route cannot be looked up: a 1,500-byte path with
/// IPv6 headers, quinn's own default.
pub const FALLBACK: u16 = 1452;

/// IPv4 (20 bytes) and UDP (8) headers.
const V4_HEADERS: u32 = 28;
/// IPv6 (40 bytes) and UDP (8) headers.
const V6_HEADERS: u32 = 48;

/// The upper bound for path-MTU discovery towards `peer`: the route's
/// UDP payload, at most `ceiling`. Falls back to [`FALLBACK`] (at most
/// `ceiling`) when the kernel has no route or cannot say.
pub fn upper_bound(ceiling: u16, peer: SocketAddr) -> u16 {
    bound(ceiling, route_payload(peer))
}

/// The bound for a route carrying `route` bytes of UDP payload (`None`:
/// unknown), at most `ceiling`.
fn bound(ceiling: u16, route: Option<u32>) -> u16 {
    let route = route.unwrap_or(u32::from(FALLBACK));
    ceiling.min(u16::try_from(route).unwrap_or(u16::MAX))
}

/// The largest UDP payload the route to `peer` carries in one IP packet
/// (the route's MTU less the headers), if the kernel says.
pub fn route_payload(peer: SocketAddr) -> Option<u32> {
    // A v4 peer seen on a dual-stack socket (`::ffff:a.b.c.d`) travels as
    // IPv4; a v6 one keeps its scope (a link-local address needs it).
    let peer = match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => peer,
        },
        v4 => v4,
    };
    let mtu = route_mtu(peer).ok()?;
    let headers = if peer.is_ipv4() {
        V4_HEADERS
    } else {
        V6_HEADERS
    };
    mtu.checked_sub(headers).filter(|p| *p >= 1200)
}

/// The MTU of the route to `peer`: a UDP socket connected to it (nothing
/// is sent) and the kernel's `IP_MTU` / `IPV6_MTU` for that route.
#[cfg(target_os = "linux")]
fn route_mtu(peer: SocketAddr) -> std::io::Result<u32> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::AsRawFd;

    let sock = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))?;
    sock.connect(&peer.into())?;
    let (level, name) = match peer {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mtu` and `len` are valid for writes of the sizes given, and
    // the descriptor is open for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    u32::try_from(mtu).map_err(|_| std::io::Error::other(format!("negative route MTU {mtu}")))
}

#[cfg(not(target_os = "linux"))]
fn route_mtu(_peer: SocketAddr) -> std::io::Result<u32> {
    Err(std::io::Error::other("route MTU lookup is Linux-only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)
    }

    fn lo_mtu() -> u32 {
        std::fs::read_to_string("/sys/class/net/lo/mtu")
            .expect("loopback's MTU")
            .trim()
            .parse::<u32>()
            .expect("a number")
    }

    #[test]
    fn loopback_route_gives_loopbacks_mtu_less_ipv4_headers() {
        let mtu = lo_mtu();
        // The kernel caps a route's MTU at IP's 65,535 (lo's is 65,536).
        let want = mtu.min(65_535) - 28;
        assert_eq!(route_payload(lo(4143)), Some(want), "IPv4 route over lo");
        // Seen on a dual-stack socket, the same peer is still IPv4.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4143".parse().unwrap();
        assert_eq!(route_payload(mapped), Some(want));
    }

    #[test]
    fn ipv6_routes_lose_ipv6_headers() {
        // Where the host has IPv6 on loopback (as Linux does unless it is
        // disabled), [::1] routes over lo with 40-byte IP headers (and,
        // unlike IPv4's, the route's MTU is not capped at 65,535); where
        // it has none, there is no route and the bound falls back.
        let peer: SocketAddr = "[::1]:4143".parse().unwrap();
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            assert_eq!(route_payload(peer), Some(lo_mtu() - 48));
        } else {
            assert_eq!(route_payload(peer), None);
            assert_eq!(upper_bound(65_507, peer), FALLBACK);
        }
    }

    #[test]
    fn the_bound_never_exceeds_the_ceiling() {
        assert_eq!(upper_bound(1452, lo(4143)), 1452);
        assert_eq!(upper_bound(9000, lo(4143)), 9000);
        let lo_payload = route_payload(lo(4143)).expect("route over lo");
        assert_eq!(upper_bound(65_507, lo(4143)), lo_payload.min(65_507) as u16);
    }

    #[test]
    fn an_unknown_route_is_taken_for_a_1500_byte_path() {
        assert_eq!(bound(65_507, None), FALLBACK);
        assert_eq!(bound(1300, None), 1300);
        assert_eq!(bound(65_507, Some(8972)), 8972);
        assert_eq!(bound(1452, Some(8972)), 1452);
        assert_eq!(bound(65_507, Some(65_508)), 65_507);
        assert_eq!(bound(65_527, Some(1 << 20)), 65_527);
    }
}
