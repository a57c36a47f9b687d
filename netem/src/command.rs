//! Running the system tools (`ip`, `iptables`) that build the conditions.

use std::process::Command;

use crate::error::{NetemError, Result};

/// Runs `args[0]` with the rest as arguments; its stdout when it succeeds.
pub(crate) fn run(args: &[&str]) -> Result<String> {
    let command = args.join(" ");
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|source| NetemError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetemError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
