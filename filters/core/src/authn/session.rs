//! Session idle tracking in bounded shared memory (proxy-wasm shared data, shared by all
//! worker VMs of one Envoy). Sessions hash into `slots` buckets of `ENTRIES` entries; a full
//! bucket forgets its least recently active session. The shell stores the bytes; this
//! module decides.
//!
//! An entry is (16-byte hash of issuer + session id, last activity in seconds, expired flag).
//! Once a session has been idle too long it is marked expired and stays refused, even if
//! the same token comes back (until the bucket forgets it; tokens are short-lived, so a
//! forgotten session cannot outlive its token by more than the token's own lifetime).

use sha2::{Digest, Sha256};

pub const ENTRIES: usize = 4;
const ENTRY_BYTES: usize = 16 + 8 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// First activity seen for this session (in this Envoy).
    New,
    /// Seen before, within the idle timeout: activity recorded.
    Active,
    /// Idle past the timeout (now or earlier): refused.
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey {
    hash: [u8; 16],
    slot: u32,
}

impl SessionKey {
    pub fn new(issuer: &str, session_id: &str, slots: u32) -> SessionKey {
        let digest = Sha256::new()
            .chain_update(issuer.as_bytes())
            .chain_update([0u8])
            .chain_update(session_id.as_bytes())
            .finalize();
        // A SHA-256 digest is 32 bytes: the first 16 name the session, the next 4 pick its slot.
        let (hash, rest) = digest.split_first_chunk::<16>().unwrap_or((&[0; 16], &[]));
        let n = rest
            .first_chunk::<4>()
            .map_or(0, |b| u32::from_be_bytes(*b));
        let hash = *hash;
        SessionKey {
            hash,
            slot: n % slots.max(1),
        }
    }

    /// The 16 bytes that name this session (issuer + session id), for caches keyed by session.
    pub fn id(&self) -> [u8; 16] {
        self.hash
    }

    /// The shared-data key of this session's bucket.
    pub fn bucket_key(&self) -> String {
        format!("hipaa.authn.session.{}", self.slot)
    }
}

/// Number of buckets for `max_tracked` sessions.
pub fn slots_for(max_tracked: u32) -> u32 {
    max_tracked.div_ceil(ENTRIES as u32).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: [u8; 16],
    last_seen: u64,
    expired: bool,
}

fn decode(bytes: &[u8]) -> Vec<Entry> {
    bytes
        .chunks_exact(ENTRY_BYTES)
        .take(ENTRIES)
        .filter_map(|c| {
            let (hash, rest) = c.split_first_chunk::<16>()?;
            let (t, rest) = rest.split_first_chunk::<8>()?;
            Some(Entry {
                hash: *hash,
                last_seen: u64::from_be_bytes(*t),
                expired: rest.first() == Some(&1),
            })
        })
        .collect()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for e in entries {
        out.extend_from_slice(&e.hash);
        out.extend_from_slice(&e.last_seen.to_be_bytes());
        out.push(u8::from(e.expired));
    }
    out
}

/// Record activity for `key` at `now` in a bucket (empty bytes: a new bucket).
/// Returns the session's state and the bucket's new bytes to store (with CAS).
pub fn touch(
    bucket: &[u8],
    key: &SessionKey,
    now: u64,
    idle_timeout: u64,
) -> (SessionState, Vec<u8>) {
    if now == 0 {
        // The clock is unavailable: idleness cannot be measured, so the session does not
        // pass (fail closed), and the bucket is left as it was (not marked expired for good).
        return (SessionState::Expired, bucket.to_vec());
    }
    let mut entries = decode(bucket);
    if let Some(e) = entries.iter_mut().find(|e| e.hash == key.hash) {
        if e.expired {
            return (SessionState::Expired, encode(&entries));
        }
        if idle_timeout > 0 && now.saturating_sub(e.last_seen) > idle_timeout {
            e.expired = true;
            return (SessionState::Expired, encode(&entries));
        }
        e.last_seen = e.last_seen.max(now);
        return (SessionState::Active, encode(&entries));
    }
    if entries.len() >= ENTRIES {
        // Forget the least recently active session of this bucket.
        if let Some(oldest) = entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(i, _)| i)
        {
            entries.remove(oldest);
        }
    }
    entries.push(Entry {
        hash: key.hash,
        last_seen: now,
        expired: false,
    });
    (SessionState::New, encode(&entries))
}

/// [`touch`], with the bucket's new bytes only when they differ from `bucket`: a session active
/// again within the second of its recorded activity changes nothing (nor does a refusal of an
/// already expired session, or a clock at 0), so the shell skips the shared-data write and its
/// compare-and-swap on most requests of a busy session. `Some` whenever anything changed: a new
/// second, a new session, an eviction, an expiry.
pub fn touch_update(
    bucket: &[u8],
    key: &SessionKey,
    now: u64,
    idle_timeout: u64,
) -> (SessionState, Option<Vec<u8>>) {
    let (state, updated) = touch(bucket, key, now, idle_timeout);
    if updated == bucket {
        (state, None)
    } else {
        (state, Some(updated))
    }
}

/// The last sighting of `key` in `bucket` (unix seconds), None when the bucket does not hold
/// it. Read before [`touch`]: the session authority is told when this Envoy last saw the
/// session.
pub fn last_seen(bucket: &[u8], key: &SessionKey) -> Option<u64> {
    decode(bucket)
        .into_iter()
        .find(|e| e.hash == key.hash)
        .map(|e| e.last_seen)
}

/// The session authority found `key` active (`crate::authn::authority`): its entry is no longer
/// expired and its last activity is at least `last_seen` (seconds). The bucket's new bytes to
/// store (with CAS); a session the bucket does not hold is added as [`touch`] would.
pub fn revive(bucket: &[u8], key: &SessionKey, last_seen: u64) -> Vec<u8> {
    let mut entries = decode(bucket);
    if let Some(e) = entries.iter_mut().find(|e| e.hash == key.hash) {
        e.expired = false;
        e.last_seen = e.last_seen.max(last_seen);
        return encode(&entries);
    }
    // Not held (forgotten meanwhile): touch adds it, evicting the least recent if full.
    touch(bucket, key, last_seen, 0).1
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: u64 = 900;

    #[test]
    fn new_then_active_then_idle_expired_and_stays_expired() {
        let k = SessionKey::new("iss", "s1", 1024);
        let (s, b) = touch(&[], &k, 1000, IDLE);
        assert_eq!(s, SessionState::New);
        let (s, b) = touch(&b, &k, 1000 + IDLE, IDLE);
        assert_eq!(s, SessionState::Active);
        let (s, b) = touch(&b, &k, 1000 + 2 * IDLE + 1, IDLE);
        assert_eq!(s, SessionState::Expired);
        let (s, _) = touch(&b, &k, 1000 + 2 * IDLE + 2, IDLE);
        assert_eq!(s, SessionState::Expired, "an expired session stays refused");
    }

    #[test]
    fn the_write_is_skipped_only_when_nothing_changed() {
        let k = SessionKey::new("iss", "s1", 1);
        let (s, b) = touch_update(&[], &k, 1000, IDLE);
        assert_eq!(s, SessionState::New);
        let b = b.expect("a new session is written");
        // Same second again: the bucket would not change, so no write.
        assert_eq!(
            touch_update(&b, &k, 1000, IDLE),
            (SessionState::Active, None)
        );
        // A new second is recorded: written, and the bucket says the new second.
        let (s, b2) = touch_update(&b, &k, 1001, IDLE);
        assert_eq!(s, SessionState::Active);
        let b2 = b2.expect("a new second is written");
        assert_eq!(b2, touch(&b, &k, 1001, IDLE).1);
        assert_eq!(decode(&b2)[0].last_seen, 1001);
        // An older second (another worker's clock) keeps the newer one: nothing to write.
        assert_eq!(
            touch_update(&b2, &k, 1000, IDLE),
            (SessionState::Active, None)
        );
        // Idle past the timeout: the expiry is written; the expired session then changes nothing.
        let (s, b3) = touch_update(&b2, &k, 1001 + IDLE + 1, IDLE);
        assert_eq!(s, SessionState::Expired);
        let b3 = b3.expect("the expiry is written");
        assert_eq!(
            touch_update(&b3, &k, 1001 + IDLE + 2, IDLE),
            (SessionState::Expired, None)
        );
        // Another session in the same bucket is a change.
        let other = SessionKey::new("iss", "s2", 1);
        assert!(touch_update(&b2, &other, 1001, IDLE).1.is_some());
        // No clock: refused, bucket untouched.
        assert_eq!(
            touch_update(&b2, &k, 0, IDLE),
            (SessionState::Expired, None)
        );
    }

    #[test]
    fn activity_resets_the_idle_clock() {
        let k = SessionKey::new("iss", "s1", 1);
        let (_, mut b) = touch(&[], &k, 1, IDLE);
        for i in 1..10 {
            let (s, nb) = touch(&b, &k, 1 + i * (IDLE - 1), IDLE);
            assert_eq!(s, SessionState::Active);
            b = nb;
        }
    }

    #[test]
    fn sessions_are_per_issuer() {
        let a = SessionKey::new("iss-a", "s1", 1);
        let b = SessionKey::new("iss-b", "s1", 1);
        let (_, bucket) = touch(&[], &a, 1, IDLE);
        assert_eq!(touch(&bucket, &b, 2, IDLE).0, SessionState::New);
    }

    #[test]
    fn bucket_is_bounded_and_forgets_least_recent() {
        let keys: Vec<_> = (0..5)
            .map(|i| SessionKey::new("iss", &format!("s{i}"), 1))
            .collect();
        let mut b = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            b = touch(&b, k, 1 + i as u64, IDLE).1;
        }
        assert_eq!(b.len(), ENTRIES * ENTRY_BYTES);
        assert_eq!(
            touch(&b, &keys[0], 10, IDLE).0,
            SessionState::New,
            "s0 was forgotten"
        );
        assert_eq!(touch(&b, &keys[4], 10, IDLE).0, SessionState::Active);
    }

    #[test]
    fn idle_zero_means_no_idle_timeout() {
        let k = SessionKey::new("iss", "s", 1);
        let (_, b) = touch(&[], &k, 1, 0);
        assert_eq!(touch(&b, &k, 1_000_000, 0).0, SessionState::Active);
    }

    #[test]
    fn last_seen_is_the_sighting_before_the_touch() {
        let k = SessionKey::new("iss", "s", 1);
        assert_eq!(last_seen(&[], &k), None);
        let (_, b) = touch(&[], &k, 100, IDLE);
        assert_eq!(last_seen(&b, &k), Some(100));
        let (s, b) = touch(&b, &k, 100 + IDLE + 1, IDLE);
        assert_eq!(s, SessionState::Expired);
        assert_eq!(
            last_seen(&b, &k),
            Some(100),
            "an idle touch keeps the old sighting"
        );
        assert_eq!(last_seen(&[1, 2, 3], &k), None);
    }

    #[test]
    fn garbage_bucket_bytes_are_tolerated() {
        let k = SessionKey::new("iss", "s", 1);
        assert_eq!(touch(&[1, 2, 3], &k, 1, IDLE).0, SessionState::New);
    }

    #[test]
    fn revive_clears_the_expired_mark_and_keeps_the_newest_activity() {
        let k = SessionKey::new("iss", "s", 1);
        let (_, b) = touch(&[], &k, 1000, IDLE);
        let (s, b) = touch(&b, &k, 1000 + IDLE + 1, IDLE);
        assert_eq!(s, SessionState::Expired);
        // The authority saw the user active on another replica a moment ago.
        let b = revive(&b, &k, 1000 + IDLE);
        assert_eq!(touch(&b, &k, 1000 + IDLE + 2, IDLE).0, SessionState::Active);
        // Reviving with an older time never moves the clock back.
        let b = revive(&b, &k, 1);
        assert_eq!(touch(&b, &k, 1000 + 2 * IDLE, IDLE).0, SessionState::Active);
        // A session the bucket never held is added.
        let other = SessionKey::new("iss", "t", 1);
        let b = revive(&b, &other, 5000);
        assert_eq!(touch(&b, &other, 5001, IDLE).0, SessionState::Active);
    }

    #[test]
    fn slots_and_keys() {
        assert_eq!(slots_for(65_536), 16_384);
        assert_eq!(slots_for(1), 1);
        let k = SessionKey::new("iss", "s", 7);
        assert!(k.bucket_key().starts_with("hipaa.authn.session."));
        assert!(k.slot < 7);
    }
}
