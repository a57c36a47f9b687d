//! nginx `stream` as a mutual-TLS pair: the client side `proxy_ssl on` with
//! a client certificate, `proxy_ssl_verify` and `proxy_ssl_name`; the server
//! side `listen ... ssl` with `ssl_verify_client on`. TLS 1.3 only, a master
//! and two worker processes per side (the machine's cores), foreground
//! (`daemon off`); upstream TLS session reuse at nginx's default (on). The
//! stream module is loaded when nginx has it as a dynamic module.

use anyhow::Result;

use super::{start_pair, Ctx, RunningPath};
use crate::paths::PathKind;
use crate::pki::SERVER_NAME;

fn global(ctx: &Ctx, side: &str) -> Result<String> {
    let module = match ctx.programs.nginx_stream_module()? {
        Some(m) => format!("load_module {};\n", m.display()),
        None => String::new(),
    };
    Ok(format!(
        "{module}daemon off;\nmaster_process on;\nworker_processes 2;\npid {dir}/nginx-{side}.pid;\n\
         error_log {dir}/nginx-{side}.err warn;\nevents {{ worker_connections 20000; }}\nstream {{\n",
        dir = ctx.dir.display()
    ))
}

pub fn start(ctx: &Ctx) -> Result<RunningPath> {
    let pki = ctx.pair_pki;
    let routes = ctx.routes()?;
    let mut server = global(ctx, "server")?;
    let mut client = global(ctx, "client")?;
    for r in &routes {
        server += &format!(
            "  server {{\n    listen {tls} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
             ssl_client_certificate {ca};\n    ssl_verify_client on;\n    ssl_protocols TLSv1.3;\n    \
             proxy_pass 127.0.0.1:{app};\n  }}\n",
            tls = r.tls,
            app = r.app_port,
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca.display(),
        );
        client += &format!(
            "  server {{\n    listen {listen};\n    proxy_pass {tls};\n    proxy_ssl on;\n    \
             proxy_ssl_certificate {cert};\n    proxy_ssl_certificate_key {key};\n    \
             proxy_ssl_trusted_certificate {ca};\n    proxy_ssl_verify on;\n    \
             proxy_ssl_name {SERVER_NAME};\n    proxy_ssl_server_name on;\n    proxy_ssl_protocols TLSv1.3;\n  }}\n",
            listen = r.listen,
            tls = r.tls,
            cert = pki.client_cert.display(),
            key = pki.client_key.display(),
            ca = pki.ca.display(),
        );
    }
    server += "}\n";
    client += "}\n";
    let server_cfg = ctx.file("nginx-server.conf", &server)?;
    let client_cfg = ctx.file("nginx-client.conf", &client)?;
    let nginx = ctx.programs.nginx()?;
    let err = ctx.dir.join("nginx-startup.err");
    let mut s = ctx.topo.server.command(&nginx);
    s.arg("-p")
        .arg(&ctx.dir)
        .arg("-e")
        .arg(&err)
        .arg("-c")
        .arg(&server_cfg);
    let mut c = ctx.topo.client.command(&nginx);
    c.arg("-p")
        .arg(&ctx.dir)
        .arg("-e")
        .arg(&err)
        .arg("-c")
        .arg(&client_cfg);
    start_pair(PathKind::Nginx, ctx, &routes, s, c)
}
