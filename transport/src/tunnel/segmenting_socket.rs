//! The UDP socket under every QUIC endpoint: large kernel buffers, and a
//! guard on segmentation offload. With path-MTU discovery allowed to grow
//! datagrams (up to 65,507 bytes on loopback), datagram size × GSO segments
//! can exceed the 65,507-byte limit of one UDP send, which fails the send
//! and kills the connection. This wrapper splits such a batch into several
//! sends that each fit, so GSO stays on at every MTU.
//!
//! It also bounds quinn's receive buffer: quinn sizes it as the largest
//! datagram × the GRO segments the socket may coalesce (64) × 32 receive
//! slots, which at 65,507-byte datagrams is 128 MiB of address space per
//! endpoint, while the kernel never coalesces more than 512 KiB into one
//! receive ([`receive_segments`]).

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

/// The most the kernel coalesces into one GRO receive: `GSO_MAX_SIZE`
/// (512 KiB, reachable only where BIG TCP raised `gro_max_size`; 64 KiB
/// otherwise).
pub const MAX_GRO_BYTES: usize = 512 * 1024;

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
    Ok(Arc::new(SegmentingSocket {
        inner,
        max_datagram: usize::from(cfg.max_udp_payload),
    }))
}

struct SegmentingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// The largest datagram the endpoint accepts (its `max_udp_payload`).
    max_datagram: usize,
}

/// How many GRO segments of up to `max_datagram` bytes quinn should size
/// each receive slot for: what the socket allows (`gro`), but no more
/// than it takes to hold the largest receive the kernel can coalesce.
pub fn receive_segments(gro: usize, max_datagram: usize) -> usize {
    let datagram = max_datagram.clamp(1, 64 * 1024);
    gro.min(MAX_GRO_BYTES.div_ceil(datagram)).max(1)
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
        receive_segments(self.inner.max_receive_segments(), self.max_datagram)
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_slot_holds_the_largest_gro_receive_and_no_more() {
        // quinn's own sizing where datagrams are small: GRO's 64 segments.
        assert_eq!(receive_segments(64, 1452), 64);
        assert_eq!(receive_segments(64, 1200), 64);
        // Jumbo frames: 59 × 8,952 bytes ≥ 512 KiB.
        assert_eq!(receive_segments(64, 8952), 59);
        // Loopback's 64 KiB datagrams: 9 per slot, not 64 (4 MiB).
        assert_eq!(receive_segments(64, 65_507), 9);
        assert_eq!(receive_segments(64, 65_527), 9);
        // No GRO: one datagram per slot, whatever its size.
        assert_eq!(receive_segments(1, 65_507), 1);
        for d in [1200, 1452, 8952, 20_000, 65_507] {
            let n = receive_segments(64, d);
            assert!(n * d >= MAX_GRO_BYTES || n == 64, "{d}: {n}");
        }
    }

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
