//! Closed-loop load: `conns` keep-alive connections each sending the next
//! request as soon as the previous answer arrives, for a fixed time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::http1;

pub struct MaxRate {
    pub per_sec: f64,
    pub errors: u64,
    /// Request latency (closed loop: each request's own time).
    pub latency: crate::histogram::Histogram,
}

/// Must run on the client side's runtime. `during` is called once, near the
/// end of the run (to sample memory under load).
pub async fn run(
    target: SocketAddr,
    dur: Duration,
    conns: usize,
    during: impl FnOnce() + Send,
) -> Result<MaxRate> {
    run_path(target, "/", dur, conns, during).await
}

/// As [`run`], requesting `path`.
pub async fn run_path(
    target: SocketAddr,
    path: &'static str,
    dur: Duration,
    conns: usize,
    during: impl FnOnce() + Send,
) -> Result<MaxRate> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // All connections at once: one after the other, each paid a round trip
    // (1.3 s for 64 at 20 ms RTT) and, on a lossy link, a 1 s SYN
    // retransmission for every lost handshake packet, before any counting.
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..conns {
        connecting.spawn(http1::connect(target));
    }
    let mut ready = Vec::with_capacity(conns);
    while let Some(c) = connecting.join_next().await {
        ready.push(c??);
    }
    let mut tasks = Vec::new();
    for mut conn in ready {
        let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = crate::histogram::Histogram::default();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                if http1::get_path(&mut conn, path).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                    h.record(t0.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    match http1::connect(target).await {
                        Ok(c) => conn = c,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
            h
        }));
    }
    // Short ramp-up, then count.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (n0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(dur.mul_f64(0.9)).await;
    during();
    tokio::time::sleep(dur.mul_f64(0.1)).await;
    let (n1, el) = (done.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    let mut latency = crate::histogram::Histogram::default();
    for t in tasks {
        // Each task ends within one request timeout.
        if let Ok(Ok(h)) = tokio::time::timeout(http1::REQUEST_TIMEOUT * 2, t).await {
            latency.merge(&h);
        }
    }
    Ok(MaxRate {
        per_sec: (n1 - n0) as f64 / el.as_secs_f64(),
        errors: errors.load(Ordering::Relaxed),
        latency,
    })
}
