//! Copying between two tunnel streams, each direction on its own (what a
//! gateway does with an inner session): end of stream ↔ end of stream, a
//! reset on either side resets the other. Bounded: one chunk per direction
//! in hand; flow control stalls a fast writer. A relay with no data in
//! either direction for `idle` is reset.

use std::time::Duration;

use super::body::{RecvBody, SendBody};

/// Bytes moved by a relay, and whether it ended with a reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub a_to_b: u64,
    pub b_to_a: u64,
    pub reset: bool,
}

enum End {
    Done(u64),
    Reset(u64),
}

async fn pump(
    from: &mut RecvBody,
    to: &mut SendBody,
    activity: &tokio::sync::watch::Sender<()>,
) -> End {
    let mut n = 0;
    loop {
        match from.data().await {
            Ok(Some(chunk)) => {
                n += chunk.len() as u64;
                activity.send_replace(());
                if to.send_data(chunk).await.is_err() {
                    from.stop();
                    return End::Reset(n);
                }
            }
            Ok(None) => {
                let _ = to.finish().await;
                return End::Done(n);
            }
            Err(_) => {
                to.reset();
                return End::Reset(n);
            }
        }
    }
}

/// Relays until both directions have ended, one side resets, or nothing
/// moved for `idle`.
pub async fn relay(
    (mut a_send, mut a_recv): (SendBody, RecvBody),
    (mut b_send, mut b_recv): (SendBody, RecvBody),
    idle: Duration,
) -> RelayStats {
    let (tick, mut ticks) = tokio::sync::watch::channel(());
    let tick_b = tick.clone();
    let forward = pump(&mut a_recv, &mut b_send, &tick);
    let backward = pump(&mut b_recv, &mut a_send, &tick_b);
    let both = async {
        tokio::pin!(forward, backward);
        let (mut f, mut b) = (None, None);
        while f.is_none() || b.is_none() {
            tokio::select! {
                r = &mut forward, if f.is_none() => {
                    let reset = matches!(r, End::Reset(_));
                    f = Some(r);
                    if reset { break; }
                }
                r = &mut backward, if b.is_none() => {
                    let reset = matches!(r, End::Reset(_));
                    b = Some(r);
                    if reset { break; }
                }
            }
        }
        (f, b)
    };
    let idle_out = async {
        loop {
            match tokio::time::timeout(idle, ticks.changed()).await {
                Ok(Ok(())) => continue,
                _ => return,
            }
        }
    };
    let (f, b) = tokio::select! {
        r = both => r,
        _ = idle_out => (None, None),
    };
    let count = |e: &Option<End>| match e {
        Some(End::Done(n)) | Some(End::Reset(n)) => *n,
        None => 0,
    };
    let reset = !matches!((&f, &b), (Some(End::Done(_)), Some(End::Done(_))));
    let stats = RelayStats {
        a_to_b: count(&f),
        b_to_a: count(&b),
        reset,
    };
    if reset {
        a_send.reset();
        b_send.reset();
        // The receive halves are not stopped explicitly: a read may have
        // been in flight when the pumps were dropped (h3-quinn panics on a
        // stop then); dropping them stops them.
        drop((a_recv, b_recv));
    }
    stats
}
