//! The `ferry` binary: parses arguments and hands off to the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for failures (bad input, missing or unusable files); the same
/// code clap uses for argument errors.
const EXIT_FAILURE: u8 = 2;

fn main() -> ExitCode {
    ferry_transport::install_crypto_provider();
    let cli = cli::Cli::parse();
    init_tracing();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, whatever the error carries.
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("ferry: error: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings and errors).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
