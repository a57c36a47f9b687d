//! The tokio runtime a long-lived command runs on, sized by `--threads`.
//!
//! One thread runs everything on tokio's current-thread scheduler: no task
//! is ever handed to another worker, so a proxied request costs no
//! cross-thread wake-ups (futex calls, run-queue hand-offs). Measured on the
//! benchmark machine at 1,000 requests/s, that took the server edge from
//! about 240 to 170 µs of CPU per request and its futex calls from 4.6 to
//! none (docs/benchmarks.md, "Performance fixes, 8"). More threads use
//! tokio's work-stealing scheduler, for a proxy that must use more than one
//! core.

use std::io;

use clap::Args;
use tokio::runtime::{Builder, Runtime};

/// The largest `--threads` accepted.
const MAX_THREADS: u16 = 1024;

/// `--threads` (or `FERRY_THREADS`): how many threads run the proxy.
#[derive(Debug, Clone, Copy, Args)]
pub struct ThreadsArg {
    /// Threads that run the proxy: 1 runs everything on one thread (the
    /// least CPU per request; an edge's default), 0 one per CPU (the
    /// default of the control plane and the gateway), N exactly N.
    #[arg(
        long,
        env = "FERRY_THREADS",
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(0..=i64::from(MAX_THREADS))
    )]
    pub threads: Option<u16>,
}

impl ThreadsArg {
    /// The thread count given, else `default` (0 = one per CPU).
    pub fn or(self, default: u16) -> u16 {
        self.threads.unwrap_or(default)
    }
}

/// A runtime with `threads` worker threads (0: one per CPU the process may
/// use; 1: the current-thread scheduler on the calling thread).
pub fn build(threads: u16) -> io::Result<Runtime> {
    match threads {
        1 => Builder::new_current_thread().enable_all().build(),
        n => {
            let workers = match n {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => usize::from(n),
            };
            Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number of distinct threads that ran `tasks` spawned tasks, each
    /// of which blocks its thread for a while (another worker, if there
    /// were one, would take the next).
    fn threads_used(rt: &Runtime, tasks: usize) -> usize {
        rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    tokio::spawn(async {
                        // Blocks its worker so the next task needs another.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        std::thread::current().id()
                    })
                })
                .collect();
            let mut ids = std::collections::HashSet::new();
            for h in handles {
                ids.insert(h.await.expect("task finished"));
            }
            ids.len()
        })
    }

    /// The thread a spawned task runs on.
    fn spawned_task_thread(rt: &Runtime) -> std::thread::ThreadId {
        rt.block_on(async {
            tokio::spawn(async { std::thread::current().id() })
                .await
                .expect("task finished")
        })
    }

    #[test]
    fn one_thread_runs_every_task_on_the_calling_thread() {
        let rt = build(1).expect("runtime");
        let caller = std::thread::current().id();
        let ran_on = spawned_task_thread(&rt);
        assert_eq!(ran_on, caller);
        assert_eq!(threads_used(&rt, 4), 1);
    }

    #[test]
    fn n_threads_are_workers_besides_the_calling_thread() {
        let rt = build(3).expect("runtime");
        assert_eq!(rt.metrics().num_workers(), 3);
        let caller = std::thread::current().id();
        let ran_on = spawned_task_thread(&rt);
        assert_ne!(ran_on, caller);
    }

    #[test]
    fn zero_means_one_worker_per_cpu() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let rt = build(0).expect("runtime");
        assert_eq!(rt.metrics().num_workers(), cpus);
    }
}
