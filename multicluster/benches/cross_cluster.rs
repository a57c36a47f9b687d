//! What the gateway hop costs: two linked clusters on 127.0.0.1 (the
//! two-cluster tests' fixture, in one process), the same application in
//! `west` reached from `west`'s own web edge (edge → edge) and from
//! `east`'s (edge → west's gateway → edge, inside an end-to-end inner
//! session). Prints a Markdown table: small-request latency p50/p99 and the
//! added latency, echo throughput on one connection, and the cost of the
//! first request from a fresh edge next to later (pooled) ones.
//!
//! `cargo bench -p ferry-multicluster --bench cross_cluster [-- --quick]`

#[path = "../tests/clusters/mod.rs"]
mod clusters;
#[path = "../../edge/tests/support/grpc_app.rs"]
mod grpc_app;
#[path = "../../edge/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clusters::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Opts {
    requests: usize,
    bulk: usize,
    fresh_edges: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Sequential small GETs on one keep-alive connection: (p50, p99).
async fn latency(addr: SocketAddr, n: usize) -> (Duration, Duration) {
    let client = support::http_client();
    for _ in 0..n / 10 {
        support::get(&client, addr, "/warm").await.unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, _, _) = support::get(&client, addr, "/").await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(status, 200);
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// `bytes` through the echo on one connection, both ways at once: Gb/s of
/// one direction.
async fn echo_throughput(addr: SocketAddr, bytes: usize) -> f64 {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = s.into_split();
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 256 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await.unwrap();
            left -= n;
        }
        wr.shutdown().await.unwrap();
    });
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0;
    while got < bytes {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0, "the echo ended after {got} of {bytes} bytes");
        got += n;
    }
    writer.await.unwrap();
    bytes as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9
}

/// A fresh web edge in `cluster` (nothing pooled): the first GET through
/// listener `which`, then the median of 20 more. Medians over `edges`.
async fn first_and_pooled(
    cluster: &Cluster,
    other: &str,
    which: usize,
    edges: usize,
) -> (Duration, Duration) {
    let mut firsts = Vec::new();
    let mut pooled = Vec::new();
    for _ in 0..edges {
        let listeners = [
            format!("api.default.svc.{other}:80"),
            format!("echo.default.svc.{other}:7"),
            format!("grpc.default.svc.{other}:50051"),
            "api.default:80".to_string(),
        ];
        let edge = Cluster::start_edge(
            cluster.dir.path(),
            cluster.name,
            cluster.control.grpc,
            "web",
            "127.0.0.1:0",
            &listeners,
        )
        .await;
        let addr = edge.outbound[which].0;
        let client = support::http_client();
        let t = Instant::now();
        let (status, _, _) = support::get(&client, addr, "/first").await.unwrap();
        firsts.push(t.elapsed());
        assert_eq!(status, 200);
        let mut later = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            support::get(&client, addr, "/again").await.unwrap();
            later.push(t.elapsed());
        }
        later.sort();
        pooled.push(later[later.len() / 2]);
        edge.shutdown().await;
    }
    firsts.sort();
    pooled.sort();
    (firsts[firsts.len() / 2], pooled[pooled.len() / 2])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo test --all-targets` runs bench binaries without `--bench`: a
    // smoke run there (the paths work, the table prints), no measuring.
    let opts = if !std::env::args().any(|a| a == "--bench") {
        Opts {
            requests: 20,
            bulk: 1 << 20,
            fresh_edges: 1,
        }
    } else if quick {
        Opts {
            requests: 500,
            bulk: 64 << 20,
            fresh_edges: 3,
        }
    } else {
        Opts {
            requests: 5000,
            bulk: 512 << 20,
            fresh_edges: 7,
        }
    };
    eprintln!("starting two linked clusters…");
    let (east, west) = linked().await;
    let local_api = west.listener(API_LOCAL);
    let remote_api = east.listener(API_REMOTE);
    let up = support::wait_until(Duration::from_secs(20), || async {
        matches!(
            support::get(&support::http_client(), remote_api, "/").await,
            Ok((200, _, _))
        )
    })
    .await;
    assert!(up, "west's api is reachable from east");

    eprintln!("latency, {} sequential requests per path…", opts.requests);
    let (l50, l99) = latency(local_api, opts.requests).await;
    let (r50, r99) = latency(remote_api, opts.requests).await;
    eprintln!("echo throughput, {} MiB per path…", opts.bulk >> 20);
    let local_bulk = echo_throughput(west.listener(ECHO_LOCAL), opts.bulk).await;
    let remote_bulk = echo_throughput(east.listener(ECHO_REMOTE), opts.bulk).await;
    eprintln!(
        "first requests from {} fresh edges per path…",
        opts.fresh_edges
    );
    let (lf, lp) = first_and_pooled(&west, "east", API_LOCAL, opts.fresh_edges).await;
    let (rf, rp) = first_and_pooled(&east, "west", API_REMOTE, opts.fresh_edges).await;

    println!("| measure | within west (edge → edge) | east → west (edge → gateway → edge) | added by the gateway hop |");
    println!("|---|---|---|---|");
    println!(
        "| small request, p50 | {} | {} | {} |",
        us(l50),
        us(r50),
        us(r50.saturating_sub(l50))
    );
    println!(
        "| small request, p99 | {} | {} | {} |",
        us(l99),
        us(r99),
        us(r99.saturating_sub(l99))
    );
    println!(
        "| echo, one connection, each way | {local_bulk:.2} Gb/s | {remote_bulk:.2} Gb/s | {:.2}× |",
        remote_bulk / local_bulk
    );
    println!(
        "| first request from a fresh edge (median) | {} | {} | {} |",
        us(lf),
        us(rf),
        us(rf.saturating_sub(lf))
    );
    println!(
        "| later requests, pooled (median) | {} | {} | {} |",
        us(lp),
        us(rp),
        us(rp.saturating_sub(lp))
    );
    east.shutdown().await;
    west.shutdown().await;
}
