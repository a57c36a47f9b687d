//! One consistent view of the mesh: services by authority
//! (`name.namespace:port`) and by address (for transparent interception).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_transport::identity::SpiffeId;
use ferry_transport::tunnel::{PeerKey, Via};
use serde::{Deserialize, Serialize};

/// The protocol hint of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Detect from the first bytes.
    #[default]
    Auto,
    Http,
    Grpc,
    /// Opaque TCP: never detect.
    Tcp,
}

/// A workload serving a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    /// The application's address (its port is the target port).
    pub address: SocketAddr,
    /// The edge's tunnel address.
    pub tunnel: SocketAddr,
    #[serde(serialize_with = "ser_id")]
    pub id: SpiffeId,
    /// For a remote endpoint: the gateway that relays to it.
    #[serde(serialize_with = "ser_via", skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// Used only when no primary endpoint of the service is available.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failover: bool,
}

impl Endpoint {
    /// A local endpoint (no gateway, not a failover).
    pub fn local(address: SocketAddr, tunnel: SocketAddr, id: SpiffeId) -> Self {
        Self {
            address,
            tunnel,
            id,
            via: None,
            failover: false,
        }
    }

    /// Where the tunnel client takes a stream for this endpoint.
    pub fn peer_key(&self) -> PeerKey {
        match &self.via {
            Some(via) => PeerKey::via(self.tunnel, self.id.clone(), via.clone()),
            None => PeerKey::new(self.tunnel, self.id.clone()),
        }
    }
}

fn ser_id<S: serde::Serializer>(id: &SpiffeId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

fn ser_via<S: serde::Serializer>(via: &Option<Via>, s: S) -> Result<S::Ok, S::Error> {
    match via {
        Some(v) => s.serialize_str(&format!("{} ({})", v.addr, v.id)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub authority: String,
    pub protocol: Protocol,
    pub endpoints: Vec<Endpoint>,
    pub addresses: Vec<SocketAddr>,
    /// Exported to linked clusters (reachable through this cluster's
    /// gateway).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exported: bool,
}

/// What an intercepted destination address is.
#[derive(Debug, Clone)]
pub enum AddrRoute {
    /// A service's virtual address: balance over its endpoints.
    Service(Arc<Service>),
    /// One endpoint's own address: go to that endpoint.
    Endpoint(Arc<Service>, Endpoint),
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub services: HashMap<String, Arc<Service>>,
    pub by_addr: HashMap<SocketAddr, AddrRoute>,
}

impl Snapshot {
    pub fn insert(&mut self, service: Service) {
        let service = Arc::new(service);
        for a in &service.addresses {
            self.by_addr.insert(*a, AddrRoute::Service(service.clone()));
        }
        for e in &service.endpoints {
            self.by_addr
                .entry(e.address)
                .or_insert_with(|| AddrRoute::Endpoint(service.clone(), e.clone()));
        }
        self.services.insert(service.authority.clone(), service);
    }

    pub fn service(&self, authority: &str) -> Option<&Arc<Service>> {
        self.services.get(authority)
    }

    /// Whether `port` of the workload `me` serves an exported service (the
    /// only ports streams relayed from another cluster may reach).
    pub fn exports(&self, me: &SpiffeId, port: u16) -> bool {
        self.services.values().any(|s| {
            s.exported
                && s.endpoints
                    .iter()
                    .any(|e| e.via.is_none() && &e.id == me && e.address.port() == port)
        })
    }

    pub fn route(&self, addr: SocketAddr) -> Option<&AddrRoute> {
        self.by_addr.get(&addr)
    }
}
