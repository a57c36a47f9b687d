//! Two whole clusters on 127.0.0.1, `east` and `west`, each with its own
//! trust domain and CA, its control plane (linked to the other's), an `api`
//! edge in front of HTTP, gRPC and TCP applications, a `web` edge for the
//! callers, and a gateway — every part certified by its own control plane,
//! every hop a real socket. East's callers reach west's exported services
//! as `<name>.default.svc.west` through west's gateway, with their own
//! identity end to end; the gateway admits linked trust domains and
//! exported targets only, holds no key of the inner sessions, pools them,
//! survives a restart under load, and falls back to TLS/TCP when UDP
//! between the clusters is dropped; east's `api` fails over to west's when
//! its local endpoint goes away, and comes back when it returns.

mod clusters;
#[path = "../../edge/tests/support/grpc_app.rs"]
mod grpc_app;
#[path = "../../edge/tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusters::*;
use ferry_netem::UdpBlackhole;
use ferry_transport::identity::pki::CertificateAuthority;
use ferry_transport::identity::{IdentityFiles, IdentityStore, SpiffeId, TrustDomain};
use ferry_transport::tunnel::{PeerKey, TunnelError};
use support::{admin_get, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_grpc_and_tcp_cross_clusters_with_the_callers_own_identity() {
    let (east, west) = linked().await;
    let caller = id("east", "default", "web").to_string();

    // HTTP: answered by west's application, which sees east's web itself.
    assert!(
        until_answered_by(east.listener(API_REMOTE), "west", Duration::from_secs(15)).await,
        "west's api is reachable from east: {:?}",
        fetch(east.listener(API_REMOTE), "/").await
    );
    let (status, body) = fetch(east.listener(API_REMOTE), "/").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, format!("west {caller}").as_str())
    );

    // gRPC: the reply names the caller's identity as west's server saw it.
    let reply = grpc_unary(east.listener(GRPC_REMOTE), "hi").await.unwrap();
    assert_eq!(reply.text, format!("hi from {caller}"));
    assert_eq!(reply.data, vec![2, 3, 4]);

    // Opaque TCP, 1 MiB both ways.
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(echo(east.listener(ECHO_REMOTE), &payload).await, payload);

    // 1,000 sequential fresh application connections: one inner session.
    for i in 0..1000 {
        let mut s = TcpStream::connect(east.listener(API_REMOTE)).await.unwrap();
        s.write_all(
            format!("GET /n{i} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "connection {i}: {out}");
    }
    // Metrics name the transport on the wire, the hop to the gateway
    // (QUIC), not the inner session's HTTP/2 inside it.
    let web = east.web.admin;
    let requests = "ferry_requests_total{direction=\"outbound\",transport=";
    assert!(metric(web, &format!("{requests}\"quic\"")).await >= 1000);
    assert_eq!(metric(web, &format!("{requests}\"h2\"")).await, 0);
    assert_eq!(
        metric(
            web,
            "ferry_tcp_connections_total{direction=\"outbound\",transport=\"quic\"}"
        )
        .await,
        1
    );
    let api_admin = west.api.as_ref().unwrap().admin;
    // West's api edge counts them on the wire's transport too (the hop
    // from its gateway).
    let inbound = "ferry_requests_total{direction=\"inbound\",transport=";
    assert!(metric(api_admin, &format!("{inbound}\"quic\"")).await >= 1000);
    assert_eq!(metric(api_admin, &format!("{inbound}\"h2\"")).await, 0);
    assert_eq!(
        metric(
            api_admin,
            "ferry_transport_handshakes_total{transport=\"h2\",side=\"server\",result=\"ok\"}"
        )
        .await,
        1,
        "one end-to-end handshake at west's api for every request, RPC and connection"
    );
    assert_eq!(
        metric(west.gateway().admin, "ferry_gateway_open_relays").await,
        1,
        "one pooled inner session through west's gateway"
    );

    // The gateway holds no key that could open the inner session: nothing
    // in its directory is a private key, and the inner session was
    // authenticated with east's web identity (shown above), which only
    // east's web edge can prove.
    for entry in std::fs::read_dir(west.gateway_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(!text.contains("PRIVATE KEY"), "{} holds a key", p.display());
        }
    }

    // West's gateway refuses targets that are not endpoints of exported
    // services, even from a linked caller with a valid identity.
    let linked_client = raw_client(east.certified("web").await);
    let gw_key = PeerKey::new(west.gateway().tunnel, id("west", "ferry-system", "gateway"));
    match linked_client
        .open_inner(&gw_key, NOWHERE.parse().unwrap())
        .await
    {
        Err(TunnelError::Refused { status, detail }) => {
            assert_eq!(status, 403, "{detail}");
        }
        other => panic!("an unexported target must be refused: {:?}", other.err()),
    }
    assert!(
        metric(
            west.gateway().admin,
            "ferry_gateway_refused_total{reason=\"not_exported\"}"
        )
        .await
            >= 1
    );

    // A caller from a trust domain no cluster linked is refused at the
    // gateway's handshake, and counted.
    let north = tempfile::tempdir().unwrap();
    let north_ca = CertificateAuthority::generate(
        &TrustDomain::new("north.test").unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    north_ca
        .issue(
            &SpiffeId::parse("spiffe://north.test/ns/default/sa/web").unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap()
        .write(north.path(), false)
        .unwrap();
    let mut files = IdentityFiles::in_dir(north.path());
    // The north caller trusts west's CA, so only west can say no.
    files.bundles.push(west.path("ca/ca.pem"));
    let north_client = raw_client(IdentityStore::load(&files).unwrap());
    let rejected_before = metric(west.gateway().admin, "ferry_tls_rejections_total").await;
    let refused = north_client.open_inner(&gw_key, west.api_tunnel).await;
    assert!(refused.is_err(), "an unlinked trust domain gets nothing");
    assert!(
        wait_until(Duration::from_secs(3), || async {
            metric(west.gateway().admin, "ferry_tls_rejections_total").await > rejected_before
        })
        .await,
        "the gateway counted the refused handshake"
    );

    // Only exported services were imported: west's db is not offered.
    let (_, config) = admin_get(east.web.admin, "/config").await;
    assert!(config.contains("api.default.svc.west"), "{config}");
    assert!(!config.contains("db.default.svc.west"), "{config}");

    east.shutdown().await;
    west.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_between_the_clusters_falls_back_to_tls_over_tcp() {
    // East reaches west's gateway only through a path that drops UDP.
    let mut hole = None;
    let (east, west) = linked_through(async |gw| {
        let h = UdpBlackhole::start(gw).await.unwrap();
        let addr = h.addr();
        hole = Some(h);
        addr
    })
    .await;
    let hole = hole.unwrap();
    let caller = id("east", "default", "web").to_string();
    assert!(
        until_answered_by(east.listener(API_REMOTE), "west", Duration::from_secs(20)).await,
        "west's api is reachable without UDP: {:?}",
        fetch(east.listener(API_REMOTE), "/").await
    );
    let (_, body) = fetch(east.listener(API_REMOTE), "/").await.unwrap();
    assert_eq!(body, format!("west {caller}"));
    let payload: Vec<u8> = (0..256 << 10).map(|i| (i * 13 % 251) as u8).collect();
    assert_eq!(echo(east.listener(ECHO_REMOTE), &payload).await, payload);
    assert_eq!(
        grpc_unary(east.listener(GRPC_REMOTE), "x")
            .await
            .unwrap()
            .text,
        format!("x from {caller}")
    );
    let dropped = hole.dropped();
    assert!(dropped > 0, "QUIC was tried and its datagrams dropped");
    let web = east.web.admin;
    assert!(
        metric(
            web,
            "ferry_transport_handshakes_total{transport=\"h2\",side=\"client\",result=\"ok\"}"
        )
        .await
            >= 2,
        "the outer hop (TLS/TCP) and the inner session"
    );
    assert!(metric(web, "ferry_transport_fallbacks_total").await >= 1);
    assert_eq!(
        metric(
            web,
            "ferry_transport_handshakes_total{transport=\"quic\",side=\"client\",result=\"ok\"}"
        )
        .await,
        0,
        "no QUIC handshake to west got through"
    );
    east.shutdown().await;
    west.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_remote_cluster_when_local_endpoints_go_away_and_back() {
    let (mut east, west) = linked().await;
    let local = east.listener(API_LOCAL);
    let caller = id("east", "default", "web").to_string();
    assert!(until_answered_by(local, "east", Duration::from_secs(10)).await);
    // West's api backs east's once the link is up.
    assert!(until_answered_by(east.listener(API_REMOTE), "west", Duration::from_secs(15)).await);

    // Steady traffic on east's own api while its only local endpoint goes
    // away and comes back.
    let stop = CancellationToken::new();
    let served = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let load = {
        let (stop, served) = (stop.clone(), served.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let slot = match fetch(local, "/").await {
                    Ok((200, b)) if b.starts_with("east ") => 0,
                    Ok((200, b)) if b.starts_with("west ") => 1,
                    _ => 2,
                };
                served[slot].fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let count = |i: usize| served[i].load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(5), || async { count(0) >= 5 }).await,
        "the local endpoint serves first"
    );
    east.api.take().unwrap().shutdown().await;
    let gone = Instant::now();
    assert!(
        until_answered_by(local, "west", Duration::from_secs(10)).await,
        "east's api fails over to west's"
    );
    eprintln!(
        "failed over {:?} after the local endpoint went away",
        gone.elapsed()
    );
    let (_, body) = fetch(local, "/").await.unwrap();
    assert_eq!(
        body,
        format!("west {caller}"),
        "the caller's identity crosses too"
    );

    // The local endpoint returns on its address.
    let mut back = None;
    for _ in 0..50 {
        let mut cfg = ferry_edge::config::EdgeConfig::load(&east.path("api.toml")).unwrap();
        cfg.tunnel.listen = east.api_tunnel;
        match ferry_edge::start(cfg).await {
            Ok(e) => {
                back = Some(e);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    east.api = Some(back.expect("east's api edge restarts on its tunnel address"));
    let returned = Instant::now();
    assert!(
        until_answered_by(local, "east", Duration::from_secs(20)).await,
        "traffic returns to the local endpoint"
    );
    eprintln!(
        "back local {:?} after the endpoint returned",
        returned.elapsed()
    );
    let east_then = count(0);
    assert!(
        wait_until(Duration::from_secs(5), || async {
            count(0) >= east_then + 5
        })
        .await,
        "the local endpoint serves again"
    );
    stop.cancel();
    load.await.unwrap();
    let [by_east, by_west, failed] = [0, 1, 2].map(|i| served[i].load(Ordering::Relaxed));
    eprintln!("served by east {by_east}, by west {by_west}, failed {failed}");
    assert!(by_west > 0 && by_east > 0);
    assert_eq!(failed, 0, "no request failed while failing over and back");
    east.shutdown().await;
    west.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_under_load_recovers() {
    let (east, mut west) = linked().await;
    let remote = east.listener(API_REMOTE);
    assert!(until_answered_by(remote, "west", Duration::from_secs(15)).await);

    let stop = CancellationToken::new();
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, slowest) =
            (stop.clone(), ok.clone(), failed.clone(), slowest.clone());
        load.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let started = Instant::now();
                if matches!(fetch(remote, "/").await, Ok((200, _))) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                slowest.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (tunnel, admin) = (west.gateway().tunnel, west.gateway().admin);
    west.stop_gateway().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    west.restart_gateway(tunnel, admin, |_| {}).await;
    let restarted = Instant::now();
    let before = ok.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            ok.load(Ordering::Relaxed) > before + 20
        })
        .await,
        "traffic recovers through the restarted gateway"
    );
    eprintln!("recovered {:?} after the restart", restarted.elapsed());
    stop.cancel();
    for t in load {
        t.await.unwrap();
    }
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "{} answered, {failed} failed while the gateway was away",
        ok.load(Ordering::Relaxed)
    );
    assert!(failed > 0, "the gateway really was away");
    let slowest = Duration::from_millis(slowest.load(Ordering::Relaxed));
    assert!(
        slowest < Duration::from_secs(10),
        "no request hung while the gateway was away: slowest {slowest:?}"
    );
    for i in 0..20 {
        assert_eq!(fetch(remote, &format!("/after{i}")).await.unwrap().0, 200);
    }
    east.shutdown().await;
    west.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_bounds_relays_per_caller_and_resets_idle_ones() {
    let (east, mut west) = linked().await;
    // Linked both ways (east's certificates carry west's bundle).
    assert!(until_answered_by(east.listener(API_REMOTE), "west", Duration::from_secs(15)).await);
    let (tunnel, admin) = (west.gateway().tunnel, west.gateway().admin);
    west.stop_gateway().await;
    west.restart_gateway(tunnel, admin, |cfg| {
        cfg.limits.relays_per_caller = 2;
        cfg.limits.idle_timeout = Duration::from_millis(800);
    })
    .await;
    let gw = PeerKey::new(tunnel, id("west", "ferry-system", "gateway"));
    let caller = raw_client(east.certified("web").await);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            caller.open_inner(&gw, west.api_tunnel).await.is_ok()
        })
        .await,
        "the restarted gateway admits east"
    );
    // Wait for that probe relay to go idle and be reset.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            metric(admin, "ferry_gateway_open_relays").await == 0
        })
        .await,
        "an idle relay is reset"
    );
    let first = caller.open_inner(&gw, west.api_tunnel).await.unwrap();
    let second = caller.open_inner(&gw, west.api_tunnel).await.unwrap();
    match caller.open_inner(&gw, west.api_tunnel).await {
        Err(TunnelError::Refused { status, detail }) => {
            assert_eq!(status, 503, "{detail}");
            assert!(detail.contains("limit"), "{detail}");
        }
        other => panic!(
            "a third relay for one caller must be refused: {:?}",
            other.err()
        ),
    }
    assert!(metric(admin, "ferry_gateway_refused_total{reason=\"limit\"}").await >= 1);
    // Another caller is not affected by east's web using its share.
    let other = raw_client(east.certified("api").await);
    let third = other.open_inner(&gw, west.api_tunnel).await.unwrap();
    drop((first, second, third));
    assert!(
        wait_until(Duration::from_secs(5), || async {
            metric(admin, "ferry_gateway_open_relays").await == 0
        })
        .await,
        "relays end when their callers go"
    );
    assert!(
        caller.open_inner(&gw, west.api_tunnel).await.is_ok(),
        "the caller's slots are free again"
    );
    east.shutdown().await;
    west.shutdown().await;
}
