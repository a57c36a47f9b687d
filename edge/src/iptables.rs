//! The iptables rules for transparent interception (what a sidecar
//! injector installs): redirect the pod's outbound TCP to the transparent
//! listener, except the proxy's own traffic (by uid), loopback and the
//! excluded ports, so the proxy never loops into itself.

use std::process::Command;

/// What the rules need to know.
#[derive(Debug, Clone)]
pub struct RedirectSpec {
    /// The transparent listener's port.
    pub proxy_port: u16,
    /// The uid the proxy runs as (its traffic is not redirected).
    pub proxy_uid: u32,
    /// Destination ports never redirected (the tunnel port, admin port...).
    pub exclude_ports: Vec<u16>,
    /// Chain name.
    pub chain: String,
}

impl RedirectSpec {
    /// The rules, as `iptables` argument lists (table nat).
    pub fn rules(&self) -> Vec<Vec<String>> {
        let c = &self.chain;
        let mut rules: Vec<Vec<String>> = vec![
            vec!["-t", "nat", "-N", c],
            vec![
                "-t",
                "nat",
                "-A",
                c,
                "-m",
                "owner",
                "--uid-owner",
                &self.proxy_uid.to_string(),
                "-j",
                "RETURN",
            ],
            vec!["-t", "nat", "-A", c, "-d", "127.0.0.0/8", "-j", "RETURN"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect();
        for p in &self.exclude_ports {
            rules.push(
                [
                    "-t",
                    "nat",
                    "-A",
                    c,
                    "-p",
                    "tcp",
                    "--dport",
                    &p.to_string(),
                    "-j",
                    "RETURN",
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            );
        }
        rules.push(
            [
                "-t",
                "nat",
                "-A",
                c,
                "-p",
                "tcp",
                "-j",
                "REDIRECT",
                "--to-ports",
                &self.proxy_port.to_string(),
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        );
        rules.push(
            ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", c]
                .into_iter()
                .map(String::from)
                .collect(),
        );
        rules
    }

    /// The rules as shell commands.
    pub fn script(&self) -> String {
        self.rules()
            .iter()
            .map(|r| format!("iptables {}", r.join(" ")))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// Installs the rules (needs CAP_NET_ADMIN). Stops at the first failure.
    pub fn apply(&self) -> Result<(), String> {
        for r in self.rules() {
            let out = Command::new("iptables")
                .args(&r)
                .output()
                .map_err(|e| format!("running iptables: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "iptables {} failed: {}",
                    r.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_proxy_uid_loopback_and_ports() {
        let s = RedirectSpec {
            proxy_port: 4140,
            proxy_uid: 1337,
            exclude_ports: vec![4143, 4191],
            chain: "FERRY_OUTPUT".into(),
        }
        .script();
        assert!(s.contains("--uid-owner 1337 -j RETURN"));
        assert!(s.contains("-d 127.0.0.0/8 -j RETURN"));
        assert!(s.contains("--dport 4143 -j RETURN"));
        assert!(s.contains("--dport 4191 -j RETURN"));
        assert!(s.contains("-j REDIRECT --to-ports 4140"));
        assert!(s.ends_with("-A OUTPUT -p tcp -j FERRY_OUTPUT\n"));
    }
}
