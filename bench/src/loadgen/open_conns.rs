//! Bursts of application connections, all opened at the same moment with
//! one small GET each: to one entry, held open (idle keep-alive) until
//! dropped; or one to each of many entries, closed once answered.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::http1;

/// How a burst went.
#[derive(Debug, Default)]
pub struct Burst {
    /// From the first connect to the last response.
    pub all_answered: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Burst {
    fn failed(&mut self, e: anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert(format!("{e:#}"));
    }
}

pub struct Held {
    /// The open connections; dropping them closes them.
    pub conns: Vec<http1::Conn>,
    pub burst: Burst,
}

/// Runs one task per item at once; collects what they return.
async fn at_once<T: Send + 'static>(
    tasks: impl IntoIterator<Item = impl std::future::Future<Output = Result<T>> + Send + 'static>,
) -> Result<(Vec<T>, Burst)> {
    crate::interrupt::check()?;
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in tasks {
        set.spawn(t);
    }
    let mut burst = Burst::default();
    let mut ok = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(v) => ok.push(v),
            Err(e) => burst.failed(e),
        }
    }
    burst.all_answered = t0.elapsed();
    Ok((ok, burst))
}

/// Opens `count` connections to `target` at once, one request each, and
/// keeps them.
pub async fn open(target: SocketAddr, count: usize) -> Result<Held> {
    let (conns, burst) = at_once((0..count).map(|_| async move {
        let mut c = http1::connect(target).await?;
        http1::get(&mut c).await?;
        anyhow::Ok(c)
    }))
    .await?;
    Ok(Held { conns, burst })
}

/// One fresh connection and one request to each of `targets`, all at once.
pub async fn first_requests(targets: Vec<SocketAddr>) -> Result<Burst> {
    let (_, burst) = at_once(targets.into_iter().map(super::new_conn::one)).await?;
    Ok(burst)
}
