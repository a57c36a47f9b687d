//! The `ferry` binary: parses arguments and hands off to the library.

mod cli;
mod runtime;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for failures (bad input, missing or unusable files); the same
/// code clap uses for argument errors.
const EXIT_FAILURE: u8 = 2;

/// mimalloc instead of glibc's malloc: a proxied request allocates and
/// frees many small buffers across threads, and glibc's free lists
/// (`_int_free`, `malloc_consolidate`) took about a sixth of the edges' CPU
/// at the maximum request rate (docs/benchmarks.md, "Performance fixes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ferry_transport::install_crypto_provider();
    let cli = cli::Cli::parse();
    let (level, format) = cli.log_settings();
    init_tracing(level, format);
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, whatever the error carries.
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("ferry: error: {message}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: the command's level).
fn init_tracing(level: &str, format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: logs redirected to a file stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        cli::LogFormat::Json => builder.json().try_init(),
        cli::LogFormat::Text => builder.try_init(),
    };
}

/// 1 when demo scenarios failed, 130 when interrupted, else [`EXIT_FAILURE`].
fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<ferry_demo::DemoError>() {
        Some(ferry_demo::DemoError::Failed { .. }) => 1,
        Some(ferry_demo::DemoError::Interrupted) => 130,
        _ => EXIT_FAILURE,
    }
}
