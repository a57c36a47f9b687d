//! One consistent view of the mesh: services by authority
//! (`name.namespace:port`) and by address (for transparent interception).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_transport::identity::SpiffeId;
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
}

fn ser_id<S: serde::Serializer>(id: &SpiffeId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub authority: String,
    pub protocol: Protocol,
    pub endpoints: Vec<Endpoint>,
    pub addresses: Vec<SocketAddr>,
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

    pub fn route(&self, addr: SocketAddr) -> Option<&AddrRoute> {
        self.by_addr.get(&addr)
    }
}
