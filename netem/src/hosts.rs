//! Two "hosts": two network namespaces joined by a veth pair on one /24,
//! the topology every network-condition test starts from.

use std::net::Ipv4Addr;

use crate::error::Result;
use crate::netns::Netns;

/// The name of each host's end of the veth pair (namespaces are separate,
/// so both ends can share it).
pub const DEV: &str = "veth0";

/// Host `a` (`10.203.0.1`) and host `b` (`10.203.0.2`), joined by a veth
/// pair created directly inside them (nothing is left in the caller's
/// namespace). Dropping it deletes both namespaces, their link, every
/// rule in them and anything still running in them.
#[derive(Debug)]
pub struct TwoHosts {
    pub a: Netns,
    pub b: Netns,
    pub ip_a: Ipv4Addr,
    pub ip_b: Ipv4Addr,
}

impl TwoHosts {
    /// Creates the two namespaces (`tag` goes into their names) and the
    /// link between them, up and addressed.
    pub fn create(tag: &str) -> Result<TwoHosts> {
        let a = Netns::create(&format!("{tag}-a"))?;
        let b = Netns::create(&format!("{tag}-b"))?;
        let hosts = TwoHosts {
            a,
            b,
            ip_a: Ipv4Addr::new(10, 203, 0, 1),
            ip_b: Ipv4Addr::new(10, 203, 0, 2),
        };
        crate::command::run(&[
            "ip",
            "link",
            "add",
            "name",
            DEV,
            "netns",
            hosts.a.name(),
            "type",
            "veth",
            "peer",
            "name",
            DEV,
            "netns",
            hosts.b.name(),
        ])?;
        for (ns, ip) in [(&hosts.a, hosts.ip_a), (&hosts.b, hosts.ip_b)] {
            ns.run(&["ip", "addr", "add", &format!("{ip}/24"), "dev", DEV])?;
            ns.run(&["ip", "link", "set", DEV, "up"])?;
        }
        Ok(hosts)
    }

    /// Sets the link's MTU on both ends (1,500 when created).
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        for ns in [&self.a, &self.b] {
            ns.run(&["ip", "link", "set", DEV, "mtu", &mtu])?;
        }
        Ok(())
    }

    /// Both hosts with their addresses, `a` first.
    pub fn both(&self) -> [(&Netns, Ipv4Addr); 2] {
        [(&self.a, self.ip_a), (&self.b, self.ip_b)]
    }
}
