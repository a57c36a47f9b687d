//! A tunnel stream as a byte pipe (`AsyncRead + AsyncWrite`), so a TLS
//! session can run inside it (the end-to-end inner session across a
//! gateway). Each direction is copied on its own: end of the pipe's write
//! side ↔ end of stream (half-close), a stream reset ↔ the pipe failing.
//! The pipe holds at most one chunk per direction in hand.

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::body::{RecvBody, SendBody};

/// Bytes buffered in the pipe per direction.
const PIPE: usize = 256 * 1024;

/// Turns the two halves of a stream into one pipe end; the copying runs in
/// a task that ends with the stream.
pub fn stream_io(mut send: SendBody, mut recv: RecvBody) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    tokio::spawn(async move {
        let up = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => {
                        let _ = send.finish().await;
                        return;
                    }
                    Ok(n) => {
                        if send
                            .send_data(Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(_) => {
                        send.reset();
                        return;
                    }
                }
            }
        };
        let down = async {
            loop {
                match recv.data().await {
                    Ok(Some(chunk)) => {
                        if wr.write_all(&chunk).await.is_err() {
                            recv.stop();
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = wr.shutdown().await;
                        return;
                    }
                    // A reset stream: the pipe's reader sees an error-free
                    // EOF only after the TLS layer notices the missing
                    // close_notify, which it reports as an error.
                    Err(_) => {
                        let _ = wr.shutdown().await;
                        return;
                    }
                }
            }
        };
        tokio::join!(up, down);
    });
    ours
}
