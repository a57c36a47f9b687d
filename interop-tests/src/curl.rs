//! curl as an application's HTTP client, optionally inside a network
//! namespace: one request, its status and body (or why it failed).

use std::path::Path;
use std::time::Duration;

use ferry_netem::Netns;

use crate::process::run;

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GET `url` with curl (in `ns` if given), at most `max` for the whole
/// request. `Err` carries curl's message when it got no HTTP response.
/// `scratch` is a file path for the body.
pub fn get(
    ns: Option<&Netns>,
    url: &str,
    max: Duration,
    scratch: &Path,
) -> Result<Response, String> {
    let mut c = match ns {
        Some(ns) => ns.command("curl"),
        None => std::process::Command::new("curl"),
    };
    c.args(["-q", "-sS", "-o"])
        .arg(scratch)
        .args([
            "-w",
            "%{http_code}",
            "-m",
            &format!("{:.3}", max.as_secs_f64()),
        ])
        .arg(url);
    let out = run(c, max + Duration::from_secs(5));
    if !out.status.success() {
        return Err(format!("curl {url}: {} {}", out.status, out.stderr.trim()));
    }
    let status = out
        .stdout
        .trim()
        .parse()
        .map_err(|_| format!("curl -w printed {:?}", out.stdout))?;
    let body = std::fs::read(scratch).unwrap_or_default();
    Ok(Response { status, body })
}
