//! The external programs the comparison needs, found up front: a missing
//! one is reported with the command that installs it (Debian/Ubuntu
//! package names), and its rows say so instead of disappearing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Result};

use crate::paths::PathKind;

pub struct Programs {
    stunnel: Option<PathBuf>,
    haproxy: Option<PathBuf>,
    nginx: Option<PathBuf>,
    /// Ok(None): stream compiled in; Ok(Some): dynamic module to load;
    /// Err: no stream module.
    nginx_stream: Result<Option<PathBuf>, String>,
    pub ip: Option<PathBuf>,
    pub iptables: Option<PathBuf>,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin"]);
    for d in dirs {
        for n in names {
            let p = Path::new(d).join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn stream_module(nginx: &Path) -> Result<Option<PathBuf>, String> {
    let out = Command::new(nginx)
        .arg("-V")
        .output()
        .map_err(|e| format!("run {} -V: {e}", nginx.display()))?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let flags: Vec<&str> = text.split_whitespace().collect();
    if flags.contains(&"--with-stream") {
        return Ok(None);
    }
    for dir in [
        "/usr/lib/nginx/modules",
        "/usr/share/nginx/modules",
        "/usr/lib64/nginx/modules",
    ] {
        let p = Path::new(dir).join("ngx_stream_module.so");
        if p.is_file() {
            return Ok(Some(p));
        }
    }
    Err("nginx has no stream module".into())
}

impl Programs {
    pub fn find() -> Programs {
        let nginx = which(&["nginx"]);
        let nginx_stream = match &nginx {
            Some(n) => stream_module(n),
            None => Err("nginx not found".into()),
        };
        Programs {
            stunnel: which(&["stunnel4", "stunnel"]),
            haproxy: which(&["haproxy"]),
            nginx,
            nginx_stream,
            ip: which(&["ip"]),
            iptables: which(&["iptables"]),
        }
    }

    /// Why `kind` cannot run here, with the install command; None if it can.
    pub fn missing_for(&self, kind: PathKind) -> Option<String> {
        match kind {
            PathKind::Stunnel if self.stunnel.is_none() => {
                Some("stunnel not found: `apt-get install -y stunnel4`".into())
            }
            PathKind::Haproxy if self.haproxy.is_none() => {
                Some("haproxy not found: `apt-get install -y haproxy`".into())
            }
            PathKind::Nginx if self.nginx.is_none() => {
                Some("nginx not found: `apt-get install -y nginx-light libnginx-mod-stream`".into())
            }
            PathKind::Nginx if self.nginx_stream.is_err() => {
                Some("nginx has no stream module: `apt-get install -y libnginx-mod-stream`".into())
            }
            _ => None,
        }
    }

    /// Why namespaces cannot be used here; None if they can.
    pub fn missing_for_netns(&self) -> Option<String> {
        if self.ip.is_none() {
            return Some("`ip` not found: `apt-get install -y iproute2`".into());
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some(
                "network namespaces need root: run as root (or with CAP_NET_ADMIN + CAP_SYS_ADMIN)"
                    .into(),
            );
        }
        None
    }

    /// Why loss cannot be emulated here; None if it can.
    pub fn missing_for_loss(&self) -> Option<String> {
        self.missing_for_netns().or_else(|| {
            self.iptables
                .is_none()
                .then(|| "iptables not found: `apt-get install -y iptables`".into())
        })
    }

    /// The one apt-get line that installs everything missing, if anything is.
    pub fn install_hint(&self) -> Option<String> {
        let mut pkgs = Vec::new();
        if self.stunnel.is_none() {
            pkgs.push("stunnel4");
        }
        if self.haproxy.is_none() {
            pkgs.push("haproxy");
        }
        if self.nginx.is_none() {
            pkgs.push("nginx-light");
        }
        if self.nginx_stream.is_err() {
            pkgs.push("libnginx-mod-stream");
        }
        if self.ip.is_none() {
            pkgs.push("iproute2");
        }
        if self.iptables.is_none() {
            pkgs.push("iptables");
        }
        (!pkgs.is_empty()).then(|| format!("apt-get install -y {}", pkgs.join(" ")))
    }

    pub fn stunnel(&self) -> Result<PathBuf> {
        self.stunnel
            .clone()
            .ok_or_else(|| anyhow!("stunnel not installed"))
    }

    pub fn haproxy(&self) -> Result<PathBuf> {
        self.haproxy
            .clone()
            .ok_or_else(|| anyhow!("haproxy not installed"))
    }

    pub fn nginx(&self) -> Result<PathBuf> {
        self.nginx
            .clone()
            .ok_or_else(|| anyhow!("nginx not installed"))
    }

    pub fn nginx_stream_module(&self) -> Result<Option<PathBuf>> {
        self.nginx_stream.clone().map_err(|e| anyhow!(e))
    }

    /// One line per program with its version, for the results' header.
    pub fn versions(&self) -> Vec<String> {
        let mut out = Vec::new();
        let first = |p: &Path, args: &[&str]| -> String {
            Command::new(p)
                .args(args)
                .output()
                .map(|o| {
                    let t = String::from_utf8_lossy(&o.stdout).into_owned()
                        + &String::from_utf8_lossy(&o.stderr);
                    t.lines()
                        .find(|l| !l.trim().is_empty() && !l.contains("inetd"))
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default()
        };
        if let Some(p) = &self.stunnel {
            out.push(first(p, &["-version"]));
        }
        if let Some(p) = &self.haproxy {
            out.push(first(p, &["-v"]));
        }
        if let Some(p) = &self.nginx {
            out.push(first(p, &["-v"]));
        }
        out
    }
}
