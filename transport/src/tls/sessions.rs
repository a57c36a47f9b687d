//! The server's TLS session cache: what lets a peer that reconnects resume
//! its TLS 1.3 session instead of running a full handshake, under rules
//! that keep rotation and withdrawal in force.
//!
//! Sessions are stateful (rustls stores them here and hands the client an
//! opaque ticket naming the entry; no ticket key exists to leak) and each
//! ticket is redeemed once (rustls calls [`StoresServerSessions::take`]).
//! An entry is refused when:
//! - this proxy's identity material (its certificate, key or trust bundles)
//!   was replaced since the session began: a bundle that no longer trusts
//!   the peer must apply at once, so every rotation ends every session;
//! - it is older than [`MAX_AGE`];
//! - it fell out of the cache (bounded to [`CAPACITY`] entries, oldest
//!   first), or the proxy restarted.
//!
//! A refused ticket costs nothing but a full handshake. The peer's
//! certificate chain kept with a session is checked against the clock
//! after every handshake ([`super::verify::current_peer_id`]), resumed or
//! not.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::server::StoresServerSessions;

use crate::identity::IdentityStore;
use crate::metrics::transport::{ResumptionResult, TransportMetrics};

/// Sessions kept at most (each holds the peer's chain and secrets, about
/// 1–2 KiB; two tickets are issued per connection).
pub const CAPACITY: usize = 4096;

/// How long a session may be resumed after its full handshake.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

struct Entry {
    value: Vec<u8>,
    /// The identity store's generation when the session was stored.
    generation: u64,
    stored: Instant,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<Vec<u8>, Entry>,
    /// Keys in the order they were stored, for eviction. May name entries
    /// already taken; those are skipped.
    order: VecDeque<Vec<u8>>,
}

/// A bounded, single-use session cache tied to an [`IdentityStore`]'s
/// generation. Shared by every server config of a proxy.
pub struct ResumableSessions {
    store: Arc<IdentityStore>,
    metrics: TransportMetrics,
    capacity: usize,
    max_age: Duration,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for ResumableSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableSessions")
            .field("capacity", &self.capacity)
            .field("max_age", &self.max_age)
            .field("len", &self.len())
            .finish()
    }
}

impl ResumableSessions {
    pub fn new(store: Arc<IdentityStore>, metrics: TransportMetrics) -> Arc<Self> {
        Self::with_limits(store, metrics, CAPACITY, MAX_AGE)
    }

    pub fn with_limits(
        store: Arc<IdentityStore>,
        metrics: TransportMetrics,
        capacity: usize,
        max_age: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            capacity: capacity.max(1),
            max_age,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// Sessions currently held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves a consistent map (every
        // operation is one insert or remove); keep serving.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `e` may still be resumed at `now`.
    fn judge(&self, e: Option<&Entry>, now: Instant) -> ResumptionResult {
        match e {
            None => ResumptionResult::Unknown,
            Some(e) if e.generation != self.store.reload_count() => ResumptionResult::Stale,
            Some(e) if now.saturating_duration_since(e.stored) > self.max_age => {
                ResumptionResult::Expired
            }
            Some(_) => ResumptionResult::Resumed,
        }
    }

    /// Counts `result`; whether the session may be used.
    fn counted(&self, result: ResumptionResult) -> bool {
        self.metrics.resumption(result);
        if result != ResumptionResult::Resumed {
            tracing::debug!(result = result.as_str(), "TLS session not resumed");
        }
        result == ResumptionResult::Resumed
    }

    /// Removes `key` and returns its session if it may still be resumed at
    /// `now`; counts the outcome.
    fn take_at(&self, key: &[u8], now: Instant) -> Option<Vec<u8>> {
        let entry = self.lock().entries.remove(key);
        let ok = self.counted(self.judge(entry.as_ref(), now));
        entry.filter(|_| ok).map(|e| e.value)
    }

    /// Returns `key`'s session, kept in the cache, if it may still be
    /// resumed at `now`; an entry that may not is dropped.
    fn get_at(&self, key: &[u8], now: Instant) -> Option<Vec<u8>> {
        let mut cache = self.lock();
        let result = self.judge(cache.entries.get(key), now);
        let value = match result {
            ResumptionResult::Resumed => cache.entries.get(key).map(|e| e.value.clone()),
            _ => {
                cache.entries.remove(key);
                None
            }
        };
        drop(cache);
        self.counted(result);
        value
    }

    fn put_at(&self, key: Vec<u8>, value: Vec<u8>, now: Instant) -> bool {
        let generation = self.store.reload_count();
        let mut cache = self.lock();
        while cache.entries.len() >= self.capacity {
            let Some(oldest) = cache.order.pop_front() else {
                break;
            };
            cache.entries.remove(&oldest);
        }
        // Keys that were taken leave stale names behind; drop them once
        // they outnumber the live entries, so `order` stays bounded.
        if cache.order.len() >= 2 * self.capacity {
            let Cache { entries, order } = &mut *cache;
            order.retain(|k| entries.contains_key(k));
        }
        cache.order.push_back(key.clone());
        cache.entries.insert(
            key,
            Entry {
                value,
                generation,
                stored: now,
            },
        );
        true
    }
}

impl StoresServerSessions for ResumableSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.put_at(key, value, Instant::now())
    }

    /// TLS 1.3 redeems tickets with `take`; `get` (TLS 1.2 session IDs,
    /// which Ferry never negotiates) applies the same rules and keeps a
    /// valid entry.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_at(key, Instant::now())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.take_at(key, Instant::now())
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::pki::CertificateAuthority;
    use crate::identity::{Material, SpiffeId, TrustBundles, TrustDomain};

    fn test_material(id: &str) -> Material {
        let td = TrustDomain::new("td").unwrap();
        let ca = CertificateAuthority::generate(&td, Duration::from_secs(86400)).unwrap();
        let leaf = ca
            .issue(&SpiffeId::parse(id).unwrap(), Duration::from_secs(3600))
            .unwrap();
        let mut bundles = TrustBundles::default();
        bundles.add_pem(leaf.bundle_pem.as_bytes(), "test").unwrap();
        Material::from_pem(
            leaf.cert_chain_pem.as_bytes(),
            "cert",
            leaf.key_pem.as_bytes(),
            "key",
            bundles,
        )
        .unwrap()
    }

    fn sessions(capacity: usize) -> (Arc<IdentityStore>, TransportMetrics, Arc<ResumableSessions>) {
        let store = IdentityStore::new(test_material("spiffe://td/ns/a/sa/s"));
        let metrics = TransportMetrics::new();
        let s = ResumableSessions::with_limits(
            store.clone(),
            metrics.clone(),
            capacity,
            Duration::from_secs(60),
        );
        (store, metrics, s)
    }

    #[test]
    fn a_ticket_is_redeemed_once() {
        let (_, metrics, s) = sessions(8);
        assert!(s.put(b"k".to_vec(), b"v".to_vec()));
        assert_eq!(s.take(b"k"), Some(b"v".to_vec()));
        assert_eq!(s.take(b"k"), None);
        assert_eq!(metrics.resumption_count(ResumptionResult::Resumed), 1);
        assert_eq!(metrics.resumption_count(ResumptionResult::Unknown), 1);
    }

    #[test]
    fn replaced_identity_material_ends_every_session() {
        let (store, metrics, s) = sessions(8);
        s.put(b"k".to_vec(), b"v".to_vec());
        store.set(test_material("spiffe://td/ns/a/sa/s"));
        assert_eq!(s.take(b"k"), None);
        assert_eq!(metrics.resumption_count(ResumptionResult::Stale), 1);
        // A session stored after the rotation resumes.
        s.put(b"k2".to_vec(), b"v2".to_vec());
        assert_eq!(s.take(b"k2"), Some(b"v2".to_vec()));
    }

    #[test]
    fn sessions_older_than_the_maximum_age_are_refused() {
        let (_, metrics, s) = sessions(8);
        let t0 = Instant::now();
        s.put_at(b"old".to_vec(), b"v".to_vec(), t0);
        s.put_at(b"new".to_vec(), b"v".to_vec(), t0);
        assert_eq!(s.take_at(b"old", t0 + Duration::from_secs(61)), None);
        assert_eq!(metrics.resumption_count(ResumptionResult::Expired), 1);
        assert!(s.take_at(b"new", t0 + Duration::from_secs(59)).is_some());
    }

    #[test]
    fn the_oldest_session_goes_first_when_full() {
        let (_, _, s) = sessions(2);
        s.put(b"a".to_vec(), b"1".to_vec());
        s.put(b"b".to_vec(), b"2".to_vec());
        s.put(b"c".to_vec(), b"3".to_vec());
        assert_eq!(s.len(), 2);
        assert_eq!(s.take(b"a"), None);
        assert!(s.take(b"b").is_some());
        assert!(s.take(b"c").is_some());
    }

    #[test]
    fn the_eviction_order_stays_bounded_under_churn() {
        let (_, _, s) = sessions(4);
        for i in 0..1000u32 {
            let k = i.to_be_bytes().to_vec();
            s.put(k.clone(), b"v".to_vec());
            assert!(s.take(&k).is_some());
        }
        assert!(s.lock().order.len() <= 8, "{}", s.lock().order.len());
        assert!(s.is_empty());
    }

    #[test]
    fn get_keeps_a_valid_session_and_drops_an_expired_one() {
        let (_, _, s) = sessions(4);
        let t0 = Instant::now();
        s.put_at(b"k".to_vec(), b"v".to_vec(), t0);
        assert_eq!(s.get_at(b"k", t0), Some(b"v".to_vec()));
        assert_eq!(s.get_at(b"k", t0 + Duration::from_secs(61)), None);
        assert!(s.is_empty());
    }
}
