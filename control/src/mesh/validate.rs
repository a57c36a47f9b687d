//! Checks a parsed mesh file and builds the [`Mesh`] the services serve:
//! every error is collected (file, line and field), not just the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use ferry_transport::identity::{SpiffeId, TrustDomain};

use super::file::{MeshFile, ProtocolDecl, TargetPort};
use super::links::{system_id, validate_links};
use super::{Mesh, Workload};
use crate::api;
use crate::config_file::{line_of_array_key, line_of_key, ConfigError};

/// Collects located errors for one file.
pub(super) struct Errors<'a> {
    path: &'a Path,
    text: &'a str,
    found: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn at(&mut self, line: usize, field: String, message: String) {
        self.found.push(ConfigError::Invalid {
            path: self.path.display().to_string(),
            line,
            field,
            message,
        });
    }

    /// An error in the `index`-th `[[table]]`, at its `key`.
    pub(super) fn in_table(
        &mut self,
        table: &str,
        index: usize,
        key: &str,
        field: String,
        message: String,
    ) {
        let line = line_of_array_key(self.text, table, index, key);
        self.at(line, field, message);
    }
}

pub(super) fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn protocol(p: ProtocolDecl) -> api::Protocol {
    match p {
        ProtocolDecl::Auto => api::Protocol::Auto,
        ProtocolDecl::Http => api::Protocol::Http,
        ProtocolDecl::Grpc => api::Protocol::Grpc,
        ProtocolDecl::Tcp => api::Protocol::Tcp,
    }
}

/// Validates `file` (read from `path`, whose text is `text`).
pub fn validate(file: MeshFile, path: &Path, text: &str) -> Result<Mesh, ConfigError> {
    let mut errors = Errors {
        path,
        text,
        found: Vec::new(),
    };
    let td: TrustDomain = file.trust_domain.0.clone();
    let base = path.parent().unwrap_or(Path::new("."));
    let ca_dir = base.join(&file.ca.dir);

    let control_id = match &file.control.id {
        Some(id) => {
            if id.0.trust_domain() != &td {
                errors.at(
                    line_of_key(text, "id"),
                    "control.id".into(),
                    format!("{} is not in the trust domain {td}", id.0),
                );
            }
            id.0.clone()
        }
        None => system_id(&td, "control"),
    };
    let cluster = file.cluster.clone().unwrap_or_else(|| "local".into());
    if !valid_label(&cluster) {
        errors.at(
            line_of_key(text, "cluster"),
            "cluster".into(),
            format!("{cluster:?} is not a DNS label (a-z, 0-9, '-')"),
        );
    }
    let links = validate_links(&file.links, &td, &cluster, base, &mut errors);
    if file.certificates.ttl < std::time::Duration::from_secs(1) {
        errors.at(
            line_of_key(text, "ttl"),
            "certificates.ttl".into(),
            "must be at least 1s".into(),
        );
    }

    // Workloads.
    let mut workloads = BTreeMap::new();
    let mut tokens: HashMap<[u8; 32], SpiffeId> = HashMap::new();
    for (i, w) in file.workloads.iter().enumerate() {
        let field = |k: &str| format!("workloads[{i}].{k}");
        if !valid_label(&w.name) {
            errors.in_table(
                "workloads",
                i,
                "name",
                field("name"),
                format!("{:?} is not a DNS label (a-z, 0-9, '-')", w.name),
            );
        }
        if w.id.0.trust_domain() != &td {
            errors.in_table(
                "workloads",
                i,
                "id",
                field("id"),
                format!("{} is not in the trust domain {td}", w.id.0),
            );
        }
        for (name, port) in &w.ports {
            if *port == 0 {
                errors.in_table(
                    "workloads",
                    i,
                    "ports",
                    field(&format!("ports.{name}")),
                    "port 0 is not a port".into(),
                );
            }
        }
        let hash = match parse_sha256(&w.token_sha256) {
            Some(h) => h,
            None => {
                errors.in_table(
                    "workloads",
                    i,
                    "token_sha256",
                    field("token_sha256"),
                    "must be 64 hex digits (the SHA-256 of the token; see `ferry control token`)"
                        .into(),
                );
                [0; 32]
            }
        };
        if let Some(other) = tokens.insert(hash, w.id.0.clone()) {
            if other != w.id.0 {
                errors.in_table(
                    "workloads",
                    i,
                    "token_sha256",
                    field("token_sha256"),
                    format!("the same token is also given to {other}: a token names one identity"),
                );
            }
        }
        let workload = Workload {
            name: w.name.clone(),
            id: w.id.0.clone(),
            address: w.address,
            tunnel: w.tunnel,
            ports: w.ports.clone(),
        };
        if workloads.insert(w.name.clone(), workload).is_some() {
            errors.in_table(
                "workloads",
                i,
                "name",
                field("name"),
                format!("{:?} is declared twice", w.name),
            );
        }
    }

    // Services.
    let mut services: BTreeMap<String, api::Service> = BTreeMap::new();
    let mut failover = BTreeSet::new();
    // service `name.namespace` → (port → authority) for policies.
    let mut service_ports: HashMap<String, BTreeMap<u16, Vec<(SpiffeId, u16)>>> = HashMap::new();
    let mut port_table_index = 0;
    for (i, s) in file.services.iter().enumerate() {
        let field = |k: &str| format!("services[{i}].{k}");
        if !valid_label(&s.name) {
            errors.in_table(
                "services",
                i,
                "name",
                field("name"),
                format!("{:?} is not a DNS label (a-z, 0-9, '-')", s.name),
            );
        }
        if !valid_label(&s.namespace) {
            errors.in_table(
                "services",
                i,
                "namespace",
                field("namespace"),
                format!("{:?} is not a DNS label (a-z, 0-9, '-')", s.namespace),
            );
        }
        let key = format!("{}.{}", s.name, s.namespace);
        if service_ports.contains_key(&key) {
            errors.in_table(
                "services",
                i,
                "name",
                field("name"),
                format!("service {key} is declared twice"),
            );
        }
        let mut members = Vec::new();
        for (j, wname) in s.workloads.iter().enumerate() {
            match workloads.get(wname) {
                Some(w) => members.push(w),
                None => errors.in_table(
                    "services",
                    i,
                    "workloads",
                    field(&format!("workloads[{j}]")),
                    format!("no workload named {wname:?}"),
                ),
            }
        }
        if s.ports.is_empty() {
            errors.in_table(
                "services",
                i,
                "name",
                field("ports"),
                "a service needs at least one port".into(),
            );
        }
        let mut by_port = BTreeMap::new();
        for (j, p) in s.ports.iter().enumerate() {
            let pfield = |k: &str| field(&format!("ports[{j}].{k}"));
            let table_index = port_table_index;
            port_table_index += 1;
            if p.port == 0 {
                errors.in_table(
                    "services.ports",
                    table_index,
                    "port",
                    pfield("port"),
                    "port 0 is not a port".into(),
                );
                continue;
            }
            if by_port.contains_key(&p.port) {
                errors.in_table(
                    "services.ports",
                    table_index,
                    "port",
                    pfield("port"),
                    format!("port {} is declared twice", p.port),
                );
                continue;
            }
            let mut endpoints = Vec::new();
            let mut targets = Vec::new();
            for w in &members {
                let target = match &p.target_port {
                    None => Some(p.port),
                    Some(TargetPort::Number(0)) => None,
                    Some(TargetPort::Number(n)) => Some(*n),
                    Some(TargetPort::Name(name)) => w.ports.get(name).copied(),
                };
                let Some(target) = target else {
                    errors.in_table(
                        "services.ports",
                        table_index,
                        "target_port",
                        pfield("target_port"),
                        format!(
                            "workload {:?} has no port {:?}",
                            w.name,
                            p.target_port
                                .as_ref()
                                .map(|t| match t {
                                    TargetPort::Name(n) => n.clone(),
                                    TargetPort::Number(n) => n.to_string(),
                                })
                                .unwrap_or_default()
                        ),
                    );
                    continue;
                };
                targets.push((w.id.clone(), target));
                endpoints.push(api::Endpoint {
                    address: std::net::SocketAddr::new(w.address, target).to_string(),
                    tunnel: w.tunnel.to_string(),
                    spiffe_id: w.id.to_string(),
                    cluster: String::new(),
                    via_gateway: None,
                    failover: false,
                });
            }
            let authority = format!("{key}:{}", p.port);
            if s.failover {
                failover.insert(authority.clone());
            }
            services.insert(
                authority.clone(),
                api::Service {
                    authority,
                    protocol: protocol(p.protocol) as i32,
                    addresses: s
                        .addresses
                        .iter()
                        .map(|ip| std::net::SocketAddr::new(*ip, p.port).to_string())
                        .collect(),
                    endpoints,
                    exported: s.export,
                },
            );
            by_port.insert(p.port, targets);
        }
        service_ports.insert(key, by_port);
    }

    // Policies: per workload identity and target port.
    let mut policies: HashMap<SpiffeId, BTreeMap<u32, api::PortPolicy>> = HashMap::new();
    for (i, p) in file.policies.iter().enumerate() {
        let field = |k: &str| format!("policies[{i}].{k}");
        let Some(ports) = service_ports.get(&p.service) else {
            errors.in_table(
                "policies",
                i,
                "service",
                field("service"),
                format!("no service {:?} (write `name.namespace`)", p.service),
            );
            continue;
        };
        for ns in &p.allow_namespaces {
            if !valid_label(ns) {
                errors.in_table(
                    "policies",
                    i,
                    "allow_namespaces",
                    field("allow_namespaces"),
                    format!("{ns:?} is not a namespace name"),
                );
            }
        }
        let selected: Vec<&Vec<(SpiffeId, u16)>> = match p.port {
            Some(port) => match ports.get(&port) {
                Some(t) => vec![t],
                None => {
                    errors.in_table(
                        "policies",
                        i,
                        "port",
                        field("port"),
                        format!("service {} has no port {port}", p.service),
                    );
                    continue;
                }
            },
            None => ports.values().collect(),
        };
        for (id, target) in selected.into_iter().flatten() {
            let entry = policies
                .entry(id.clone())
                .or_default()
                .entry(u32::from(*target))
                .or_insert_with(|| api::PortPolicy {
                    port: u32::from(*target),
                    ..Default::default()
                });
            let add = |list: &mut Vec<String>, items: Vec<String>| {
                let mut set: BTreeSet<String> = list.drain(..).collect();
                set.extend(items);
                list.extend(set);
            };
            add(
                &mut entry.allow_ids,
                p.allow_ids.iter().map(|v| v.0.to_string()).collect(),
            );
            add(
                &mut entry.allow_trust_domains,
                p.allow_trust_domains
                    .iter()
                    .map(|v| v.0.to_string())
                    .collect(),
            );
            add(&mut entry.allow_namespaces, p.allow_namespaces.clone());
        }
    }

    if let Some(e) = ConfigError::from_all(errors.found) {
        return Err(e);
    }
    Ok(Mesh {
        trust_domain: td,
        cluster,
        links,
        failover,
        ca_dir,
        cert_ttl: file.certificates.ttl,
        listen: file.control.listen,
        admin: file.control.admin,
        control_id,
        reload_interval: file.control.reload_interval,
        workloads,
        tokens,
        services,
        policies: policies
            .into_iter()
            .map(|(id, ports)| {
                (
                    id,
                    api::InboundPolicy {
                        ports: ports.into_values().collect(),
                    },
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex() {
        assert_eq!(parse_sha256(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
    }

    #[test]
    fn labels() {
        assert!(valid_label("api-1"));
        assert!(!valid_label("Api"));
        assert!(!valid_label("-a"));
        assert!(!valid_label(""));
    }
}
