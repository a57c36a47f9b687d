//! The NFQUEUE delayer: holds every packet an iptables `NFQUEUE` rule
//! hands it for a fixed time, then accepts it (order is kept). Run it
//! in-process on a thread inside a namespace ([`Delayer`]), or as the
//! `ferry-netem delay` command.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nfq::{Queue, Verdict};

use crate::error::{NetemError, Result};
use crate::netns::Netns;

/// Longest sleep between two looks at the queue: the delay's granularity.
const TICK: Duration = Duration::from_micros(500);
/// Packets the kernel may hold for us at once (delay × rate must fit).
const KERNEL_QUEUE_LEN: u32 = 65_536;

/// What a delayer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelayStats {
    /// Packets held and then accepted.
    pub packets: u64,
}

/// Serves NFQUEUE `queue` in the calling thread's namespace until `stop`
/// is set: every packet is accepted `delay` after it arrived. `bound` is
/// called once the queue is bound (packets are being taken).
pub fn serve(
    queue: u16,
    delay: Duration,
    stop: &AtomicBool,
    bound: impl FnOnce(),
) -> Result<DelayStats> {
    let err = |source| NetemError::Queue { queue, source };
    let mut q = Queue::open().map_err(err)?;
    q.bind(queue).map_err(err)?;
    // Metadata only: the verdict needs no payload.
    q.set_copy_range(queue, 0).map_err(err)?;
    q.set_queue_max_len(queue, KERNEL_QUEUE_LEN).map_err(err)?;
    q.set_nonblocking(true);
    bound();

    let mut held = VecDeque::new();
    let mut stats = DelayStats::default();
    while !stop.load(Ordering::Relaxed) {
        // Take everything that has arrived.
        loop {
            match q.recv() {
                Ok(msg) => held.push_back((Instant::now() + delay, msg)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            }
        }
        // Release what is due.
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, mut msg) = held.pop_front().expect("front exists");
            msg.set_verdict(Verdict::Accept);
            q.verdict(msg).map_err(err)?;
            stats.packets += 1;
        }
        let next = held
            .front()
            .map(|(due, _)| due.saturating_duration_since(now))
            .unwrap_or(TICK);
        std::thread::sleep(next.min(TICK));
    }
    // Stopping: let whatever is still held go now rather than drop it.
    for (_, mut msg) in held {
        msg.set_verdict(Verdict::Accept);
        let _ = q.verdict(msg);
    }
    let _ = q.unbind(queue);
    Ok(stats)
}

/// A delayer running on its own thread inside a namespace; stopped (and
/// its thread joined) on drop.
#[derive(Debug)]
pub struct Delayer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<DelayStats>>>,
}

impl Delayer {
    /// Starts serving `queue` inside `ns` (or the caller's namespace when
    /// `None`); returns once the queue is bound.
    pub fn start(ns: Option<&Netns>, queue: u16, delay: Duration) -> Result<Delayer> {
        let file = match ns {
            Some(ns) => Some((
                ns.name().to_string(),
                std::fs::File::open(format!("/run/netns/{}", ns.name())).map_err(|source| {
                    NetemError::Enter {
                        name: ns.name().to_string(),
                        source,
                    }
                })?,
            )),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("ferry-netem-delay-{queue}"))
            .spawn(move || {
                if let Some((name, file)) = file {
                    use std::os::fd::AsRawFd;
                    // SAFETY: setns on this thread only, with a valid
                    // namespace file descriptor.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(NetemError::Enter {
                            name,
                            source: std::io::Error::last_os_error(),
                        });
                    }
                }
                serve(queue, delay, &flag, || {
                    let _ = tx.send(());
                })
            })
            .map_err(|source| NetemError::Queue { queue, source })?;
        let mut delayer = Delayer {
            stop,
            thread: Some(thread),
        };
        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
            // The thread ended (its error) or never bound.
            return Err(match delayer.finish() {
                Err(e) => e,
                Ok(_) => NetemError::Queue {
                    queue,
                    source: std::io::Error::new(ErrorKind::TimedOut, "queue not bound in 5 s"),
                },
            });
        }
        Ok(delayer)
    }

    /// Stops the delayer and returns what it did.
    pub fn stop(mut self) -> Result<DelayStats> {
        self.finish()
    }

    fn finish(&mut self) -> Result<DelayStats> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(NetemError::Queue {
                    queue: 0,
                    source: std::io::Error::other("the delayer thread panicked"),
                })
            }),
            None => Ok(DelayStats::default()),
        }
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
