//! A link to measure over: loopback (both sides in the root namespace), or
//! a veth pair between two namespaces at a given MTU, optionally with loss
//! and delay. Owns both sides and, through them, the namespaces.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Result;

use crate::netns::{VethPair, CLIENT_IP, SERVER_IP};
use crate::side::Side;

pub struct Topology {
    /// Short name used in tables: `loopback`, `veth MTU 1500`, ...
    pub name: String,
    pub client: Side,
    pub server: Side,
    pub mtu: u32,
    /// QUIC's path-MTU discovery bound for this link (`tunnel.max_udp_payload`).
    pub max_udp_payload: u16,
    pub veth: Option<Arc<VethPair>>,
    /// The impairable link (loss/delay conditions), when built on ferry-netem.
    pub netem: Option<ferry_netem::TwoHosts>,
}

impl Topology {
    pub fn loopback() -> Result<Topology> {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Ok(Topology {
            name: "loopback".into(),
            client: Side::new("client", None, lo, 2)?,
            server: Side::new("server", None, lo, 2)?,
            mtu: 65_536,
            // Pinned to a 1,500-byte path's datagrams: Ferry's default
            // would follow loopback's route to 65,507-byte datagrams, which
            // no datacenter link carries (docs/benchmarks.md).
            max_udp_payload: 1452,
            veth: None,
            netem: None,
        })
    }

    /// Two namespaces joined by veth at `mtu`. `tag` keeps names unique.
    pub fn veth(tag: &str, mtu: u32) -> Result<Topology> {
        let pair = Arc::new(VethPair::create(tag, mtu)?);
        let (client_ns, server_ns) = (pair.client.clone(), pair.server.clone());
        Ok(Topology {
            name: format!("veth MTU {mtu}"),
            client: Side::new("client", Some(client_ns), CLIENT_IP, 2)?,
            server: Side::new("server", Some(server_ns), SERVER_IP, 2)?,
            mtu,
            // IPv6 + UDP headers (48 bytes) below the MTU, as 1452 is for
            // 1500 (Ferry's default bound over this IPv4 link is 20 more).
            max_udp_payload: (mtu - 48).min(65_507) as u16,
            veth: Some(pair),
            netem: None,
        })
    }

    /// ferry-netem's two hosts (veth at MTU 1,500) whose link can be given
    /// loss and delay.
    pub fn netem(name: &str) -> Result<Topology> {
        let hosts = ferry_netem::TwoHosts::create("fbench")
            .map_err(|e| anyhow::anyhow!("ferry-netem: create two hosts: {e}"))?;
        let client_ns = Arc::new(crate::netns::Netns::attach(hosts.a.name())?);
        let server_ns = Arc::new(crate::netns::Netns::attach(hosts.b.name())?);
        Ok(Topology {
            name: name.to_string(),
            client: Side::new("client", Some(client_ns), IpAddr::V4(hosts.ip_a), 2)?,
            server: Side::new("server", Some(server_ns), IpAddr::V4(hosts.ip_b), 2)?,
            mtu: 1500,
            max_udp_payload: 1452,
            veth: None,
            netem: Some(hosts),
        })
    }
}
