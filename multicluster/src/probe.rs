//! The gateway health probe: `GET /ready` on the gateway's admin port over
//! plain HTTP/1.1; a `200` within the timeout means up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Consecutive failed probes after which a gateway is down.
pub const FAILURES_TO_DOWN: u32 = 3;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("answered {0:?}, not 200")]
    Status(String),
}

/// Probes `addr` once; returns the latency of a `200`.
pub async fn probe(addr: SocketAddr) -> Result<Duration, ProbeError> {
    let started = Instant::now();
    tokio::time::timeout(PROBE_TIMEOUT, ready(addr))
        .await
        .map_err(|_| ProbeError::Timeout(PROBE_TIMEOUT))??;
    Ok(started.elapsed())
}

async fn ready(addr: SocketAddr) -> Result<(), ProbeError> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(
        format!("GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut status = String::new();
    BufReader::new(tcp).read_line(&mut status).await?;
    let status = status.trim_end();
    match status.split(' ').nth(1) {
        Some("200") => Ok(()),
        _ => Err(ProbeError::Status(status.to_string())),
    }
}

/// Counts consecutive failures: up after any success, down after
/// [`FAILURES_TO_DOWN`] failures in a row; unknown (`None`) until either.
#[derive(Debug, Default)]
pub struct Health {
    failures: u32,
    up: Option<bool>,
}

impl Health {
    /// Records one probe result; returns the new state if it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        let now = if ok {
            self.failures = 0;
            true
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.failures < FAILURES_TO_DOWN {
                return None;
            }
            false
        };
        (self.up != Some(now)).then(|| {
            self.up = Some(now);
            now
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_at_first_success_down_after_three_failures() {
        let mut h = Health::default();
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(false));
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), Some(true));
    }

    #[test]
    fn down_without_ever_being_up() {
        let mut h = Health::default();
        h.record(false);
        h.record(false);
        assert_eq!(h.record(false), Some(false));
    }
}
