//! The UDP socket under every QUIC endpoint: large kernel buffers, and a
//! guard on segmentation offload. With path-MTU discovery allowed to grow
//! datagrams (up to 65,507 bytes on loopback), datagram size × GSO segments
//! can exceed the 65,507-byte limit of one UDP send, which fails the send
//! and kills the connection. This wrapper splits such a batch into several
//! sends that each fit, so GSO stays on at every MTU.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

use super::config::TunnelConfig;

/// The largest payload of one UDP send (IPv4: 65,535 − 20 − 8).
pub const MAX_UDP_SEND: usize = 65_507;

/// Binds a UDP socket with raised buffers and wraps it for quinn.
pub fn bind_udp(addr: SocketAddr, cfg: &TunnelConfig) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(false);
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = sock.set_recv_buffer_size(cfg.udp_buffer);
    let _ = sock.set_send_buffer_size(cfg.udp_buffer);
    sock.bind(&addr.into())?;
    let std_sock: std::net::UdpSocket = sock.into();
    let inner = quinn::TokioRuntime.wrap_udp_socket(std_sock)?;
    Ok(Arc::new(SegmentingSocket { inner }))
}

struct SegmentingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl fmt::Debug for SegmentingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentingSocket").finish_non_exhaustive()
    }
}

/// Splits `len` bytes of `segment`-sized datagrams into batches that each
/// fit one UDP send. Returns (offset, length) pairs.
pub fn batches(len: usize, segment: usize) -> Vec<(usize, usize)> {
    let per_batch = (MAX_UDP_SEND / segment.max(1)).max(1) * segment.max(1);
    let mut out = Vec::new();
    let mut off = 0;
    while off < len {
        let n = per_batch.min(len - off);
        out.push((off, n));
        off += n;
    }
    out
}

impl AsyncUdpSocket for SegmentingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        match transmit.segment_size {
            Some(seg) if transmit.contents.len() > MAX_UDP_SEND => {
                for (off, n) in batches(transmit.contents.len(), seg) {
                    let part = Transmit {
                        destination: transmit.destination,
                        ecn: transmit.ecn,
                        contents: &transmit.contents[off..off + n],
                        segment_size: if n > seg { Some(seg) } else { None },
                        src_ip: transmit.src_ip,
                    };
                    // A WouldBlock midway makes quinn retry the whole batch;
                    // the repeated datagrams are discarded by the peer.
                    self.inner.try_send(&part)?;
                }
                Ok(())
            }
            _ => self.inner.try_send(transmit),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_one_send_and_cover_everything() {
        for (len, seg) in [
            (130_000, 65_000),
            (200_000, 9_000),
            (1_452 * 64, 1_452),
            (100, 1_452),
        ] {
            let b = batches(len, seg);
            assert_eq!(b.iter().map(|(_, n)| n).sum::<usize>(), len);
            for (off, n) in &b {
                assert!(*n <= MAX_UDP_SEND, "{len}/{seg}: batch of {n}");
                assert_eq!(off % seg, 0, "batches start on a datagram boundary");
            }
        }
    }
}
