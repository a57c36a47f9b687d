//! Command-line interface of the `ferry` binary: the clap argument types and
//! the dispatch from each subcommand to the library function that does the
//! work. New subcommands (edge, control, ...) are new [`Command`] variants.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ferry_transport::identity::pki;

use crate::runtime::ThreadsArg;

/// An edge's default `--threads`: a sidecar serves one workload, and one
/// thread costs the least CPU per request (see [`crate::runtime`]).
const EDGE_THREADS: u16 = 1;

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
    /// Run the sidecar edge proxy (or print/apply its iptables rules).
    Edge(EdgeArgs),
    /// Run the control plane (identity issuance and discovery over gRPC),
    /// or make a workload bootstrap token.
    Control(ControlArgs),
    /// Run the multicluster gateway (relays end-to-end inner sessions).
    Gateway(GatewayArgs),
    /// Start two demo clusters on loopback, send traffic through them and
    /// print what happened (the README's Quick start).
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the mesh running after the scenarios, until Ctrl-C, and print
    /// every listener.
    #[arg(long)]
    pub hold: bool,
    /// Print one JSON line when the mesh is ready and one with the results,
    /// instead of the table (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Where to write the PKI, configuration files and logs (new or empty);
    /// a fresh directory under the system's temporary directory by default.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl DemoArgs {
    fn run(self) -> anyhow::Result<()> {
        let opts = ferry_demo::DemoOptions {
            hold: self.hold,
            json: self.json,
            dir: self.dir,
            ferry: std::env::current_exe()?,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(ferry_demo::run(opts))?;
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The gateway configuration file (TOML; see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub threads: ThreadsArg,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ControlArgs {
    #[command(subcommand)]
    pub command: Option<ControlCommand>,
    /// The mesh file (TOML; see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The gRPC address, instead of the mesh file's `control.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The admin address, instead of the mesh file's `control.admin`.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<std::net::SocketAddr>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub threads: ThreadsArg,
}

#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Print a new random bootstrap token and, on a second line, the
    /// SHA-256 to put in the workload's `token_sha256`.
    Token,
}

impl ControlArgs {
    fn run(self) -> anyhow::Result<()> {
        match self.command {
            Some(ControlCommand::Token) => {
                let (token, hash) = ferry_control::token::generate();
                println!("{token}\n{hash}");
                Ok(())
            }
            None => {
                let config = self
                    .config
                    .ok_or_else(|| anyhow::anyhow!("--config FILE is required"))?;
                let overrides = ferry_control::Overrides {
                    listen: self.listen,
                    admin: self.admin,
                };
                block_on(
                    self.threads.or(0),
                    ferry_control::run_with(&config, overrides, |control| {
                        ferry_multicluster::start(control);
                    }),
                )?;
                Ok(())
            }
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EdgeArgs {
    #[command(subcommand)]
    pub command: Option<EdgeCommand>,
    /// The edge configuration file (TOML; see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr (access logs use the tracing target `access`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub threads: ThreadsArg,
}

#[derive(Debug, Subcommand)]
pub enum EdgeCommand {
    /// The iptables rules that redirect a workload's outbound TCP to the
    /// transparent listener, excluding the proxy's own uid and ports.
    Iptables {
        /// Print the rules as shell commands.
        #[arg(long, conflicts_with = "apply", required_unless_present = "apply")]
        print: bool,
        /// Install the rules (needs CAP_NET_ADMIN).
        #[arg(long)]
        apply: bool,
        /// The transparent listener's port.
        #[arg(long, default_value_t = 4140)]
        proxy_port: u16,
        /// The uid the proxy runs as; its own connections are not redirected.
        #[arg(long)]
        proxy_uid: u32,
        /// Destination ports never redirected (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "4143,4191")]
        exclude_ports: Vec<u16>,
        /// The nat chain to create.
        #[arg(long, default_value = "FERRY_OUTPUT")]
        chain: String,
    },
}

impl EdgeArgs {
    fn run(self) -> anyhow::Result<()> {
        match self.command {
            Some(EdgeCommand::Iptables {
                print,
                apply: _,
                proxy_port,
                proxy_uid,
                exclude_ports,
                chain,
            }) => {
                let spec = ferry_edge::iptables::RedirectSpec {
                    proxy_port,
                    proxy_uid,
                    exclude_ports,
                    chain,
                };
                if print {
                    print!("{}", spec.script());
                } else {
                    spec.apply().map_err(anyhow::Error::msg)?;
                }
                Ok(())
            }
            None => {
                let config = self
                    .config
                    .ok_or_else(|| anyhow::anyhow!("--config FILE is required"))?;
                block_on(self.threads.or(EDGE_THREADS), ferry_edge::run(&config))?;
                Ok(())
            }
        }
    }
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

/// Runs a long-lived server command on a runtime with `threads` threads.
fn block_on<E>(
    threads: u16,
    future: impl std::future::Future<Output = Result<(), E>>,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let runtime = crate::runtime::build(threads)?;
    tracing::debug!(threads = runtime.metrics().num_workers(), "runtime started");
    runtime.block_on(future)?;
    Ok(())
}

impl Cli {
    /// Default log level and format for the selected subcommand.
    pub fn log_settings(&self) -> (&'static str, LogFormat) {
        match &self.command {
            Command::Edge(e) if e.command.is_none() => ("info", e.log_format),
            Command::Control(c) if c.command.is_none() => ("info", c.log_format),
            Command::Gateway(g) => ("info", g.log_format),
            _ => ("warn", LogFormat::Text),
        }
    }

    /// Runs the selected subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Certs(certs) => certs.run(),
            Command::Edge(edge) => edge.run(),
            Command::Control(control) => control.run(),
            Command::Gateway(gateway) => {
                block_on(gateway.threads.or(0), ferry_gateway::run(&gateway.config))
            }
            Command::Demo(demo) => demo.run(),
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

    fn edge_threads(args: &[&str]) -> Result<Option<u16>, clap::Error> {
        let cli = Cli::try_parse_from(["ferry", "edge", "--config", "e.toml"].iter().chain(args))?;
        match cli.command {
            Command::Edge(edge) => Ok(edge.threads.threads),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn threads_is_optional_and_bounded() {
        // FERRY_THREADS in the test's environment would change the default.
        if std::env::var_os("FERRY_THREADS").is_none() {
            assert_eq!(edge_threads(&[]).expect("parses"), None);
        }
        assert_eq!(edge_threads(&["--threads", "4"]).expect("parses"), Some(4));
        assert_eq!(edge_threads(&["--threads", "0"]).expect("parses"), Some(0));
        let err = edge_threads(&["--threads", "5000"]).expect_err("out of range");
        assert!(err.to_string().contains("--threads"), "{err}");
        let err = edge_threads(&["--threads", "two"]).expect_err("not a number");
        assert!(err.to_string().contains("--threads"), "{err}");
    }
}
