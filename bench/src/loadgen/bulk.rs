//! Bulk transfer: N flows (any async writers: plain TCP into a proxy, or a
//! raw QUIC/TLS stream) write 256 KiB chunks as fast as they can; the
//! receiving side counts bytes. After a warm-up, the bytes counted and the
//! CPU time used in a fixed window give throughput and CPU-seconds per GiB.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub type Flow = Box<dyn AsyncWrite + Unpin + Send>;

pub const CHUNK: usize = 256 * 1024;

pub struct Bulk {
    pub gbps: f64,
    /// CPU seconds per GiB of the measured processes (if any).
    pub cpu_s_per_gib: Option<f64>,
}

fn payload() -> Arc<Vec<u8>> {
    // Pseudo-random bytes: nothing on the path compresses, but be honest.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = vec![0u8; CHUNK];
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    Arc::new(v)
}

/// Runs the flows on `rt` for `warmup + dur`. `count` reads the receiver's
/// byte counter; `cpu` the CPU time of what is measured (None: nothing).
pub fn run(
    rt: &tokio::runtime::Handle,
    flows: Vec<Flow>,
    warmup: Duration,
    dur: Duration,
    count: &dyn Fn() -> u64,
    cpu: &dyn Fn() -> Option<Duration>,
) -> Result<Bulk> {
    let stop = Arc::new(AtomicBool::new(false));
    let data = payload();
    let mut writers = Vec::new();
    for mut f in flows {
        let (stop, data) = (stop.clone(), data.clone());
        writers.push(rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&data).await?;
            }
            f.shutdown().await?;
            anyhow::Ok(())
        }));
    }
    std::thread::sleep(warmup);
    crate::interrupt::check()?;
    let (b0, c0, t0) = (count(), cpu(), Instant::now());
    std::thread::sleep(dur);
    let (b1, c1, el) = (count(), cpu(), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    let mut failure = None;
    for w in writers {
        let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), w).await });
        match r {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failure = Some(format!("a flow failed: {e:#}")),
            Ok(Err(e)) => failure = Some(format!("a flow panicked: {e}")),
            Err(_) => failure = Some("a flow did not finish within 15 s after the stop".into()),
        }
    }
    // Let the path drain so the next measurement starts quiet.
    let mut last = count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now == last {
            break;
        }
        last = now;
    }
    if let Some(f) = failure {
        bail!(f);
    }
    let bytes = b1 - b0;
    if bytes == 0 {
        return Err(anyhow!("no bytes arrived in {dur:?}"));
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Ok(Bulk {
        gbps: bytes as f64 * 8.0 / el.as_secs_f64() / 1e9,
        cpu_s_per_gib: match (c0, c1) {
            (Some(a), Some(b)) => Some((b - a).as_secs_f64() / gib),
            _ => None,
        },
    })
}
