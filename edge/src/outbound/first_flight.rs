//! An opaque TCP connection's first bytes, sent with its CONNECT instead
//! of a round trip after it. While the peer edge connects to the target,
//! what the application has already sent (a client-first protocol's
//! request or handshake) goes on the stream, up to [`FIRST_FLIGHT`]
//! bytes; the peer reads it once connected. A server-first protocol sends
//! nothing and simply waits for the answer, as before.

use bytes::BytesMut;
use ferry_transport::tunnel::{PendingTunnel, TcpTunnel, TunnelError};
use tokio::net::TcpStream;

/// The most sent before the peer has answered: enough for a request or a
/// TLS ClientHello, small against the stream's flow-control window.
pub const FIRST_FLIGHT: usize = 64 * 1024;

/// The largest single read while waiting.
const READ: usize = 16 * 1024;

/// Waits for the peer's answer to `pending`, meanwhile forwarding what
/// `tcp` sends (at most [`FIRST_FLIGHT`] bytes). Returns the tunnel and
/// the bytes forwarded; on an error, the bytes forwarded so far are lost
/// with the stream (the caller resets the application's connection).
/// The application's end of stream or error is left for the splice to
/// read again.
pub async fn forward_until_answered(
    tcp: &TcpStream,
    pending: PendingTunnel,
) -> (Result<TcpTunnel, TunnelError>, u64) {
    let PendingTunnel {
        mut send,
        transport,
        opened_at,
        mut answer,
    } = pending;
    let mut sent = 0usize;
    let mut app_open = true;
    loop {
        let room = FIRST_FLIGHT - sent;
        tokio::select! {
            biased;
            r = &mut answer => {
                let r = r.map(|recv| TcpTunnel { send, recv, transport, opened_at });
                return (r, sent as u64);
            }
            ready = tcp.readable(), if app_open && room > 0 => {
                if ready.is_err() {
                    app_open = false;
                    continue;
                }
                let mut buf = BytesMut::with_capacity(room.min(READ));
                match tcp.try_read_buf(&mut buf) {
                    Ok(0) => app_open = false,
                    Ok(n) => {
                        if let Err(e) = send.send_data(buf.freeze()).await {
                            return (Err(e.into()), sent as u64);
                        }
                        sent += n;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => app_open = false,
                }
            }
        }
    }
}
