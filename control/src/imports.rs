//! Services imported from linked clusters, merged into what the control
//! plane serves: imported services are added under their own names (a
//! local service of the same authority wins), and remote endpoints offered
//! as failover are appended, marked `failover`, to the local services the
//! mesh file declares `failover = true`.

use std::collections::BTreeMap;

use crate::api;
use crate::mesh::Mesh;

/// What the links bring in (built by `ferry-multicluster`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Imports {
    /// Remote services by their local authority
    /// (`name.namespace.svc.<cluster>:port`), endpoints marked remote.
    pub services: BTreeMap<String, api::Service>,
    /// Remote endpoints by the local authority (`name.namespace:port`) they
    /// may back as failover.
    pub failover: BTreeMap<String, Vec<api::Endpoint>>,
}

/// The services served: the mesh file's, plus `imports`.
pub fn merge(mesh: &Mesh, imports: &Imports) -> BTreeMap<String, api::Service> {
    let mut services = mesh.services.clone();
    for (authority, service) in &imports.services {
        services
            .entry(authority.clone())
            .or_insert_with(|| service.clone());
    }
    for (authority, endpoints) in &imports.failover {
        if !mesh.failover.contains(authority) {
            continue;
        }
        if let Some(service) = services.get_mut(authority) {
            service
                .endpoints
                .extend(endpoints.iter().cloned().map(|e| api::Endpoint {
                    failover: true,
                    ..e
                }));
        }
    }
    services
}
