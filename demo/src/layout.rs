//! The files of one demo cluster, written under `<demo dir>/<cluster>/`:
//! its CA (`ca/`), the workloads' bootstrap tokens (`tokens/`), the mesh
//! file the control plane serves (`mesh.toml`), and the configurations of
//! its edges (`api.toml`, `web.toml`) and gateway (`gateway/gateway.toml`,
//! beside only the CA certificate and its token: a gateway holds no key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::TrustDomain;

use crate::error::DemoError;

/// The roles of the workloads in every cluster.
pub const WORKLOADS: [&str; 3] = ["web", "api", "gateway"];
/// Where a workload's tunnel is advertised before it is known.
const NOWHERE: &str = "127.0.0.1:9";

pub fn trust_domain(cluster: &str) -> String {
    format!("{cluster}.demo")
}

pub fn namespace(role: &str) -> &'static str {
    if role == "gateway" {
        "ferry-system"
    } else {
        "default"
    }
}

pub fn workload_id(cluster: &str, role: &str) -> String {
    format!(
        "spiffe://{}/ns/{}/sa/{role}",
        trust_domain(cluster),
        namespace(role)
    )
}

/// The ports of the sample applications beside the `api` edge.
#[derive(Debug, Clone, Copy)]
pub struct AppPorts {
    pub http: u16,
    pub grpc: u16,
    pub echo: u16,
}

/// What the mesh file says about the other cluster once it runs.
pub struct Link {
    pub cluster: &'static str,
    pub control: SocketAddr,
    pub gateway: SocketAddr,
    pub gateway_admin: SocketAddr,
}

/// One cluster's directory.
pub struct ClusterFiles {
    pub cluster: &'static str,
    pub dir: PathBuf,
    /// The SHA-256 of each workload's token, in [`WORKLOADS`] order.
    token_hashes: Vec<String>,
}

impl ClusterFiles {
    /// Creates the directory, the CA and the tokens.
    pub fn create(root: &Path, cluster: &'static str) -> Result<Self, DemoError> {
        let dir = root.join(cluster);
        let pki_err = |detail: String| DemoError::Pki {
            cluster: cluster.into(),
            detail,
        };
        let td = TrustDomain::new(&trust_domain(cluster)).map_err(|e| pki_err(e.to_string()))?;
        CertificateAuthority::generate(&td, Duration::from_secs(7 * 86400))
            .and_then(|ca| ca.write(&dir.join("ca"), false))
            .map_err(|e| pki_err(e.to_string()))?;
        let mut token_hashes = Vec::new();
        for role in WORKLOADS {
            let (token, hash) = ferry_control::token::generate();
            write(&dir.join("tokens").join(format!("{role}.token")), &token)?;
            token_hashes.push(hash);
        }
        let gateway_ca = dir.join("gateway/ca.pem");
        write(&gateway_ca, &read(&dir.join("ca/ca.pem"))?)?;
        Ok(Self {
            cluster,
            dir,
            token_hashes,
        })
    }

    pub fn mesh_file(&self) -> PathBuf {
        self.dir.join("mesh.toml")
    }

    /// Writes the mesh file (atomically: the control plane reloads it).
    /// Until the tunnels are known they are advertised nowhere.
    pub fn write_mesh(
        &self,
        apps: AppPorts,
        tunnels: Option<(SocketAddr, SocketAddr)>,
        link: Option<&Link>,
    ) -> Result<(), DemoError> {
        let (web, api) = tunnels
            .map(|(w, a)| (w.to_string(), a.to_string()))
            .unwrap_or((NOWHERE.into(), NOWHERE.into()));
        let [web_hash, api_hash, gateway_hash] = [0, 1, 2].map(|i| &self.token_hashes[i]);
        let c = self.cluster;
        let mut text = format!(
            r#"# The mesh of the demo's cluster {c}, served by its control plane
# (reloaded when this file changes).
trust_domain = "{td}"
cluster = "{c}"
[ca]
dir = "ca"
[control]
reload_interval = "250ms"

[[workloads]]
name = "web-1"
id = "{web_id}"
address = "127.0.0.1"
tunnel = "{web}"
token_sha256 = "{web_hash}"

[[workloads]]
name = "api-1"
id = "{api_id}"
address = "127.0.0.1"
tunnel = "{api}"
ports = {{ http = {http}, grpc = {grpc}, echo = {echo} }}
token_sha256 = "{api_hash}"

[[workloads]]
name = "gateway"
id = "{gateway_id}"
address = "127.0.0.1"
tunnel = "{NOWHERE}"
token_sha256 = "{gateway_hash}"

[[services]]
name = "api"
namespace = "default"
workloads = ["api-1"]
export = true
failover = true
[[services.ports]]
port = 80
target_port = "http"
protocol = "http"

[[services]]
name = "grpc"
namespace = "default"
workloads = ["api-1"]
export = true
[[services.ports]]
port = 50051
target_port = "grpc"
protocol = "grpc"

[[services]]
name = "echo"
namespace = "default"
workloads = ["api-1"]
export = true
[[services.ports]]
port = 7
target_port = "echo"
protocol = "tcp"
"#,
            td = trust_domain(c),
            web_id = workload_id(c, "web"),
            api_id = workload_id(c, "api"),
            gateway_id = workload_id(c, "gateway"),
            http = apps.http,
            grpc = apps.grpc,
            echo = apps.echo,
        );
        if let Some(l) = link {
            text += &format!(
                r#"
[[links]]
cluster = "{}"
trust_domain = "{}"
control = "{}"
gateway = "{}"
gateway_health = "{}"
bundle = "{}-ca.pem"
probe_interval = "250ms"
"#,
                l.cluster,
                trust_domain(l.cluster),
                l.control,
                l.gateway,
                l.gateway_admin,
                l.cluster
            );
        }
        write(&self.mesh_file(), &text)
    }

    /// Copies another cluster's CA certificate beside the mesh file (the
    /// bundle its `[[links]]` entry names).
    pub fn import_bundle(&self, other: &ClusterFiles) -> Result<(), DemoError> {
        let pem = read(&other.dir.join("ca/ca.pem"))?;
        write(&self.dir.join(format!("{}-ca.pem", other.cluster)), &pem)
    }

    fn control_section(&self, control: SocketAddr, role: &str, bundle: &Path) -> String {
        format!(
            "[control]\naddress = \"{control}\"\nworkload_id = \"{}\"\ntoken_file = \"{}\"\nbundle = \"{}\"\n",
            workload_id(self.cluster, role),
            self.dir.join("tokens").join(format!("{role}.token")).display(),
            bundle.display()
        )
    }

    /// An edge's configuration: identity from the control plane, tunnel
    /// and admin on free ports, one outbound listener per service.
    pub fn write_edge(
        &self,
        role: &str,
        control: SocketAddr,
        services: &[String],
    ) -> Result<PathBuf, DemoError> {
        let mut text = format!(
            "# The demo's {role} edge in {}.\nshutdown_grace = \"1s\"\n{}[tunnel]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[outbound]\n",
            self.cluster,
            self.control_section(control, role, &self.dir.join("ca/ca.pem"))
        );
        for s in services {
            text +=
                &format!("[[outbound.listeners]]\nlisten = \"127.0.0.1:0\"\nservice = \"{s}\"\n");
        }
        let path = self.dir.join(format!("{role}.toml"));
        write(&path, &text)?;
        Ok(path)
    }

    pub fn write_gateway(&self, control: SocketAddr) -> Result<PathBuf, DemoError> {
        let dir = self.dir.join("gateway");
        let text = format!(
            "# The demo's gateway in {}.\nshutdown_grace = \"1s\"\n{}[tunnel]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            self.cluster,
            self.control_section(control, "gateway", &dir.join("ca.pem"))
        );
        let path = dir.join("gateway.toml");
        write(&path, &text)?;
        Ok(path)
    }
}

fn read(path: &Path) -> Result<String, DemoError> {
    std::fs::read_to_string(path).map_err(|e| DemoError::Write {
        path: path.into(),
        source: e,
    })
}

/// Writes through a temporary file and a rename, creating the directory.
fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    let err = |e| DemoError::Write {
        path: path.into(),
        source: e,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_directory_has_its_ca_tokens_and_a_loadable_mesh() {
        let root = std::env::temp_dir().join(format!("ferry-demo-layout-{}", std::process::id()));
        let files = ClusterFiles::create(&root, "east").unwrap();
        assert!(files.dir.join("ca/ca.key").exists());
        assert!(files.dir.join("gateway/ca.pem").exists());
        assert!(
            !files.dir.join("gateway/ca.key").exists(),
            "no key for the gateway"
        );
        let apps = AppPorts {
            http: 1,
            grpc: 2,
            echo: 3,
        };
        files.write_mesh(apps, None, None).unwrap();
        let mesh = ferry_control::mesh::load(&files.mesh_file());
        let _ = std::fs::remove_dir_all(&root);
        mesh.expect("the mesh file loads");
    }
}
