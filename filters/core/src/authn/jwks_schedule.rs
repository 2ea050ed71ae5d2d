//! When to fetch a remote JWKS. The state is shared by every worker's root context through
//! proxy-wasm shared data; whichever root context first claims a due fetch (by CAS on this
//! state) performs it, so one Envoy makes one fetch per refresh.

use serde::{Deserialize, Serialize};

/// Smallest gap between two fetches triggered by an unknown `kid` (seconds).
pub const REFETCH_MIN_GAP: u64 = 30;
/// Retry delays before the first success and after failures: 1, 2, 4 ... capped.
const BACKOFF_CAP: u64 = 60;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchState {
    /// Unix seconds of the last successful fetch (0: never).
    pub fetched_at: u64,
    /// Unix seconds of the last attempt (success or not; 0: never).
    pub attempted_at: u64,
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// Unix seconds an unknown `kid` asked for a refetch (0: none pending).
    pub refetch_requested_at: u64,
}

impl FetchState {
    pub fn decode(bytes: &[u8]) -> FetchState {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Is a fetch due at `now`? `in_flight_timeout` covers an attempt whose answer never came.
    pub fn due(&self, now: u64, refresh: u64, in_flight_timeout: u64) -> bool {
        if self.attempted_at > self.fetched_at.max(1) || self.failures > 0 {
            // An attempt is outstanding or failed: retry with backoff.
            let wait = backoff(self.failures).max(in_flight_timeout);
            return now >= self.attempted_at.saturating_add(wait);
        }
        if self.fetched_at == 0 {
            return true;
        }
        if self.refetch_requested_at > self.fetched_at
            && now >= self.fetched_at.saturating_add(REFETCH_MIN_GAP)
        {
            return true;
        }
        now >= self.fetched_at.saturating_add(refresh)
    }

    pub fn claim(&self, now: u64) -> FetchState {
        FetchState {
            attempted_at: now,
            ..*self
        }
    }

    pub fn succeeded(&self, now: u64) -> FetchState {
        FetchState {
            fetched_at: now,
            attempted_at: now,
            failures: 0,
            refetch_requested_at: 0,
        }
    }

    pub fn failed(&self, now: u64) -> FetchState {
        FetchState {
            attempted_at: now,
            failures: self.failures.saturating_add(1),
            ..*self
        }
    }

    /// An unknown `kid`: ask for a refetch unless one is already pending.
    pub fn request_refetch(&self, now: u64) -> Option<FetchState> {
        (self.refetch_requested_at <= self.fetched_at).then_some(FetchState {
            refetch_requested_at: now,
            ..*self
        })
    }
}

fn backoff(failures: u32) -> u64 {
    1u64.checked_shl(failures.saturating_sub(1).min(16))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fetch_is_due_at_once() {
        assert!(FetchState::default().due(100, 300, 5));
    }

    #[test]
    fn claimed_fetch_is_not_due_again_until_it_times_out() {
        let s = FetchState::default().claim(100);
        assert!(!s.due(101, 300, 5));
        assert!(s.due(105, 300, 5));
    }

    #[test]
    fn refresh_after_success() {
        let s = FetchState::default().claim(100).succeeded(101);
        assert!(!s.due(300, 300, 5));
        assert!(s.due(401, 300, 5));
    }

    #[test]
    fn failures_back_off_and_cap() {
        let mut s = FetchState::default();
        for i in 1..=10 {
            s = s.claim(1000).failed(1000);
            assert_eq!(s.failures, i);
        }
        assert!(!s.due(1000 + BACKOFF_CAP - 1, 300, 1));
        assert!(s.due(1000 + BACKOFF_CAP, 300, 1));
        let s = FetchState::default().claim(10).failed(10);
        assert!(s.due(11, 300, 1));
    }

    #[test]
    fn last_good_time_kept_through_failures() {
        let s = FetchState::default().succeeded(50).claim(400).failed(400);
        assert_eq!(s.fetched_at, 50);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited_and_single() {
        let s = FetchState::default().succeeded(100);
        let r = s.request_refetch(105).unwrap();
        assert!(r.request_refetch(106).is_none(), "one pending request only");
        assert!(!r.due(129, 300, 5));
        assert!(r.due(130, 300, 5));
        let after = r.claim(130).succeeded(131);
        assert_eq!(after.refetch_requested_at, 0);
        assert!(after.request_refetch(132).is_some());
    }

    #[test]
    fn garbage_state_decodes_to_default() {
        assert_eq!(FetchState::decode(b"nope"), FetchState::default());
        let s = FetchState::default().succeeded(7);
        assert_eq!(FetchState::decode(&s.encode()), s);
    }
}
