//! Routing an outbound connection to a service, one endpoint, or outside
//! the mesh.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Destination;
use crate::discovery::{AddrRoute, Endpoint, Protocol, Service, Snapshot};

#[derive(Debug, Clone)]
pub enum Target {
    /// Balance over the service's endpoints.
    Service(Arc<Service>),
    /// Exactly this endpoint.
    Endpoint(Arc<Service>, Endpoint),
    /// Not in the mesh (no identity known).
    NonMesh(SocketAddr),
    /// A named service discovery does not know.
    Unknown(String),
}

impl Target {
    pub fn name(&self) -> String {
        match self {
            Target::Service(s) | Target::Endpoint(s, _) => s.authority.clone(),
            Target::NonMesh(a) => a.to_string(),
            Target::Unknown(n) => n.clone(),
        }
    }

    /// The destination port the application asked for.
    pub fn port(&self) -> Option<u16> {
        match self {
            Target::Service(s) | Target::Endpoint(s, _) => {
                s.authority.rsplit(':').next()?.parse().ok()
            }
            Target::NonMesh(a) => Some(a.port()),
            Target::Unknown(n) => n.rsplit(':').next()?.parse().ok(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            Target::Service(s) | Target::Endpoint(s, _) => s.protocol,
            _ => Protocol::Auto,
        }
    }

    /// The same destination in a newer snapshot, so the requests of a
    /// long-lived connection follow endpoint changes. A service is looked
    /// up again by name (gone: no endpoints); an endpoint or a non-mesh
    /// address stays what it was.
    pub fn refresh(&self, snapshot: &Snapshot) -> Target {
        match self {
            Target::Service(s) => match snapshot.service(&s.authority) {
                Some(now) => Target::Service(now.clone()),
                None => Target::Unknown(s.authority.clone()),
            },
            Target::Unknown(name) => match snapshot.service(name) {
                Some(now) => Target::Service(now.clone()),
                None => self.clone(),
            },
            Target::Endpoint(..) | Target::NonMesh(_) => self.clone(),
        }
    }

    /// Candidate endpoints (the current set, for a service).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        match self {
            Target::Service(s) => s.endpoints.clone(),
            Target::Endpoint(_, e) => vec![e.clone()],
            _ => Vec::new(),
        }
    }
}

pub fn resolve(snapshot: &Snapshot, dest: &Destination) -> Target {
    match dest {
        Destination::Service(name) => match snapshot.service(name) {
            Some(s) => Target::Service(s.clone()),
            None => Target::Unknown(name.clone()),
        },
        Destination::Original(addr) => match snapshot.route(*addr) {
            Some(AddrRoute::Service(s)) => Target::Service(s.clone()),
            Some(AddrRoute::Endpoint(s, e)) => Target::Endpoint(s.clone(), e.clone()),
            None => Target::NonMesh(*addr),
        },
    }
}
