//! `tunnel.cipher_suites` reaches the edge's TLS configs: two edges that
//! both allow only AES-256-GCM serve requests over either transport; a
//! client edge allowing only AES-256-GCM and a server edge allowing only
//! AES-128-GCM share no suite, and the request is answered 502 by the
//! client edge instead of reaching the application.

mod support;

use ferry_edge::RunningEdge;
use support::*;

const AES128: &str = "cipher_suites = [\"TLS_AES_128_GCM_SHA256\"]\n";
const AES256: &str = "cipher_suites = [\"TLS_AES_256_GCM_SHA384\"]\n";

/// A server edge "api" with `server_suites` in front of an HTTP app, and a
/// client edge "web" with `client_suites` and a listener for it.
async fn pair(
    mesh: &Mesh,
    transport: &'static str,
    server_suites: &str,
    client_suites: &str,
) -> (RunningEdge, RunningEdge) {
    let app = http_app().await;
    let empty = mesh.write("empty-mesh.toml", "");
    let opts = |suites: &str| EdgeOpts {
        force_transport: Some(transport),
        tunnel_extra: suites.to_string(),
        ..Default::default()
    };
    let server = start_edge(mesh, "api", &empty, &opts(server_suites)).await;
    let (api_id, _) = mesh.identity("api");
    let mesh_file = mesh.write(
        "mesh.toml",
        &mesh_toml(&[Svc {
            name: "app",
            port: app.port(),
            protocol: "http",
            endpoints: vec![(app, server.tunnel, api_id)],
        }]),
    );
    let client_opts = EdgeOpts {
        listeners: vec![format!("app.default:{}", app.port())],
        ..opts(client_suites)
    };
    let client = start_edge(mesh, "web", &mesh_file, &client_opts).await;
    (server, client)
}

async fn suites_apply(transport: &'static str) {
    let mesh = Mesh::new();
    let (_server, client) = pair(&mesh, transport, AES256, AES256).await;
    let http = http_client();
    let (status, err, _) = get(&http, client.outbound[0].0, "/same").await.unwrap();
    assert_eq!(
        (status, err.as_str()),
        (200, ""),
        "{transport}: AES-256-GCM on both ends"
    );

    let mesh = Mesh::new();
    let (_server, client) = pair(&mesh, transport, AES128, AES256).await;
    let (status, err, _) = get(&http, client.outbound[0].0, "/apart").await.unwrap();
    assert_eq!(status, 502, "{transport}: no suite in common ({err})");
}

#[tokio::test(flavor = "multi_thread")]
async fn cipher_suites_apply_over_quic() {
    suites_apply("quic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cipher_suites_apply_over_tls_tcp() {
    suites_apply("h2").await;
}
