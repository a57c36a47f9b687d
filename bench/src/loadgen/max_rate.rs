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
}

/// Must run on the client side's runtime. `during` is called once, near the
/// end of the run (to sample memory under load).
pub async fn run(
    target: SocketAddr,
    dur: Duration,
    conns: usize,
    during: impl FnOnce() + Send,
) -> Result<MaxRate> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut conn = http1::connect(target).await?;
        let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if http1::get(&mut conn).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    match http1::connect(target).await {
                        Ok(c) => conn = c,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
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
    for t in tasks {
        // Each task ends within one request timeout.
        let _ = tokio::time::timeout(http1::REQUEST_TIMEOUT * 2, t).await;
    }
    Ok(MaxRate {
        per_sec: (n1 - n0) as f64 / el.as_secs_f64(),
        errors: errors.load(Ordering::Relaxed),
    })
}
