//! Keeps a workload's trust bundles in step with its cluster's links.
//! `Certify` answers with the bundle of this cluster and of every linked
//! one, but a certificate lives for hours; the watch reports the linked
//! trust domains at once. When they differ from the trust domains of the
//! bundles the workload holds (a link added, or removed), the certificate
//! is renewed now, which brings the new bundles.

use std::collections::BTreeSet;
use std::sync::Arc;

use ferry_transport::identity::IdentityStore;
use tokio::sync::Notify;

/// Asks the renewal loop for an early renewal when the links change.
#[derive(Clone)]
pub struct TrustRefresh {
    store: Arc<IdentityStore>,
    now: Arc<Notify>,
}

impl std::fmt::Debug for TrustRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRefresh").finish_non_exhaustive()
    }
}

impl TrustRefresh {
    pub fn new(store: Arc<IdentityStore>) -> Self {
        Self {
            store,
            now: Arc::new(Notify::new()),
        }
    }

    /// Whether bundles for exactly this cluster and `linked` are held.
    pub fn in_step(&self, linked: &[String]) -> bool {
        let current = self.store.current();
        let want: BTreeSet<String> = linked
            .iter()
            .cloned()
            .chain(std::iter::once(current.id.trust_domain().to_string()))
            .collect();
        let have: BTreeSet<String> = current
            .bundles
            .trust_domains()
            .map(ToString::to_string)
            .collect();
        want == have
    }

    /// Called with the linked trust domains of every watch update: renews
    /// now unless the bundles held already match.
    pub fn linked(&self, linked: &[String]) {
        if !self.in_step(linked) {
            tracing::info!(
                id = %self.store.current().id,
                ?linked,
                "the cluster's links changed; renewing now for their trust bundles"
            );
            self.now.notify_one();
        }
    }

    /// Resolves when an early renewal is wanted.
    pub(crate) async fn wanted(&self) {
        self.now.notified().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferry_transport::identity::pki::CertificateAuthority;
    use ferry_transport::identity::{IdentityFiles, SpiffeId, TrustDomain};

    use super::*;

    fn store_trusting(extra: &[&str]) -> (tempfile::TempDir, Arc<IdentityStore>) {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate(
            &TrustDomain::new("east.test").unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
        ca.issue(
            &SpiffeId::parse("spiffe://east.test/ns/default/sa/web").unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap()
        .write(dir.path(), false)
        .unwrap();
        let mut files = IdentityFiles::in_dir(dir.path());
        for td in extra {
            let other = CertificateAuthority::generate(
                &TrustDomain::new(td).unwrap(),
                Duration::from_secs(3600),
            )
            .unwrap();
            let p = dir.path().join(format!("{td}.pem"));
            std::fs::write(&p, other.cert_pem()).unwrap();
            files.bundles.push(p);
        }
        let store = IdentityStore::load(&files).unwrap();
        (dir, store)
    }

    #[test]
    fn in_step_only_with_exactly_the_linked_bundles() {
        ferry_transport::install_crypto_provider();
        let (_d, alone) = store_trusting(&[]);
        let r = TrustRefresh::new(alone);
        assert!(r.in_step(&[]));
        assert!(!r.in_step(&["west.test".into()]), "a new link");
        let (_d, linked) = store_trusting(&["west.test"]);
        let r = TrustRefresh::new(linked);
        assert!(r.in_step(&["west.test".into()]));
        assert!(!r.in_step(&[]), "a link removed: stop trusting it");
    }

    #[tokio::test]
    async fn out_of_step_asks_for_a_renewal() {
        ferry_transport::install_crypto_provider();
        let (_d, store) = store_trusting(&[]);
        let r = TrustRefresh::new(store);
        r.linked(&[]);
        let quiet = tokio::time::timeout(Duration::from_millis(50), r.wanted()).await;
        assert!(quiet.is_err(), "nothing to do when in step");
        r.linked(&["west.test".into()]);
        tokio::time::timeout(Duration::from_secs(1), r.wanted())
            .await
            .expect("a renewal is asked for");
    }
}
