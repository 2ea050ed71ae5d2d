//! Verified-token cache: a repeat token costs a keyed hash, a lookup and a compare, not a
//! signature check. Bounded (FIFO eviction, expired entries first) in entries and in bytes;
//! an entry dies with its token's `exp`, or when the key that verified it leaves its
//! provider's set ([`TokenCache::retain`]). The eviction queue is bounded too: keys of entries
//! that left the map are compacted away once the queue holds twice the capacity. A clock at 0
//! (unavailable) never hits: nothing is served without time.
//!
//! **Key and compare** (issue #15 item 4): the map is keyed by SipHash-1-3 of the token under a
//! per-cache random secret (std's `RandomState`: the OS's random source natively, WASI
//! `random_get` — Envoy's — in the VM), which costs a few hundred instructions for a 1 KB token
//! where SHA-256 in a Wasm VM cost several µs. The 64-bit key only finds the entry: a hit is
//! served only if the stored token equals the presented one in full, compared in constant time
//! (no early exit on the first differing byte), so a key collision — chosen or chance — is a
//! miss, never another caller's identity. The cache therefore holds the tokens it verified
//! (in the VM's memory, as the request that carried each did), within [`MAX_CACHED_BYTES`].

use crate::jwt::VerifiedToken;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// The bytes of token text one cache keeps at most (per worker VM): with `tokenCacheSize`
/// entries of up to `MAX_TOKEN_BYTES` (8 KB) each the cache could otherwise hold 32 MB.
/// Tokens of 1 KB fill 4096 entries (the default size) within it.
pub const MAX_CACHED_BYTES: usize = 4 << 20;

/// The keyed hash of a token: where to look, never proof of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey(u64);

#[derive(Debug, Clone)]
struct Entry {
    token: Box<[u8]>,
    verified: VerifiedToken,
    expires_at: u64,
}

/// The map's own hasher: the key already is a keyed hash, so it is used as it is.
#[derive(Debug, Clone, Copy, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<TokenKey, V, BuildHasherDefault<KeyHasher>>;

/// Whether `a` and `b` hold the same bytes, in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let x = x.first_chunk::<8>().map_or(0, |c| u64::from_ne_bytes(*c));
        let y = y.first_chunk::<8>().map_or(0, |c| u64::from_ne_bytes(*c));
        diff |= x ^ y;
    }
    for (x, y) in ra.iter().zip(rb) {
        diff |= u64::from(x ^ y);
    }
    // Folded without a data-dependent branch before the one answer.
    subtle::ConstantTimeEq::ct_eq(&std::hint::black_box(diff), &0u64).into()
}

#[derive(Debug, Clone)]
pub struct TokenCache {
    capacity: usize,
    secret: RandomState,
    entries: KeyMap<Entry>,
    order: VecDeque<TokenKey>,
    /// Token bytes held by `entries`.
    bytes: usize,
}

impl Default for TokenCache {
    fn default() -> TokenCache {
        TokenCache::new(0)
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            secret: RandomState::new(),
            entries: KeyMap::with_capacity_and_hasher(capacity.min(1024), Default::default()),
            order: VecDeque::with_capacity(capacity.min(1024)),
            bytes: 0,
        }
    }

    /// The keyed hash of `token` under this cache's secret.
    pub fn key(&self, token: &str) -> TokenKey {
        TokenKey(self.secret.hash_one(token.as_bytes()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Token bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys in the eviction queue (live entries plus not yet compacted stale ones).
    pub fn queue_len(&self) -> usize {
        self.order.len()
    }

    /// The cached identity of `token` (whose key is `key`), if it was verified before and
    /// `now` is before its expiry.
    pub fn get(&mut self, key: &TokenKey, token: &str, now: u64) -> Option<&VerifiedToken> {
        if now == 0 {
            // No clock, no expiry check: fail closed (the caller verifies afresh, and refuses).
            return None;
        }
        let expired = match self.entries.get(key) {
            None => return None,
            // Another token under the same key: a miss (it stays; an insert replaces it).
            Some(entry) if !constant_time_eq(&entry.token, token.as_bytes()) => return None,
            Some(entry) => now >= entry.expires_at,
        };
        if expired {
            self.remove(key);
            return None;
        }
        self.entries.get(key).map(|e| &e.verified)
    }

    /// Keep a verified token until `expires_at` (its `exp` plus the allowed clock skew).
    pub fn insert(
        &mut self,
        key: TokenKey,
        token: &str,
        verified: VerifiedToken,
        expires_at: u64,
        now: u64,
    ) {
        if self.capacity == 0 || token.len() > MAX_CACHED_BYTES {
            return;
        }
        let entry = Entry {
            token: token.as_bytes().into(),
            verified,
            expires_at,
        };
        if let Some(old) = self.entries.get_mut(&key) {
            // The same token again, or another one under the same key: the newer one stays.
            self.bytes = self.bytes - old.token.len() + entry.token.len();
            *old = entry;
        } else {
            if self.entries.len() >= self.capacity {
                self.evict(now);
            }
            self.bytes += entry.token.len();
            self.entries.insert(key, entry);
            self.order.push_back(key);
        }
        while self.bytes > MAX_CACHED_BYTES && self.entries.len() > 1 {
            self.evict(now);
        }
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.compact();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// Keep only the identities for which `keep` holds (a JWKS refresh drops those whose key
    /// left the set, and nothing else).
    pub fn retain(&mut self, mut keep: impl FnMut(&VerifiedToken) -> bool) {
        self.entries.retain(|_, e| keep(&e.verified));
        self.recount();
        self.compact();
    }

    fn remove(&mut self, key: &TokenKey) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.token.len();
        }
    }

    fn recount(&mut self) {
        self.bytes = self.entries.values().map(|e| e.token.len()).sum();
    }

    /// Drop queue positions of keys no longer in the map, and all but the newest position
    /// of a key queued twice (a token that expired, left the map and was verified again).
    /// Afterwards the queue holds exactly the live entries, so it is at most `capacity` long.
    fn compact(&mut self) {
        let mut seen = std::collections::HashSet::with_capacity(self.entries.len());
        let mut kept: VecDeque<TokenKey> = VecDeque::with_capacity(self.entries.len());
        for k in self.order.iter().rev() {
            if self.entries.contains_key(k) && seen.insert(*k) {
                kept.push_front(*k);
            }
        }
        self.order = kept;
    }

    fn evict(&mut self, now: u64) {
        // Expired entries go first; if none, the oldest insertion. The order queue may hold
        // keys already removed by `get`; skip them.
        let before = self.entries.len();
        self.entries.retain(|_, e| now < e.expires_at);
        if self.entries.len() < before {
            self.recount();
            self.compact();
            return;
        }
        while let Some(oldest) = self.order.pop_front() {
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.token.len();
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
        let h = c.key("t1");
        c.insert(h, "t1", identity("a"), 100, 0);
        assert_eq!(c.get(&h, "t1", 99).unwrap().subject.as_deref(), Some("a"));
        assert!(c.get(&h, "t1", 100).is_none());
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn bounded_with_fifo_eviction() {
        let mut c = TokenCache::new(2);
        let (a, b, d) = (c.key("a"), c.key("b"), c.key("d"));
        c.insert(a, "a", identity("a"), 100, 0);
        c.insert(b, "b", identity("b"), 100, 0);
        c.insert(d, "d", identity("d"), 100, 0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&a, "a", 1).is_none());
        assert!(c.get(&b, "b", 1).is_some());
        assert!(c.get(&d, "d", 1).is_some());
        assert_eq!(c.bytes(), 2);
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let mut c = TokenCache::new(2);
        let (a, b, d) = (c.key("a"), c.key("b"), c.key("d"));
        c.insert(a, "a", identity("a"), 100, 0);
        c.insert(b, "b", identity("b"), 10, 0);
        c.insert(d, "d", identity("d"), 100, 50);
        assert!(c.get(&a, "a", 51).is_some());
        assert!(c.get(&d, "d", 51).is_some());
    }

    /// Entries that expire and leave the map through `get` must leave the eviction queue too:
    /// a steady stream of short-lived tokens (each used once, then expired) must not grow the
    /// queue without bound while the map stays small.
    #[test]
    fn the_eviction_queue_stays_bounded_with_expiring_entries() {
        let mut c = TokenCache::new(8);
        for i in 0u64..10_000 {
            let t = format!("t{i}");
            let h = c.key(&t);
            c.insert(h, &t, identity("a"), i + 1, i);
            // The token is seen again after its expiry: it leaves the map.
            assert!(c.get(&h, &t, i + 1).is_none());
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
        let (a, b) = (c.key("a"), c.key("b"));
        for round in 0u64..100 {
            c.insert(a, "a", identity("a"), round * 10 + 5, round * 10);
            assert!(c.get(&a, "a", round * 10 + 6).is_none());
        }
        assert!(c.queue_len() <= 2 * 2 + 1, "queue {}", c.queue_len());
        c.insert(a, "a", identity("a"), 10_000, 2_000);
        c.insert(b, "b", identity("b"), 10_000, 2_000);
        assert!(c.get(&a, "a", 2_001).is_some());
        assert!(c.get(&b, "b", 2_001).is_some());
    }

    /// An unavailable clock (0) is no time at all: nothing is served from the cache.
    #[test]
    fn a_clock_at_zero_never_hits() {
        let mut c = TokenCache::new(4);
        let h = c.key("t1");
        c.insert(h, "t1", identity("a"), 100, 10);
        assert!(c.get(&h, "t1", 0).is_none());
        assert!(c.get(&h, "t1", 11).is_some());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let mut c = TokenCache::new(0);
        c.insert(c.key("a"), "a", identity("a"), 100, 0);
        assert!(c.is_empty());
    }

    /// The key only finds the entry: a token differing in one byte — at the start, in the
    /// middle, at the end — is a miss even when it is looked up under the cached token's key
    /// (a collision, chosen or chance), and so is a prefix or an extension of it.
    #[test]
    fn a_hit_needs_the_whole_token() {
        let token = "eyJhbGciOiJSUzI1NiJ9.".to_string() + &"x".repeat(1000) + ".sig";
        let mut c = TokenCache::new(4);
        let k = c.key(&token);
        c.insert(k, &token, identity("alice"), 100, 0);
        assert!(c.get(&k, &token, 1).is_some());
        for at in [0, token.len() / 2, token.len() - 1] {
            let mut other = token.clone().into_bytes();
            other[at] ^= 1;
            let other = String::from_utf8(other).unwrap();
            assert!(c.get(&k, &other, 1).is_none(), "one byte differs at {at}");
            assert!(c.get(&c.key(&other), &other, 1).is_none());
        }
        assert!(c.get(&k, &token[..token.len() - 1], 1).is_none());
        assert!(c.get(&k, &format!("{token}x"), 1).is_none());
        // The cached token is still served after the failed lookups.
        assert_eq!(
            c.get(&k, &token, 1).unwrap().subject.as_deref(),
            Some("alice")
        );
        // A colliding token inserted under the same key replaces the entry; the first token
        // then misses rather than reads the second's identity.
        c.insert(k, "other-token", identity("mallory"), 100, 0);
        assert!(c.get(&k, &token, 1).is_none());
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), "other-token".len());
    }

    #[test]
    fn constant_time_eq_compares_every_byte_and_the_length() {
        let a: Vec<u8> = (0..=255u8).cycle().take(1029).collect();
        assert!(constant_time_eq(&a, &a.clone()));
        for at in 0..a.len() {
            let mut b = a.clone();
            b[at] ^= 0x80;
            assert!(!constant_time_eq(&a, &b), "differs at {at}");
        }
        assert!(!constant_time_eq(&a, &a[..1028]));
        assert!(constant_time_eq(b"", b""));
    }

    /// Keys are keyed: two caches (two VMs) key the same token differently, and a key is
    /// not the token.
    #[test]
    fn keys_are_secret_per_cache() {
        let (a, b) = (TokenCache::new(1), TokenCache::new(1));
        assert_eq!(a.key("secret-token"), a.key("secret-token"));
        assert_ne!(a.key("secret-token"), b.key("secret-token"));
    }

    /// The cache holds at most MAX_CACHED_BYTES of tokens, whatever its entry count.
    #[test]
    fn bounded_in_bytes() {
        let mut c = TokenCache::new(100_000);
        for i in 0..1000u64 {
            let t = format!("{i:08}{}", "t".repeat(8184));
            c.insert(c.key(&t), &t, identity("a"), 100, 0);
            assert!(c.bytes() <= MAX_CACHED_BYTES);
        }
        assert_eq!(c.len(), MAX_CACHED_BYTES / 8192);
        // The newest are kept.
        let t = format!("{:08}{}", 999, "t".repeat(8184));
        assert!(c.get(&c.key(&t), &t, 1).is_some());
    }
}
