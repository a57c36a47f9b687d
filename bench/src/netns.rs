//! Network namespaces joined by a veth pair: created with `ip`, entered by
//! threads (`setns`) and child processes (`pre_exec`), and removed on Drop
//! (deleting a namespace deletes its veth end). Namespaces are named
//! `fbench-<pid>-<tag>`; ones left by a killed earlier run are removed at
//! start.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

const PREFIX: &str = "fbench-";

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes namespaces left behind by earlier runs that were killed (their
/// process no longer exists).
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
}

/// One network namespace, deleted on Drop.
pub struct Netns {
    name: String,
    file: File,
    /// Created here (deleted on Drop) rather than attached to.
    owned: bool,
}

impl Netns {
    /// Creates `fbench-<pid>-<tag>` with its loopback up.
    pub fn create(tag: &str) -> Result<Netns> {
        let name = format!("{PREFIX}{}-{tag}", std::process::id());
        ip(&["netns", "add", &name])?;
        let file = match File::open(format!("/var/run/netns/{name}")) {
            Ok(f) => f,
            Err(e) => {
                let _ = ip(&["netns", "del", &name]);
                return Err(anyhow!("open /var/run/netns/{name}: {e}"));
            }
        };
        let ns = Netns {
            name,
            file,
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Attaches to a namespace someone else owns (e.g. `ferry-netem`'s);
    /// it is not deleted on Drop.
    pub fn attach(name: &str) -> Result<Netns> {
        let file = File::open(format!("/var/run/netns/{name}"))
            .with_context(|| format!("open /var/run/netns/{name}"))?;
        Ok(Netns {
            name: name.to_string(),
            file,
            owned: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs a program inside the namespace (`ip netns exec`), failing with
    /// its stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .with_context(|| format!("run {program} in {}", self.name))?;
        if !out.status.success() {
            bail!(
                "`{program} {}` in {} failed: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) -> std::io::Result<()> {
        // SAFETY: setns on a namespace fd we own; affects only this thread.
        let rc = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// The raw fd, for `pre_exec` in child processes.
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("bench: could not remove namespace {}: {e}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair at a given MTU: the client side at
/// 10.77.0.1, the server side at 10.77.0.2.
pub struct VethPair {
    pub client: Arc<Netns>,
    pub server: Arc<Netns>,
    pub client_dev: String,
    pub server_dev: String,
    pub mtu: u32,
}

pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));

impl VethPair {
    pub fn create(tag: &str, mtu: u32) -> Result<VethPair> {
        let client = Arc::new(Netns::create(&format!("{tag}-c"))?);
        let server = Arc::new(Netns::create(&format!("{tag}-s"))?);
        let id = std::process::id() % 100_000;
        let (cd, sd) = (format!("fbc{id}{tag}"), format!("fbs{id}{tag}"));
        let (cd, sd) = (
            cd[..cd.len().min(15)].to_string(),
            sd[..sd.len().min(15)].to_string(),
        );
        ip(&["link", "add", &cd, "type", "veth", "peer", "name", &sd])?;
        let pair = VethPair {
            client,
            server,
            client_dev: cd.clone(),
            server_dev: sd.clone(),
            mtu,
        };
        // From here on, dropping `pair` removes the namespaces; a veth end
        // still in the root namespace must go too.
        let setup = || -> Result<()> {
            ip(&["link", "set", &cd, "netns", pair.client.name()])?;
            ip(&["link", "set", &sd, "netns", pair.server.name()])?;
            let m = mtu.to_string();
            for (ns, dev, addr) in [
                (&pair.client, &cd, CLIENT_IP),
                (&pair.server, &sd, SERVER_IP),
            ] {
                ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev])?;
                ns.ip(&["link", "set", dev, "mtu", &m, "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            let _ = ip(&["link", "del", &cd]);
            return Err(e.context(format!("set up veth pair {cd}/{sd} (MTU {mtu})")));
        }
        Ok(pair)
    }
}
