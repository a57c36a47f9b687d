//! `ferry demo`: the first thing a new user runs. It starts two clusters of
//! real `ferry` processes on loopback (see [`mesh`]), waits until every
//! path answers, sends HTTP/1.1, gRPC and opaque TCP traffic within and
//! across the clusters ([`scenario`]), prints a table of what happened
//! ([`report`]) and stops every process it started — on success, on
//! failure and on Ctrl-C. `--hold` keeps the mesh up for the user's own
//! traffic; `--json` prints machine-readable lines instead of prose.

mod apps;
mod error;
mod layout;
mod mesh;
mod process;
mod report;
mod scenario;
mod scrape;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use error::DemoError;
use mesh::Mesh;

/// How long the mesh may take until every path answers.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// What `ferry demo` was asked to do.
pub struct DemoOptions {
    /// Keep the mesh running after the scenarios, until Ctrl-C.
    pub hold: bool,
    /// Print the ready line and the results as JSON on stdout.
    pub json: bool,
    /// Where to write the PKI, configuration and logs (must be empty or
    /// missing); a fresh directory under the system's temporary directory
    /// by default.
    pub dir: Option<PathBuf>,
    /// The `ferry` binary to run the components with.
    pub ferry: PathBuf,
}

/// Runs the demo; `Ok` only if every scenario passed (and, with `hold`,
/// the user then stopped it).
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let started = Instant::now();
    let dir = fresh_dir(opts.dir.clone())?;
    say(&format!("files and logs: {}", dir.display()));
    let mut mesh = Mesh::new(dir, opts.ferry.clone());
    let outcome = tokio::select! {
        r = start_and_run(&mut mesh, &opts, started) => r,
        _ = interrupted() => Err(DemoError::Interrupted),
    };
    let holding = matches!(outcome, Ok(()) | Err(DemoError::Failed { .. }));
    let outcome = if opts.hold && holding {
        if !opts.json {
            println!("\n{}", mesh.listeners_text());
        }
        say("holding the mesh; Ctrl-C stops it");
        tokio::select! {
            _ = interrupted() => outcome,
            e = mesh.exited() => Err(e),
        }
    } else {
        outcome
    };
    say("stopping every process the demo started");
    let n = mesh.stop().await;
    say(&format!("stopped {n} processes; nothing is left running"));
    outcome
}

async fn start_and_run(
    mesh: &mut Mesh,
    opts: &DemoOptions,
    started: Instant,
) -> Result<(), DemoError> {
    mesh.start(&|s| say(s)).await?;
    let scenarios = mesh.scenarios();
    say("waiting until every path answers (discovery, certificates, cluster links)");
    mesh.wait_until_serving(&scenarios, READY_WITHIN, &|s| say(s))
        .await?;
    say(&format!(
        "mesh ready in {:.1} s; running {} scenarios",
        started.elapsed().as_secs_f64(),
        scenarios.len()
    ));
    if opts.json {
        println!("{}", mesh.ready_json());
    }
    let mut outcomes = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        let o = s.run().await;
        say(&format!(
            "[{:>2}/{}] {:<18} {:<5} {}",
            i + 1,
            scenarios.len(),
            o.name,
            if o.passed { "pass" } else { "FAIL" },
            o.transport
        ));
        outcomes.push(o);
        mesh.check_running()?;
    }
    if opts.json {
        println!("{}", report::json(&outcomes));
    } else {
        println!("\n{}", report::table(&outcomes));
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed > 0 {
        say(&format!(
            "logs of every process: {}",
            mesh.dir.join("logs").display()
        ));
        return Err(DemoError::Failed {
            failed,
            total: outcomes.len(),
        });
    }
    say(&format!(
        "all {} scenarios passed in {:.1} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Progress goes to stderr, so stdout holds only the table (or JSON).
fn say(s: &str) {
    eprintln!("ferry demo: {s}");
}

/// `dir` if it is missing or empty (created), or a new directory under the
/// system's temporary directory.
fn fresh_dir(dir: Option<PathBuf>) -> Result<PathBuf, DemoError> {
    let err = |path: &PathBuf, detail: String| DemoError::Dir {
        path: path.clone(),
        detail,
    };
    match dir {
        Some(d) => {
            if let Ok(mut entries) = std::fs::read_dir(&d) {
                if entries.next().is_some() {
                    return Err(err(
                        &d,
                        "is not empty; give a new or empty directory".into(),
                    ));
                }
            }
            std::fs::create_dir_all(&d).map_err(|e| err(&d, e.to_string()))?;
            Ok(std::path::absolute(&d).unwrap_or(d))
        }
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let d = std::env::temp_dir().join(format!("ferry-demo-{stamp}-{}", std::process::id()));
            std::fs::create_dir(&d).map_err(|e| err(&d, e.to_string()))?;
            Ok(d)
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without handlers the default action (exit) applies; children
        // still get SIGTERM from the kernel (PR_SET_PDEATHSIG).
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_directory_is_refused() {
        let d = std::env::temp_dir().join(format!("ferry-demo-dir-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("x"), "x").unwrap();
        let r = fresh_dir(Some(d.clone()));
        let _ = std::fs::remove_dir_all(&d);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("not empty") && e.contains("ferry-demo-dir-test"),
            "{e}"
        );
    }
}
