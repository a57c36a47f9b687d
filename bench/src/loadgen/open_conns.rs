//! A burst of application connections: N opened at once, each with one
//! small GET, then held open (idle keep-alive) until dropped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::http1;

pub struct Held {
    /// The open connections; dropping them closes them.
    pub conns: Vec<http1::Conn>,
    /// From the first connect to the last response.
    pub all_answered: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Opens `count` connections to `target` at once, one request each.
pub async fn open(target: SocketAddr, count: usize) -> Result<Held> {
    crate::interrupt::check()?;
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        tasks.spawn(async move {
            let mut c = http1::connect(target).await?;
            http1::get(&mut c).await?;
            anyhow::Ok(c)
        });
    }
    let mut held = Held {
        conns: Vec::with_capacity(count),
        all_answered: Duration::ZERO,
        errors: 0,
        first_error: None,
    };
    while let Some(r) = tasks.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(c) => held.conns.push(c),
            Err(e) => {
                held.errors += 1;
                held.first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    held.all_answered = t0.elapsed();
    Ok(held)
}
