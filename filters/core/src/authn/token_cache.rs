//! Verified-token cache: a repeat token costs a hash and a lookup, not a signature check.
//! Bounded (FIFO eviction, expired entries first), keyed by SHA-256 of the token, never
//! holding the token itself; an entry dies with its token's `exp`, or when the key that
//! verified it leaves its provider's set ([`TokenCache::retain`]). The eviction queue is
//! bounded too: hashes of entries that left the map are compacted away once the queue holds
//! twice the capacity. A clock at 0 (unavailable) never hits: nothing is served without time.

use crate::jwt::VerifiedToken;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenHash, (VerifiedToken, u64)>,
    order: VecDeque<TokenHash>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hashes in the eviction queue (live entries plus not yet compacted stale ones).
    pub fn queue_len(&self) -> usize {
        self.order.len()
    }

    /// The cached identity, if the token was verified before and `now` is before its expiry.
    pub fn get(&mut self, hash: &TokenHash, now: u64) -> Option<&VerifiedToken> {
        if now == 0 {
            // No clock, no expiry check: fail closed (the caller verifies afresh, and refuses).
            return None;
        }
        let expired = match self.entries.get(hash) {
            None => return None,
            Some((_, expires_at)) => now >= *expires_at,
        };
        if expired {
            self.entries.remove(hash);
            return None;
        }
        self.entries.get(hash).map(|(t, _)| t)
    }

    /// Keep a verified token until `expires_at` (its `exp` plus the allowed clock skew).
    pub fn insert(&mut self, hash: TokenHash, token: VerifiedToken, expires_at: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        if let Some(entry) = self.entries.get_mut(&hash) {
            *entry = (token, expires_at);
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict(now);
        }
        self.entries.insert(hash, (token, expires_at));
        self.order.push_back(hash);
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.compact();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Keep only the identities for which `keep` holds (a JWKS refresh drops those whose key
    /// left the set, and nothing else).
    pub fn retain(&mut self, mut keep: impl FnMut(&VerifiedToken) -> bool) {
        self.entries.retain(|_, (token, _)| keep(token));
        self.compact();
    }

    /// Drop queue positions of hashes no longer in the map, and all but the newest position
    /// of a hash queued twice (a token that expired, left the map and was verified again).
    /// Afterwards the queue holds exactly the live entries, so it is at most `capacity` long.
    fn compact(&mut self) {
        let mut seen = std::collections::HashSet::with_capacity(self.entries.len());
        let mut kept: VecDeque<TokenHash> = VecDeque::with_capacity(self.entries.len());
        for h in self.order.iter().rev() {
            if self.entries.contains_key(h) && seen.insert(*h) {
                kept.push_front(*h);
            }
        }
        self.order = kept;
    }

    fn evict(&mut self, now: u64) {
        // Expired entries go first; if none, the oldest insertion. The order queue may hold
        // hashes already removed by `get`; skip them.
        let before = self.entries.len();
        self.entries.retain(|_, (_, exp)| now < *exp);
        if self.entries.len() < before {
            self.compact();
            return;
        }
        while let Some(oldest) = self.order.pop_front() {
            if self.entries.remove(&oldest).is_some() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(sub: &str) -> VerifiedToken {
        VerifiedToken {
            provider: 0,
            issuer: "iss".into(),
            subject: Some(sub.into()),
            roles: vec![],
            amr: vec![],
            session: None,
            auth_time: None,
            iat: 0,
            exp: 100,
            key: None,
        }
    }

    #[test]
    fn hit_until_expiry_then_miss() {
        let mut c = TokenCache::new(4);
        let h = token_hash("t1");
        c.insert(h, identity("a"), 100, 0);
        assert_eq!(c.get(&h, 99).unwrap().subject.as_deref(), Some("a"));
        assert!(c.get(&h, 100).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_with_fifo_eviction() {
        let mut c = TokenCache::new(2);
        let (a, b, d) = (token_hash("a"), token_hash("b"), token_hash("d"));
        c.insert(a, identity("a"), 100, 0);
        c.insert(b, identity("b"), 100, 0);
        c.insert(d, identity("d"), 100, 0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&a, 1).is_none());
        assert!(c.get(&b, 1).is_some());
        assert!(c.get(&d, 1).is_some());
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let mut c = TokenCache::new(2);
        let (a, b, d) = (token_hash("a"), token_hash("b"), token_hash("d"));
        c.insert(a, identity("a"), 100, 0);
        c.insert(b, identity("b"), 10, 0);
        c.insert(d, identity("d"), 100, 50);
        assert!(c.get(&a, 51).is_some());
        assert!(c.get(&d, 51).is_some());
    }

    /// Entries that expire and leave the map through `get` must leave the eviction queue too:
    /// a steady stream of short-lived tokens (each used once, then expired) must not grow the
    /// queue without bound while the map stays small.
    #[test]
    fn the_eviction_queue_stays_bounded_with_expiring_entries() {
        let mut c = TokenCache::new(8);
        for i in 0u64..10_000 {
            let h = token_hash(&format!("t{i}"));
            c.insert(h, identity("a"), i + 1, i);
            // The token is seen again after its expiry: it leaves the map.
            assert!(c.get(&h, i + 1).is_none());
        }
        assert!(c.len() <= 8);
        assert!(
            c.queue_len() <= 2 * 8 + 1,
            "eviction queue holds {} hashes for a capacity of 8",
            c.queue_len()
        );
    }

    /// A token that expired, left the map and came back must not be evicted early by its own
    /// stale queue position (nor make the queue grow).
    #[test]
    fn a_reinserted_token_keeps_one_queue_position() {
        let mut c = TokenCache::new(2);
        let (a, b) = (token_hash("a"), token_hash("b"));
        for round in 0u64..100 {
            c.insert(a, identity("a"), round * 10 + 5, round * 10);
            assert!(c.get(&a, round * 10 + 6).is_none());
        }
        assert!(c.queue_len() <= 2 * 2 + 1, "queue {}", c.queue_len());
        c.insert(a, identity("a"), 10_000, 2_000);
        c.insert(b, identity("b"), 10_000, 2_000);
        assert!(c.get(&a, 2_001).is_some());
        assert!(c.get(&b, 2_001).is_some());
    }

    /// An unavailable clock (0) is no time at all: nothing is served from the cache.
    #[test]
    fn a_clock_at_zero_never_hits() {
        let mut c = TokenCache::new(4);
        let h = token_hash("t1");
        c.insert(h, identity("a"), 100, 10);
        assert!(c.get(&h, 0).is_none());
        assert!(c.get(&h, 11).is_some());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let mut c = TokenCache::new(0);
        c.insert(token_hash("a"), identity("a"), 100, 0);
        assert!(c.is_empty());
    }

    #[test]
    fn hash_is_not_the_token() {
        let h = token_hash("secret-token");
        assert_ne!(&h[..], b"secret-token");
        assert_eq!(h, token_hash("secret-token"));
    }
}
