//! Running the Python tunnel clients (`py/h3_connect.py`,
//! `py/h2_connect.py`) against an edge's tunnel port: a `CONNECT` to an
//! application behind the edge, with or without a client certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::pki::Identity;
use crate::prereq::{python, script};
use crate::process::run;

/// Which client: HTTP/3 over QUIC (aioquic) or HTTP/2 over TLS/TCP (h2).
#[derive(Clone, Copy, Debug)]
pub enum Client {
    Aioquic,
    H2,
}

/// One `CONNECT` exchange.
pub struct Connect<'a> {
    pub tunnel: SocketAddr,
    /// The `:authority`: the application's `ip:port`.
    pub authority: SocketAddr,
    pub ca: &'a Path,
    /// The SPIFFE ID the server must prove.
    pub expect_id: &'a str,
    /// The client certificate, if any.
    pub client: Option<&'a Identity>,
    /// Bytes sent after the "hello" round trip.
    pub size: usize,
}

/// Runs the client (at most 30 s) and returns its JSON result line.
pub fn connect(which: Client, c: &Connect) -> serde_json::Value {
    let (file, module) = match which {
        Client::Aioquic => ("h3_connect.py", "aioquic"),
        Client::H2 => ("h2_connect.py", "h2"),
    };
    let mut cmd = Command::new(python(&[module, "cryptography"]));
    cmd.arg(script(file))
        .args(["--host", &c.tunnel.ip().to_string()])
        .args(["--port", &c.tunnel.port().to_string()])
        .args(["--authority", &c.authority.to_string()])
        .arg("--ca")
        .arg(c.ca)
        .args(["--expect-id", c.expect_id])
        .args(["--size", &c.size.to_string()]);
    if let Some(id) = c.client {
        cmd.arg("--cert").arg(&id.cert).arg("--key").arg(&id.key);
    }
    let out = run(cmd, Duration::from_secs(30)).ok(file);
    let line = out.stdout.lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "{file} printed no result ({e}):\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
    })
}
