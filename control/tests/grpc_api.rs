//! The gRPC API against a real control plane on 127.0.0.1 (TLS, port 0):
//! Certify refuses wrong tokens, CSRs for another identity, extra SANs and
//! garbage, and signs a correct CSR; Watch needs an SVID, sends the whole
//! state then each change, keeps the last good state when the mesh file
//! breaks, and counts all of it in the metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_control::api::discovery_client::DiscoveryClient;
use ferry_control::api::identity_client::IdentityClient;
use ferry_control::api::{CertifyRequest, WatchRequest, WatchUpdate};
use ferry_control::client::{channel, Certifier};
use ferry_control::{Overrides, RunningControl};
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityStore, SpiffeId, TrustBundles, TrustDomain};
use ferry_transport::metrics::transport::TransportMetrics;
use ferry_transport::tls::{bootstrap_client, TlsConfigs, ALPN_H2};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use tonic::Code;

const TD: &str = "grpc.test";
const WEB_TOKEN: &str = "web-token";
const API_TOKEN: &str = "api-token";

struct Plane {
    dir: tempfile::TempDir,
    control: RunningControl,
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TD}/ns/default/sa/{sa}")).unwrap()
}

fn mesh_text(api_port: u16, policy_ns: &str) -> String {
    let h = ferry_control::token::sha256_hex;
    format!(
        r#"trust_domain = "{TD}"
[ca]
dir = "ca"
[certificates]
ttl = "1h"
[control]
reload_interval = "50ms"

[[workloads]]
name = "web-1"
id = "spiffe://{TD}/ns/default/sa/web"
address = "127.0.0.1"
tunnel = "127.0.0.1:14143"
token_sha256 = "{}"

[[workloads]]
name = "api-1"
id = "spiffe://{TD}/ns/default/sa/api"
address = "127.0.0.1"
tunnel = "127.0.0.1:14144"
token_sha256 = "{}"

[[services]]
name = "api"
namespace = "default"
workloads = ["api-1"]
[[services.ports]]
port = 80
target_port = {api_port}
protocol = "http"

[[services]]
name = "db"
namespace = "default"
workloads = ["api-1"]
[[services.ports]]
port = 5432

[[policies]]
service = "api.default"
allow_namespaces = ["{policy_ns}"]
"#,
        h(WEB_TOKEN),
        h(API_TOKEN)
    )
}

impl Plane {
    async fn start() -> Self {
        ferry_transport::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::generate(&TrustDomain::new(TD).unwrap(), Duration::from_secs(86400))
            .unwrap()
            .write(&dir.path().join("ca"), false)
            .unwrap();
        std::fs::write(dir.path().join("mesh.toml"), mesh_text(8080, "default")).unwrap();
        let control = RunningControl::start(
            &dir.path().join("mesh.toml"),
            Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                admin: Some("127.0.0.1:0".parse().unwrap()),
            },
        )
        .await
        .unwrap();
        Self { dir, control }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the mesh file atomically.
    fn rewrite(&self, text: &str) {
        std::fs::write(self.path("mesh.tmp"), text).unwrap();
        std::fs::rename(self.path("mesh.tmp"), self.path("mesh.toml")).unwrap();
    }

    fn bundles(&self) -> Arc<TrustBundles> {
        let mut b = TrustBundles::default();
        b.add_pem_file(&self.path("ca/ca.pem")).unwrap();
        Arc::new(b)
    }

    /// A channel without a client certificate.
    fn anonymous(&self) -> tonic::transport::Channel {
        let tls = bootstrap_client(
            self.bundles(),
            &self.control.id,
            ALPN_H2,
            TransportMetrics::new(),
        );
        channel(self.control.grpc, move || tls.clone())
    }

    fn certifier(&self, sa: &str, token: &str) -> Certifier {
        Certifier::new(
            self.control.grpc,
            self.control.id.clone(),
            self.bundles(),
            id(sa),
            token.into(),
            TransportMetrics::new(),
        )
    }

    /// A channel presenting `sa`'s SVID, certified by the control plane.
    async fn as_workload(&self, sa: &str, token: &str) -> tonic::transport::Channel {
        let material = self.certifier(sa, token).certify().await.unwrap();
        let tls = TlsConfigs::new(IdentityStore::new(material), TransportMetrics::new());
        let control_id = self.control.id.clone();
        channel(self.control.grpc, move || tls.client(&control_id, ALPN_H2))
    }

    async fn metrics(&self) -> String {
        admin_get(self.control.admin, "/metrics").await
    }
}

async fn admin_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn csr(sans: Vec<SanType>) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().der().to_vec()
}

fn uri(s: &str) -> SanType {
    SanType::URI(rcgen::string::Ia5String::try_from(s.to_string()).unwrap())
}

async fn certify_raw(p: &Plane, csr_der: Vec<u8>, token: &str) -> Result<(), tonic::Status> {
    let mut c = IdentityClient::new(p.anonymous());
    c.certify(CertifyRequest {
        csr_der,
        token: token.into(),
    })
    .await
    .map(|_| ())
}

#[tokio::test]
async fn certify_refuses_bad_tokens_and_csrs() {
    let p = Plane::start().await;
    let web = id("web").to_string();
    let e = certify_raw(&p, csr(vec![uri(&web)]), "not-a-token")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        !e.message().contains("not-a-token"),
        "the token is not echoed: {e:?}"
    );

    // The web token, but a CSR for api.
    let e = certify_raw(&p, csr(vec![uri(&id("api").to_string())]), WEB_TOKEN)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains(&web), "{e:?}");

    // The right URI plus a DNS name.
    let dns = SanType::DnsName(rcgen::string::Ia5String::try_from("web.example").unwrap());
    let e = certify_raw(&p, csr(vec![uri(&web), dns]), WEB_TOKEN)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("DNS:web.example"), "{e:?}");

    // An IP address only.
    let e = certify_raw(
        &p,
        csr(vec![SanType::IpAddress("10.0.0.1".parse().unwrap())]),
        WEB_TOKEN,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Not a CSR; a CSR whose signature does not match.
    let e = certify_raw(&p, b"garbage".to_vec(), WEB_TOKEN)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let mut tampered = csr(vec![uri(&web)]);
    let n = tampered.len();
    tampered[n - 5] ^= 0x55;
    let e = certify_raw(&p, tampered, WEB_TOKEN).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Too big.
    let e = certify_raw(&p, vec![0; 20_000], WEB_TOKEN)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let m = p.metrics().await;
    assert!(
        m.contains("ferry_control_certify_refused_total{reason=\"bad_token\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ferry_control_certify_refused_total{reason=\"wrong_identity\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("ferry_control_certify_refused_total{reason=\"bad_csr\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("ferry_control_certificates_issued_total 0"),
        "{m}"
    );
}

#[tokio::test]
async fn certify_signs_a_short_lived_certificate_for_the_workload() {
    let p = Plane::start().await;
    let before = std::time::SystemTime::now();
    let m = p.certifier("web", WEB_TOKEN).certify().await.unwrap();
    assert_eq!(m.id, id("web"));
    let lifetime = m.not_after.duration_since(before).unwrap();
    assert!(
        lifetime > Duration::from_secs(3590) && lifetime <= Duration::from_secs(3601),
        "the mesh file's 1h TTL: {lifetime:?}"
    );
    assert!(m.bundles.anchors(&TrustDomain::new(TD).unwrap()).is_some());
    // The chain verifies under the CA as a client and as a server
    // certificate: the identity works on both ends of a tunnel.
    let chain = m.certified_key.cert.clone();
    let ca = p.bundles();
    let algs = ferry_transport::crypto::provider().signature_verification_algorithms;
    for usage in [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ] {
        let verified = ferry_transport::tls::verify::verify_chain(
            &ca,
            &algs,
            &chain[0],
            &chain[1..],
            rustls_pki_types::UnixTime::now(),
            usage,
        )
        .unwrap();
        assert_eq!(verified, id("web"));
    }
    // Wrong token for the same workload: refused (the token, not the
    // identity asked for, is what authenticates).
    let err = p.certifier("web", API_TOKEN).certify().await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(p
        .metrics()
        .await
        .contains("ferry_control_certificates_issued_total 1"));
}

#[tokio::test]
async fn a_caller_with_a_certificate_must_be_the_tokens_workload() {
    let p = Plane::start().await;
    let web = id("web").to_string();
    // Web's own SVID with web's token: a renewal, accepted.
    let mut as_web = IdentityClient::new(p.as_workload("web", WEB_TOKEN).await);
    as_web
        .certify(CertifyRequest {
            csr_der: csr(vec![uri(&web)]),
            token: WEB_TOKEN.into(),
        })
        .await
        .unwrap();
    // Web's SVID with api's token (and a CSR for api): refused.
    let e = as_web
        .certify(CertifyRequest {
            csr_der: csr(vec![uri(&id("api").to_string())]),
            token: API_TOKEN.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("caller's certificate is for"), "{e:?}");
}

#[tokio::test]
async fn watch_needs_an_svid() {
    let p = Plane::start().await;
    let mut c = DiscoveryClient::new(p.anonymous());
    let e = c.watch(WatchRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("Certify"), "{e:?}");
}

async fn next(stream: &mut tonic::Streaming<WatchUpdate>) -> WatchUpdate {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an update within 5 s")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn watch_sends_the_state_then_each_change_and_survives_a_broken_file() {
    let p = Plane::start().await;
    let mut api = DiscoveryClient::new(p.as_workload("api", API_TOKEN).await);
    let mut web = DiscoveryClient::new(p.as_workload("web", WEB_TOKEN).await);
    let mut api_stream = api
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut web_stream = web
        .watch(WatchRequest {
            authorities: vec!["api.default:80".into()],
        })
        .await
        .unwrap()
        .into_inner();

    let first = next(&mut api_stream).await;
    assert!(first.reset);
    let names: Vec<&str> = first
        .services
        .iter()
        .map(|s| s.authority.as_str())
        .collect();
    assert_eq!(names, vec!["api.default:80", "db.default:5432"]);
    assert_eq!(first.services[0].endpoints[0].address, "127.0.0.1:8080");
    assert_eq!(
        first.services[0].endpoints[0].spiffe_id,
        id("api").to_string()
    );
    let policy = first.policy.unwrap();
    assert_eq!(
        policy.ports.len(),
        1,
        "api.default's one port, not db's: {policy:?}"
    );
    assert_eq!(policy.ports[0].port, 8080);
    assert_eq!(policy.ports[0].allow_namespaces, vec!["default"]);

    let first = next(&mut web_stream).await;
    assert!(first.reset);
    assert_eq!(first.services.len(), 1, "only what it asked for");
    assert!(
        first.policy.unwrap().ports.is_empty(),
        "web has no inbound policy"
    );

    // One service changes: each watcher gets only that.
    let t0 = std::time::Instant::now();
    p.rewrite(&mesh_text(8081, "default"));
    let u = next(&mut api_stream).await;
    assert!(!u.reset);
    assert_eq!(u.version, 2);
    assert_eq!(u.services.len(), 1);
    assert_eq!(u.services[0].endpoints[0].address, "127.0.0.1:8081");
    assert!(
        u.policy.is_some(),
        "the target port moved, so api's policy changed"
    );
    let u = next(&mut web_stream).await;
    assert_eq!(u.services[0].endpoints[0].address, "127.0.0.1:8081");
    assert!(u.policy.is_none(), "web's policy did not change");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "pushed within a second: {:?}",
        t0.elapsed()
    );

    // A broken file: refused, nothing sent, the last state still served.
    p.rewrite("trust_domain = \"grpc.test\"\n[ca]\ndir = \"ca\"\n[[workloads]]\nname = \"x\"\n");
    let quiet = tokio::time::timeout(Duration::from_millis(600), api_stream.message()).await;
    assert!(
        quiet.is_err(),
        "nothing is pushed for a broken file: {quiet:?}"
    );
    let m = p.metrics().await;
    assert!(
        m.contains("ferry_control_mesh_reloads_total{result=\"rejected\"} 1"),
        "{m}"
    );
    assert!(m.contains("ferry_control_mesh_version 2"), "{m}");
    let mut late = DiscoveryClient::new(p.as_workload("web", WEB_TOKEN).await);
    let mut late_stream = late
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let state = next(&mut late_stream).await;
    assert_eq!(state.version, 2);
    assert_eq!(state.services[0].endpoints[0].address, "127.0.0.1:8081");

    // Fixed again: a policy-only change reaches only api.
    p.rewrite(&mesh_text(8081, "prod"));
    let u = next(&mut api_stream).await;
    assert_eq!(u.version, 3);
    assert!(u.services.is_empty() && u.removed.is_empty());
    assert_eq!(u.policy.unwrap().ports[0].allow_namespaces, vec!["prod"]);
    let quiet = tokio::time::timeout(Duration::from_millis(300), web_stream.message()).await;
    assert!(quiet.is_err(), "web watches nothing that changed");

    // A service removed.
    p.rewrite(&mesh_text(8081, "prod").replace(
        "[[services]]\nname = \"db\"\nnamespace = \"default\"\nworkloads = [\"api-1\"]\n[[services.ports]]\nport = 5432\n",
        "",
    ));
    let u = next(&mut api_stream).await;
    assert_eq!(u.removed, vec!["db.default:5432"]);
    assert!(p.metrics().await.contains("ferry_control_watchers 3"));
    drop(api_stream);
    drop(web_stream);
    drop(late_stream);
    p.control.shutdown().await;
}

#[tokio::test]
async fn a_large_state_arrives_in_parts_with_the_policy_last() {
    let p = Plane::start().await;
    // 600 more services: three parts of at most SERVICES_PER_PART.
    let mut text = mesh_text(8080, "default");
    for i in 0..600 {
        text += &format!(
            "\n[[services]]\nname = \"s{i}\"\nnamespace = \"bulk\"\nworkloads = [\"api-1\"]\n[[services.ports]]\nport = 80\ntarget_port = 8080\n"
        );
    }
    p.rewrite(&text);
    let mut api = DiscoveryClient::new(p.as_workload("api", API_TOKEN).await);
    // Wait for the control plane to serve the big file.
    let parts = loop {
        let mut stream = api
            .watch(WatchRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut parts = vec![next(&mut stream).await];
        while parts.last().unwrap().partial {
            parts.push(next(&mut stream).await);
        }
        if parts.iter().map(|u| u.services.len()).sum::<usize>() == 602 {
            break parts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let per_part = ferry_control::discovery_service::SERVICES_PER_PART;
    assert_eq!(parts.len(), 602usize.div_ceil(per_part));
    let version = parts[0].version;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        assert!(part.reset, "every part belongs to the full state");
        assert_eq!(part.version, version);
        assert_eq!(part.partial, !last);
        assert!(part.services.len() <= per_part);
        assert_eq!(part.policy.is_some(), last, "the policy comes once, last");
    }
    // Every service exactly once.
    let mut names: Vec<&str> = parts
        .iter()
        .flat_map(|u| u.services.iter().map(|s| s.authority.as_str()))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 602);
}
