//! `ferry-netem`: real network conditions for Ferry's tests and benchmarks,
//! on one Linux machine, as root.
//!
//! - [`Netns`]: a uniquely named network namespace, deleted on drop (with
//!   whatever still runs in it); run commands or open sockets inside it.
//! - [`TwoHosts`]: two namespaces joined by a veth pair (`10.203.0.1` and
//!   `10.203.0.2`), the usual starting point.
//! - [`TwoHosts::impair`]: random loss and a fixed delay in each direction
//!   ([`Impairment`]); [`TwoHosts::block_udp`]: a firewall that drops UDP.
//! - [`UdpBlackhole`]: no root needed: one loopback port that forwards TCP
//!   and silently drops UDP (QUIC blocked, the TLS/TCP fallback open).
//! - [`Rule`]: one iptables rule, removed on drop, with its packet counter.
//! - [`Delayer`] / [`delay::serve`]: the NFQUEUE delayer (this kernel has no
//!   `netem` qdisc), also available as the `ferry-netem delay` command.
//!
//! Every guard undoes what it did when dropped, so a failing test leaves
//! nothing behind.
//!
//! ```no_run
//! use ferry_netem::{Impairment, TwoHosts};
//! use std::time::Duration;
//!
//! let hosts = TwoHosts::create("demo")?;
//! let _impaired = hosts.impair(Impairment { loss: 0.02, delay: Duration::from_millis(20) })?;
//! hosts.a.run(&["curl", "-s", &format!("http://{}:8080/", hosts.ip_b)])?;
//! # Ok::<(), ferry_netem::NetemError>(())
//! ```

mod command;
pub mod delay;
mod error;
mod hosts;
mod impair;
mod netns;
mod rule;
mod udp_blackhole;

pub use delay::{DelayStats, Delayer};
pub use error::{NetemError, Result};
pub use hosts::{TwoHosts, DEV};
pub use impair::{Blocked, Impaired, Impairment};
pub use netns::Netns;
pub use rule::Rule;
pub use udp_blackhole::UdpBlackhole;
