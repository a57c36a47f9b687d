//! [`UdpBlackhole`]: a network where UDP is silently dropped, without root.
//! One loopback port number serves both protocols: TCP connections to it
//! are forwarded to the real destination, UDP datagrams to it are counted
//! and discarded. Put its address where peers look for a server and they
//! see the server's TCP but never an answer to their QUIC.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A running blackhole; its tasks stop when it is dropped.
pub struct UdpBlackhole {
    addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl UdpBlackhole {
    /// Listens on a free loopback port (the same number for UDP and TCP)
    /// and forwards its TCP to `to`.
    pub async fn start(to: SocketAddr) -> std::io::Result<Self> {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            // The UDP port's TCP twin may be taken; try another pair.
            if let Ok(tcp) = TcpListener::bind(udp.local_addr()?).await {
                break (udp, tcp);
            }
        };
        let addr = tcp.local_addr()?;
        let dropped = Arc::new(AtomicU64::new(0));
        let count = dropped.clone();
        let swallow = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while udp.recv_from(&mut buf).await.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        let forward = tokio::spawn(async move {
            while let Ok((mut a, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut b) = TcpStream::connect(to).await {
                        // A relay adds no Nagle delays of its own.
                        let _ = (a.set_nodelay(true), b.set_nodelay(true));
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            dropped,
            tasks: vec![swallow, forward],
        })
    }

    /// The address to give peers (TCP forwarded, UDP dropped).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for UdpBlackhole {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tcp_is_forwarded_and_udp_is_dropped() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let hole = UdpBlackhole::start(to).await.unwrap();
        let mut c = TcpStream::connect(hole.addr()).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(b"quic?", hole.addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let answer =
            tokio::time::timeout(std::time::Duration::from_millis(200), udp.recv(&mut buf)).await;
        assert!(answer.is_err(), "nothing answers UDP");
        for _ in 0..100 {
            if hole.dropped() == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the datagram was counted as dropped");
    }
}
