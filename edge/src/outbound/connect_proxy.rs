//! HTTP `CONNECT` from the application (it uses the edge as its proxy):
//! the requested authority is routed like any destination (a mesh service
//! `name.namespace:port`, an address known to discovery, or outside the
//! mesh), the application gets `200 Connection Established`, and the rest
//! of the connection is carried as opaque TCP.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::route::{resolve, Target};
use super::{tcp, Destination};
use crate::config::NonMeshPolicy;
use crate::context::EdgeContext;

/// Parses `CONNECT <authority> HTTP/1.x` and returns the authority and the
/// bytes after the request head.
pub fn parse(head: &[u8]) -> Option<(String, Bytes)> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, authority) = (parts.next()?, parts.next()?);
    if method != "CONNECT" || authority.is_empty() || !authority.contains(':') {
        return None;
    }
    Some((authority.to_string(), Bytes::copy_from_slice(&head[end..])))
}

async fn answer(tcp: &mut TcpStream, status: &str, error: Option<&str>) {
    let mut r = format!("HTTP/1.1 {status}\r\n");
    if let Some(e) = error {
        r += &format!("ferry-error: {e}\r\ncontent-length: 0\r\nconnection: close\r\n");
    }
    r += "\r\n";
    let _ = tcp.write_all(r.as_bytes()).await;
}

pub async fn serve(mut tcp: TcpStream, head: Bytes, ctx: Arc<EdgeContext>) {
    let Some((authority, rest)) = parse(&head) else {
        answer(&mut tcp, "400 Bad Request", Some("malformed")).await;
        return;
    };
    let snapshot = ctx.discovery.snapshot();
    let target = if snapshot.service(&authority).is_some() {
        resolve(&snapshot, &Destination::Service(authority.clone()))
    } else if let Ok(addr) = authority.parse() {
        resolve(&snapshot, &Destination::Original(addr))
    } else {
        // A name discovery does not know: outside the mesh.
        match tokio::net::lookup_host(authority.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
        {
            Some(addr) => Target::NonMesh(addr),
            None => {
                answer(&mut tcp, "502 Bad Gateway", Some("unresolvable")).await;
                return;
            }
        }
    };
    if target.endpoints().is_empty() && !matches!(target, Target::NonMesh(_)) {
        answer(&mut tcp, "503 Service Unavailable", Some("no_endpoints")).await;
        return;
    }
    if matches!(target, Target::NonMesh(_)) && ctx.cfg.outbound.non_mesh == NonMeshPolicy::Refuse {
        answer(&mut tcp, "403 Forbidden", Some("non_mesh_refused")).await;
        return;
    }
    answer(&mut tcp, "200 Connection Established", None).await;
    match target {
        Target::NonMesh(addr) => tcp::forward_non_mesh(tcp, addr, ctx).await,
        target => tcp::forward(tcp, rest, target, ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_heads() {
        let (a, rest) = parse(b"CONNECT db.default:5432 HTTP/1.1\r\nHost: x\r\n\r\nHELLO").unwrap();
        assert_eq!(a, "db.default:5432");
        assert_eq!(&rest[..], b"HELLO");
        assert!(parse(b"CONNECT nohost HTTP/1.1\r\n\r\n").is_none());
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_none());
        assert!(parse(b"CONNECT a:1 HTTP/1.1\r\n").is_none());
    }
}
