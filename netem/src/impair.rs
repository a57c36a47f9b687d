//! Impairing the link between two hosts: random loss and a fixed delay in
//! each direction, or UDP blocked. Everything is undone when the returned
//! guard is dropped (and in any case when the namespaces go).

use std::time::Duration;

use crate::delay::{DelayStats, Delayer};
use crate::error::{NetemError, Result};
use crate::hosts::{TwoHosts, DEV};
use crate::rule::Rule;

/// The NFQUEUE number the delayers use (queues are per namespace).
const QUEUE: u16 = 0;

/// Conditions applied to each direction of the link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Probability (0..=1) that a packet is dropped.
    pub loss: f64,
    /// How long each packet is held before it is sent.
    pub delay: Duration,
}

/// Active impairment of a link; removed on drop.
#[derive(Debug)]
pub struct Impaired {
    loss: Vec<Rule>,
    // Queue rules go before their delayers on drop, so no packet is queued
    // for a stopped delayer (they bypass a queue nobody serves anyway).
    queue: Vec<Rule>,
    delayers: Vec<Delayer>,
}

impl Impaired {
    /// Packets dropped so far by the loss rules (both directions).
    pub fn dropped(&self) -> Result<u64> {
        self.loss.iter().map(Rule::packets).sum()
    }

    /// Removes the impairment; the delayers' statistics (summed).
    pub fn remove(mut self) -> Result<DelayStats> {
        for rule in self.loss.drain(..).chain(self.queue.drain(..)) {
            rule.remove()?;
        }
        let mut total = DelayStats::default();
        for d in self.delayers.drain(..) {
            total.packets += d.stop()?.packets;
        }
        Ok(total)
    }
}

impl TwoHosts {
    /// Applies `imp` to both directions: each host drops at random what it
    /// receives (`statistic` on `INPUT`) and delays the rest (an NFQUEUE
    /// rule after it on `INPUT`, served by a [`Delayer`] in its namespace).
    ///
    /// The delay is on the receiving side on purpose. A packet held on the
    /// sender's `OUTPUT` is still charged to its socket, and TCP Small
    /// Queues lets a TCP socket have only about two packets (or 1 ms at its
    /// pacing rate) queued in its own host: every TCP connection was
    /// capped at two packets per one-way delay (≈ 290 kB/s at 10 ms), far
    /// below any real 20 ms path, and one connection carrying many streams
    /// collapsed. Held on the receiver's `INPUT`, the packet has left the
    /// sender (its socket is no longer charged), as on a real path. Segmentation offload is turned off on both ends so the
    /// loss applies to wire-sized packets, not 64 KiB batches.
    pub fn impair(&self, imp: Impairment) -> Result<Impaired> {
        if !(0.0..=1.0).contains(&imp.loss) {
            return Err(NetemError::Invalid(format!(
                "loss {} is not a probability",
                imp.loss
            )));
        }
        let mut out = Impaired {
            loss: vec![],
            queue: vec![],
            delayers: vec![],
        };
        for (ns, _) in self.both() {
            ns.run(&["ip", "link", "set", DEV, "gso_max_segs", "1"])?;
            if imp.loss > 0.0 {
                let p = format!("{}", imp.loss);
                out.loss.push(Rule::append(
                    ns,
                    "filter",
                    "INPUT",
                    &[
                        "-i",
                        DEV,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &p,
                        "-j",
                        "DROP",
                    ],
                )?);
            }
            if !imp.delay.is_zero() {
                out.delayers
                    .push(Delayer::start(Some(ns), QUEUE, imp.delay)?);
                let q = QUEUE.to_string();
                out.queue.push(Rule::append(
                    ns,
                    "filter",
                    "INPUT",
                    &[
                        "-i",
                        DEV,
                        "-j",
                        "NFQUEUE",
                        "--queue-num",
                        &q,
                        "--queue-bypass",
                    ],
                )?);
            }
        }
        Ok(out)
    }

    /// Drops every UDP packet between the hosts (both directions, on each
    /// host's `OUTPUT`), as a firewall that blocks QUIC does. TCP still
    /// flows. Removed when the guard is dropped.
    pub fn block_udp(&self) -> Result<Blocked> {
        let mut rules = vec![];
        for (ns, _) in self.both() {
            rules.push(Rule::append(
                ns,
                "filter",
                "OUTPUT",
                &["-o", DEV, "-p", "udp", "-j", "DROP"],
            )?);
        }
        Ok(Blocked { rules })
    }
}

/// UDP blocked between two hosts; unblocked on drop.
#[derive(Debug)]
pub struct Blocked {
    rules: Vec<Rule>,
}

impl Blocked {
    /// UDP packets dropped so far (both directions).
    pub fn dropped(&self) -> Result<u64> {
        self.rules.iter().map(Rule::packets).sum()
    }

    /// Unblocks now.
    pub fn remove(mut self) -> Result<()> {
        for rule in self.rules.drain(..) {
            rule.remove()?;
        }
        Ok(())
    }
}
