//! HAProxy (TCP mode) as a mutual-TLS pair: the client side forwards plain
//! TCP to a `server ... ssl verify required crt ... verifyhost` line, the
//! server side `bind ... ssl crt ... verify required`. TLS 1.3 only, two
//! threads per process (`nbthread 2`, the machine's cores), foreground
//! (`-db`); TLS session reuse towards the server at HAProxy's default (on).

use anyhow::Result;

use super::{start_pair, Ctx, RunningPath};
use crate::paths::PathKind;
use crate::pki::SERVER_NAME;

const GLOBAL: &str = "global\n  nbthread 2\n  maxconn 4000\n\
    defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n";

pub fn start(ctx: &Ctx) -> Result<RunningPath> {
    let pki = ctx.pair_pki;
    let routes = ctx.routes()?;
    let mut server = GLOBAL.to_string();
    let mut client = GLOBAL.to_string();
    for r in &routes {
        server += &format!(
            "frontend {name}\n  bind {tls} ssl crt {cert} ca-file {ca} verify required ssl-min-ver TLSv1.3\n  \
             default_backend {name}_app\nbackend {name}_app\n  server app 127.0.0.1:{app}\n",
            name = r.name,
            tls = r.tls,
            app = r.app_port,
            cert = pki.server_combined.display(),
            ca = pki.ca.display(),
        );
        client += &format!(
            "frontend {name}\n  bind {listen}\n  default_backend {name}_tls\nbackend {name}_tls\n  \
             server peer {tls} ssl verify required ca-file {ca} crt {cert} sni str({SERVER_NAME}) \
             verifyhost {SERVER_NAME} ssl-min-ver TLSv1.3\n",
            name = r.name,
            listen = r.listen,
            tls = r.tls,
            cert = pki.client_combined.display(),
            ca = pki.ca.display(),
        );
    }
    let server_cfg = ctx.file("haproxy-server.cfg", &server)?;
    let client_cfg = ctx.file("haproxy-client.cfg", &client)?;
    let mut s = ctx.topo.server.command(&ctx.programs.haproxy()?);
    s.arg("-db").arg("-f").arg(&server_cfg);
    let mut c = ctx.topo.client.command(&ctx.programs.haproxy()?);
    c.arg("-db").arg("-f").arg(&client_cfg);
    start_pair(PathKind::Haproxy, ctx, &routes, s, c)
}
