//! Open-loop load at a fixed request rate over keep-alive connections, with
//! coordinated-omission correction: a pacer thread (1 ns timer slack) hands
//! each request's intended send time to its connection (round robin), and
//! the latency recorded is completion minus that intended time, so requests
//! queued behind a slow one count their wait.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::http1;
use crate::histogram::Histogram;

pub struct FixedRate {
    pub latency: Histogram,
    pub errors: u64,
    /// Requests the pacer scheduled.
    pub scheduled: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// `rate` requests/s for `dur` over `conns` connections to `target`.
/// Must run on the client side's runtime.
pub async fn run(target: SocketAddr, rate: u64, dur: Duration, conns: usize) -> Result<FixedRate> {
    let total = (rate as f64 * dur.as_secs_f64()).round() as u64;
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    for _ in 0..conns {
        let mut conn = http1::connect(target).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        senders.push(tx);
        let errors = errors.clone();
        let first_error = first_error.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::default();
            while let Some(due) = rx.recv().await {
                if let Err(e) = http1::get(&mut conn).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error.lock().unwrap().get_or_insert(e.to_string());
                    match http1::connect(target).await {
                        Ok(c) => conn = c,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                    continue;
                }
                h.record(Instant::now().saturating_duration_since(due));
            }
            h
        }));
    }
    let pacer = std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            // SAFETY: prctl on the calling thread only.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
            let start = Instant::now() + Duration::from_millis(20);
            let interval = 1e9 / rate as f64;
            for i in 0..total {
                if crate::interrupt::interrupted() {
                    break;
                }
                let due = start + Duration::from_nanos((i as f64 * interval) as u64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let _ = senders[(i % senders.len() as u64) as usize].send(due);
            }
            // Dropping the senders ends the connection tasks once drained.
        })
        .map_err(|e| anyhow!("start the pacer thread: {e}"))?;
    let limit = dur + Duration::from_secs(30);
    let mut latency = Histogram::default();
    let deadline = tokio::time::Instant::now() + limit;
    for t in tasks {
        let h = tokio::time::timeout_at(deadline, t).await.map_err(|_| {
            anyhow!("fixed-rate run to {target}: requests still pending {limit:?} after the start")
        })??;
        latency.merge(&h);
    }
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    let first_error = first_error.lock().unwrap().clone();
    Ok(FixedRate {
        latency,
        errors: errors.load(Ordering::Relaxed),
        scheduled: total,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    /// A server that answers at once except for one 200 ms stall.
    async fn stalling_server() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if n == 300 {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stall_counts_for_every_request_scheduled_behind_it() {
        let addr = stalling_server().await;
        let r = run(addr, 1_000, Duration::from_millis(1_000), 1)
            .await
            .unwrap();
        assert_eq!(r.errors, 0);
        assert_eq!(r.latency.count(), 1_000);
        // About 200 requests were scheduled during the stall and waited for
        // it: measured from their intended send time, the worst tenth is
        // far above the ordinary sub-millisecond answer. Measured from the
        // actual send, only one request would be slow.
        let p90 = r.latency.quantile(0.9).unwrap();
        assert!(p90 > Duration::from_millis(20), "p90 {p90:?}");
        assert!(r.latency.max() >= Duration::from_millis(190));
        assert!(r.latency.quantile(0.5).unwrap() < Duration::from_millis(50));
    }
}
