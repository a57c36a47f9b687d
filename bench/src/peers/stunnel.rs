//! stunnel as a mutual-TLS pair: the client side (`client = yes`) accepts
//! plain TCP and connects with TLS 1.3 and a client certificate, verifying
//! the server's chain and name; the server side requires and verifies the
//! client certificate and connects to the application. Foreground, one
//! process per side (stunnel threads per connection), TCP_NODELAY on both
//! sockets; TLS session resumption left at stunnel's default (on).

use anyhow::Result;

use super::{start_pair, Ctx, RunningPath};
use crate::paths::PathKind;
use crate::pki::SERVER_NAME;

const GLOBAL: &str = "foreground = yes\npid =\nsyslog = no\ndebug = 3\n\
    socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n";

pub fn start(ctx: &Ctx) -> Result<RunningPath> {
    let pki = ctx.pair_pki;
    let routes = ctx.routes()?;
    let mut server = GLOBAL.to_string();
    let mut client = GLOBAL.to_string();
    for r in &routes {
        server += &format!(
            "[{name}]\naccept = {tls}\nconnect = 127.0.0.1:{app}\ncert = {cert}\nkey = {key}\n\
             CAfile = {ca}\nverifyChain = yes\nrequireCert = yes\nsslVersionMin = TLSv1.3\n",
            name = r.name,
            tls = r.tls,
            app = r.app_port,
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca.display(),
        );
        client += &format!(
            "[{name}]\nclient = yes\naccept = {listen}\nconnect = {tls}\ncert = {cert}\nkey = {key}\n\
             CAfile = {ca}\nverifyChain = yes\ncheckHost = {SERVER_NAME}\nsni = {SERVER_NAME}\n\
             sslVersionMin = TLSv1.3\n",
            name = r.name,
            listen = r.listen,
            tls = r.tls,
            cert = pki.client_cert.display(),
            key = pki.client_key.display(),
            ca = pki.ca.display(),
        );
    }
    let server_cfg = ctx.file("stunnel-server.conf", &server)?;
    let client_cfg = ctx.file("stunnel-client.conf", &client)?;
    let mut s = ctx.topo.server.command(&ctx.programs.stunnel()?);
    s.arg(&server_cfg);
    let mut c = ctx.topo.client.command(&ctx.programs.stunnel()?);
    c.arg(&client_cfg);
    start_pair(PathKind::Stunnel, ctx, &routes, s, c)
}
