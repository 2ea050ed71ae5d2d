//! Per-source bounds on garbage: a sender whose records the collector cannot trust (malformed,
//! bad MAC, unknown key, an unreadable body) spends tokens of its own bucket; once the bucket is
//! empty its batches are answered `429` with `Retry-After` before their bodies are read. A
//! sender of good records never spends a token, so the audit filters are never slowed by
//! someone else's flood. The filters treat 429 like any non-2xx answer that is not a refusal:
//! the batch is kept and retried later (`hipaa_core::audit::delivery`), never dropped.
//!
//! The source is the peer identity the collector's sidecar puts in `x-forwarded-client-cert`
//! (its last element's `URI=`), else the connection's IP address. The map is bounded: when it
//! is full, buckets that have refilled are forgotten (a full bucket is what a new source gets),
//! and if none has, new sources share one overflow bucket — a flood of fresh identities is
//! limited together instead of growing the map.

use std::collections::HashMap;
use std::sync::Mutex;

/// Garbage units a source may spend at once.
pub const DEFAULT_BURST: u32 = 200;
/// Units per second a bucket refills.
pub const DEFAULT_PER_SECOND: u32 = 5;
/// Sources tracked at once.
pub const DEFAULT_MAX_SOURCES: usize = 4096;
/// The longest source name kept (a longer identity is cut: it still names one bucket).
pub const MAX_SOURCE_BYTES: usize = 256;
const OVERFLOW: &str = "(overflow)";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: i64,
}

/// The per-source token buckets.
#[derive(Debug)]
pub struct GarbageLimiter {
    per_second: f64,
    burst: f64,
    max_sources: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl GarbageLimiter {
    pub fn new(per_second: u32, burst: u32, max_sources: usize) -> GarbageLimiter {
        GarbageLimiter {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            max_sources: max_sources.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now_ms: i64) {
        let elapsed = now_ms.saturating_sub(b.updated_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.updated_ms = now_ms;
    }

    /// May `source` send now? `Err(seconds)`: answer 429 with `Retry-After: seconds`.
    pub fn admit(&self, source: &str, now_ms: i64) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.key(&mut map, source, now_ms);
        let Some(b) = map.get_mut(&key) else {
            return Ok(());
        };
        self.refill(b, now_ms);
        if b.tokens >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / self.per_second).ceil();
        Err((wait as u64).max(1))
    }

    /// `source` sent `units` records (or bodies) that could not be trusted.
    pub fn charge(&self, source: &str, units: u64, now_ms: i64) {
        if units == 0 {
            return;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.key(&mut map, source, now_ms);
        let (per_second, burst) = (self.per_second, self.burst);
        let b = map.entry(key).or_insert(Bucket {
            tokens: burst,
            updated_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.updated_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.updated_ms = now_ms;
        // Spent below zero (down to one burst's worth): a huge garbage batch waits longer.
        b.tokens = (b.tokens - units as f64).max(-burst);
    }

    /// The bucket name for `source`: itself when tracked or when there is room, else the
    /// shared overflow bucket.
    fn key(&self, map: &mut HashMap<String, Bucket>, source: &str, now_ms: i64) -> String {
        let source = cut(source);
        if map.contains_key(source) || map.len() < self.max_sources {
            return source.to_string();
        }
        let (per_second, burst) = (self.per_second, self.burst);
        map.retain(|name, b| {
            let elapsed = now_ms.saturating_sub(b.updated_ms).max(0) as f64 / 1000.0;
            name == OVERFLOW || b.tokens + elapsed * per_second < burst
        });
        if map.len() < self.max_sources {
            source.to_string()
        } else {
            OVERFLOW.to_string()
        }
    }

    /// Sources tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Default for GarbageLimiter {
    fn default() -> Self {
        GarbageLimiter::new(DEFAULT_PER_SECOND, DEFAULT_BURST, DEFAULT_MAX_SOURCES)
    }
}

fn cut(source: &str) -> &str {
    let mut end = source.len().min(MAX_SOURCE_BYTES);
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    source.get(..end).unwrap_or_default()
}

/// The peer identity in an `x-forwarded-client-cert` value: the `URI=` of its last element
/// (the one the nearest proxy, the collector's sidecar, added). None when there is none.
pub fn xfcc_uri(value: &str) -> Option<&str> {
    let last = value.rsplit(',').next()?;
    last.split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("uri"))
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_sender_is_limited_and_others_are_not() {
        let l = GarbageLimiter::new(2, 10, 100);
        assert_eq!(l.admit("mallory", 0), Ok(()));
        l.charge("mallory", 10, 0);
        let wait = l.admit("mallory", 0).unwrap_err();
        assert_eq!(wait, 1, "one token back in 0.5 s at 2/s");
        assert_eq!(
            l.admit("audit-filter", 0),
            Ok(()),
            "another source is not limited"
        );
        assert_eq!(l.admit("mallory", 600), Ok(()), "refilled");
        // A huge garbage batch waits longer, but never more than two bursts' worth.
        l.charge("mallory", 1_000_000, 600);
        assert_eq!(l.admit("mallory", 600), Err(6));
    }

    #[test]
    fn the_map_is_bounded_and_fresh_identities_share_one_bucket() {
        let l = GarbageLimiter::new(1, 5, 3);
        for i in 0..10 {
            l.charge(&format!("id-{i}"), 5, 0);
        }
        assert!(l.tracked() <= 4, "3 sources and the overflow bucket");
        assert!(
            l.admit("id-9", 0).is_err(),
            "new identities are limited together"
        );
        assert!(l.admit("id-0", 0).is_err());
        // Once the tracked buckets have refilled, a new source gets its own again.
        assert_eq!(l.admit("late", 10_000), Ok(()));
        l.charge("late", 1, 10_000);
        assert!(l.tracked() <= 4);
        assert_eq!(l.admit("late", 10_000), Ok(()));
    }

    #[test]
    fn the_source_comes_from_the_last_xfcc_element() {
        assert_eq!(
            xfcc_uri("By=spiffe://td/c;Hash=ab;URI=spiffe://td/ns/a/sa/b"),
            Some("spiffe://td/ns/a/sa/b")
        );
        assert_eq!(
            xfcc_uri("URI=spiffe://forged,By=x;URI=\"spiffe://td/real\""),
            Some("spiffe://td/real")
        );
        assert_eq!(xfcc_uri("Hash=ab"), None);
        assert_eq!(cut(&"é".repeat(300)).len(), 256);
    }
}
