//! Command-line interface of the `ferry` binary: the clap argument types and
//! the dispatch from each subcommand to the library function that does the
//! work. New subcommands (edge, control, ...) are new [`Command`] variants.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ferry_transport::identity::pki;

/// Ferry: a QUIC/HTTP3 transport overlay for service meshes.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a trust domain's CA and issue SPIFFE workload certificates.
    Certs(CertsArgs),
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a self-signed CA for a trust domain (writes ca.pem and ca.key).
    Ca {
        /// Trust domain, e.g. `cluster.local` (or `spiffe://cluster.local`).
        #[arg(long)]
        trust_domain: String,
        /// Directory to write ca.pem and ca.key into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Validity of the CA certificate: e.g. 90s, 30m, 24h, 7d, 1y.
        #[arg(long, default_value = "87600h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a workload certificate (writes cert.pem, key.pem, bundle.pem).
    Issue {
        /// Directory holding the CA's ca.pem and ca.key.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// SPIFFE ID of the workload, e.g. `spiffe://cluster.local/ns/default/sa/web`.
        #[arg(long)]
        id: String,
        /// Directory to write cert.pem, key.pem and bundle.pem into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity of the certificate: e.g. 90s, 30m, 24h, 7d, 1y.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    pki::parse_ttl(s).map_err(|e| e.to_string())
}

impl Cli {
    /// Runs the selected subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Certs(certs) => certs.run(),
        }
    }
}

impl CertsArgs {
    fn run(self) -> anyhow::Result<()> {
        match self.command {
            CertsCommand::Ca {
                trust_domain,
                out,
                ttl,
                force,
            } => pki::run_certs_ca(&trust_domain, &out, ttl, force)?,
            CertsCommand::Issue {
                ca,
                id,
                out,
                ttl,
                force,
            } => pki::run_certs_issue(&ca, &id, &out, ttl, force)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
