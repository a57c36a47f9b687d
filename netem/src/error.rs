//! The one error type of `ferry-netem`: which setup step failed and why.

use std::io;

/// A failed setup step (a command, a namespace switch, the NFQUEUE socket).
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    /// A tool (`ip`, `iptables`) could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// A tool ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// Switching a thread into a namespace failed.
    #[error("entering network namespace {name}: {source}")]
    Enter {
        name: String,
        #[source]
        source: io::Error,
    },
    /// A socket operation inside a namespace failed.
    #[error("{what} in network namespace {name}: {source}")]
    Socket {
        what: String,
        name: String,
        #[source]
        source: io::Error,
    },
    /// The NFQUEUE socket could not be opened, bound or served.
    #[error("NFQUEUE {queue}: {source}")]
    Queue {
        queue: u16,
        #[source]
        source: io::Error,
    },
    /// An argument is out of range (e.g. a loss probability above 1).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// `Result` with [`NetemError`].
pub type Result<T> = std::result::Result<T, NetemError>;
