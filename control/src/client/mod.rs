//! What an edge (or gateway) uses to talk to the control plane: a gRPC
//! channel over Ferry's TLS, certification with renewal, and a watch that
//! reconnects and resyncs on its own.

pub mod certifier;
pub mod channel;
pub mod trust_refresh;
pub mod view;
pub mod watcher;
pub mod workload;

pub use certifier::{Certifier, CertifyError};
pub use channel::channel;
pub use trust_refresh::TrustRefresh;
pub use view::{Changes, MeshView};
pub use watcher::watch;
pub use workload::{ControlConfig, WorkloadIdentityError};

/// Exponential backoff with jitter, for reconnects and retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: std::time::Duration,
    min: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    pub fn new(min: std::time::Duration, max: std::time::Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The next delay (between half and all of the current step), then
    /// doubles the step up to the maximum.
    pub fn next_delay(&mut self) -> std::time::Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[5] >= Duration::from_millis(500) && d[5] <= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
