//! The original destination of a connection that iptables redirected to
//! the transparent listener (`SO_ORIGINAL_DST`, IPv4).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use tokio::net::TcpStream;

const SO_ORIGINAL_DST: libc::c_int = 80;

/// The address the client originally connected to.
pub fn original_dst(tcp: &TcpStream) -> std::io::Result<SocketAddr> {
    let fd = tcp.as_raw_fd();
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` is a valid, writable sockaddr_in of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            &mut addr as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    let port = u16::from_be(addr.sin_port);
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}
