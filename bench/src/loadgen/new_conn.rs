//! New application connections, one after the other: connect, one small GET,
//! close. Each timed from `connect` to the complete response.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};

use super::http1;
use crate::histogram::Histogram;

pub struct NewConns {
    pub latency: Histogram,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// `count` sequential fresh connections to `target`, each one request.
pub async fn run(target: SocketAddr, count: usize) -> Result<NewConns> {
    let mut latency = Histogram::default();
    let mut errors = 0;
    let mut first_error = None;
    for _ in 0..count {
        crate::interrupt::check()?;
        let t0 = Instant::now();
        let r = async {
            let mut c = http1::connect(target).await?;
            http1::get(&mut c).await
        }
        .await;
        match r {
            Ok(()) => latency.record(t0.elapsed()),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    Ok(NewConns {
        latency,
        errors,
        first_error,
    })
}

/// One fresh connection and one request: its time (for cold starts).
pub async fn one(target: SocketAddr) -> Result<std::time::Duration> {
    let t0 = Instant::now();
    let mut c = http1::connect(target).await?;
    http1::get(&mut c)
        .await
        .with_context(|| format!("first request through {target}"))?;
    Ok(t0.elapsed())
}
