//! TCP listeners with a deep accept queue. tokio's `TcpListener::bind`
//! asks for a backlog of 128 here; a burst of new connections larger than
//! that (a thousand application connections opened at once, every edge
//! reconnecting to a restarted peer or control plane) overflows it, and the
//! kernel drops the SYNs, which the clients resend only after a second.
//! Every listener Ferry accepts on goes through [`bind`].

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue asked for (the kernel caps it at `net.core.somaxconn`,
/// 4,096 by default since Linux 5.4).
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (with `SO_REUSEADDR`, so a restart does not wait for the
/// old connections' TIME_WAIT) and listens with [`BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 300 connections arrive and none is accepted yet: with tokio's
    /// default queue some of them would wait a second for a resent SYN.
    #[tokio::test]
    async fn a_burst_larger_than_the_default_backlog_connects_at_once() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..300 {
            tasks.spawn(tokio::time::timeout(
                Duration::from_millis(800),
                tokio::net::TcpStream::connect(addr),
            ));
        }
        let mut held = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let conn = r
                .unwrap()
                .expect("connect waited for a resent SYN: the accept queue overflowed")
                .unwrap();
            held.push(conn);
        }
        assert_eq!(held.len(), 300);
        // The queue holds them all until they are accepted.
        for _ in 0..300 {
            tokio::time::timeout(Duration::from_secs(5), l.accept())
                .await
                .unwrap()
                .unwrap();
        }
    }
}
