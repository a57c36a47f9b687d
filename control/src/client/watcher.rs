//! The workload side of `Discovery.Watch`: keeps one watch open, hands
//! every update to the caller, and on any failure reconnects with backoff;
//! the first message after a reconnect is a full state (`reset`), so the
//! caller resyncs. Between connections the caller keeps what it knew.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::Backoff;
use crate::api::discovery_client::DiscoveryClient;
use crate::api::{WatchRequest, WatchUpdate};

/// How long without any message (keep-alives included) before a watch is
/// considered dead; HTTP/2 pings run every 10 s.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest update accepted (tonic's default, 4 MiB, is about 50,000
/// endpoints in one full state).
pub const MAX_UPDATE_BYTES: usize = 256 << 20;

/// Watches `authorities` (empty: every service) over `channel` until `stop`,
/// calling `apply` with every update in order.
pub async fn watch(
    channel: Channel,
    authorities: Vec<String>,
    mut apply: impl FnMut(WatchUpdate) + Send,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let mut client = DiscoveryClient::new(channel.clone())
            // A full state of a large mesh is one message of several MiB.
            .max_decoding_message_size(MAX_UPDATE_BYTES);
        let request = WatchRequest {
            authorities: authorities.clone(),
        };
        let opened = tokio::select! {
            r = tokio::time::timeout(OPEN_TIMEOUT, client.watch(request)) => r,
            _ = stop.cancelled() => return,
        };
        match opened {
            Ok(Ok(response)) => {
                let mut stream = response.into_inner();
                loop {
                    let next = tokio::select! {
                        m = stream.message() => m,
                        _ = stop.cancelled() => return,
                    };
                    match next {
                        Ok(Some(update)) => {
                            backoff.reset();
                            apply(update);
                        }
                        Ok(None) => {
                            tracing::info!("the control plane ended the watch; reconnecting");
                            break;
                        }
                        Err(s) => {
                            tracing::warn!(code = ?s.code(), error = %s.message(), "watch failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Ok(Err(s)) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "watch refused; retrying");
            }
            Err(_) => tracing::warn!("watch not opened within {OPEN_TIMEOUT:?}; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.cancelled() => return,
        }
    }
}
