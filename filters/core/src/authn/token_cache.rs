//! Verified-token cache: a repeat token costs a hash and a lookup, not a signature check.
//! Bounded (FIFO eviction, expired entries first), keyed by SHA-256 of the token, never
//! holding the token itself; an entry dies with its token's `exp`.

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

    /// The cached identity, if the token was verified before and `now` is before its expiry.
    pub fn get(&mut self, hash: &TokenHash, now: u64) -> Option<&VerifiedToken> {
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
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn evict(&mut self, now: u64) {
        // Expired entries go first; if none, the oldest insertion. The order queue may hold
        // hashes already removed by `get`; skip them.
        let before = self.entries.len();
        self.entries.retain(|_, (_, exp)| now < *exp);
        if self.entries.len() < before {
            let entries = &self.entries;
            self.order.retain(|h| entries.contains_key(h));
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
