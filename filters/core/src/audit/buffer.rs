//! Buffer accounting for `maxBuffered` and the fail-closed decision (164.312(b)).
//!
//! "Buffered" counts the records of one Envoy that are not yet acknowledged by the collector:
//! enqueued by a request, waiting in a VM's queue, sealed and waiting, or in flight. All worker
//! VMs share the count (one proxy-wasm shared-data key, updated with compare-and-swap): it goes
//! up by one when a record is enqueued and down by a batch's size when the collector acknowledges
//! the batch.
//!
//! * **Admission** ([`admit`]): while the count is at or above `maxBuffered`, a request on a PHI
//!   (or unmatched) route is refused with 503 `audit_unavailable` under `failClosed`, and passes
//!   under `failOpen` (valid only with its documented `audit-delivery` exception). Requests on
//!   public and protected routes are never refused for this: an allowed one makes no record.
//! * **One worker's view** ([`WorkerCount`]): reading and compare-and-swapping the shared key
//!   on every request cost three host calls per request (a read at admission, a read and a
//!   write when the record is kept). Each VM now gathers its own changes and shares them every
//!   [`PUBLISH_EVERY`] records (and at every tick), deciding on the count it last saw plus its own
//!   changes since. Within [`EXACT_MARGIN`] of `maxBuffered` it shares every change at once and
//!   reads the shared count at admission, as before: the limit is exact where it matters, and
//!   elsewhere another worker's unshared changes (fewer than [`PUBLISH_EVERY`]) are all a
//!   decision can miss.
//! * **Hard limit** ([`hard_limit`]): requests already admitted (in flight when the buffer filled)
//!   and denials still make records above `maxBuffered`; they are kept up to a hard limit
//!   (`maxBuffered` + max(`maxBuffered`, 1000)) so memory stays bounded even under `failOpen` or a
//!   flood of denials. Only past it is a record dropped, counted and logged.

use crate::denial::{Denial, LocalReply};
use crate::policy::WhenCollectorDown;
use crate::routes::RouteClass;

/// What to do with a request when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go on; the buffer has room (or the route is not PHI, or the policy says failOpen).
    Pass,
    /// The buffer is full and the policy says failClosed: 503 `audit_unavailable`.
    Refuse,
    /// The buffer is full, failOpen lets the PHI request pass (counted).
    PassUnaudited,
}

/// Decides admission from the shared buffered count.
pub fn admit(
    class: RouteClass,
    buffered: u64,
    max_buffered: u64,
    when_down: WhenCollectorDown,
) -> Admission {
    if class != RouteClass::Phi || buffered < max_buffered {
        return Admission::Pass;
    }
    match when_down {
        WhenCollectorDown::FailClosed => Admission::Refuse,
        WhenCollectorDown::FailOpen => Admission::PassUnaudited,
    }
}

/// The contract's 503 reply for a refused request.
pub fn refusal(request_id: &str) -> LocalReply {
    Denial::AuditUnavailable.reply(request_id, &[])
}

/// The count above which records are dropped rather than kept.
pub fn hard_limit(max_buffered: u64) -> u64 {
    max_buffered.saturating_add(max_buffered.max(1000))
}

/// Whether one more record may be kept.
pub fn may_enqueue(buffered: u64, max_buffered: u64) -> bool {
    buffered < hard_limit(max_buffered)
}

/// The shared count's stored form: 8 bytes little-endian; anything else reads as 0.
pub fn decode_count(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

pub fn encode_count(count: u64) -> [u8; 8] {
    count.to_le_bytes()
}

/// The count after adding `delta` (negative: acknowledged records), never below 0.
pub fn adjust(count: u64, delta: i64) -> u64 {
    if delta >= 0 {
        count.saturating_add(delta.unsigned_abs())
    } else {
        count.saturating_sub(delta.unsigned_abs())
    }
}

/// A worker shares its own changes to the count once this many have gathered.
pub const PUBLISH_EVERY: u64 = 32;

/// Within this many records of `maxBuffered` every change is shared at once and admission reads
/// the shared count (a margin for eight workers' unshared changes).
pub const EXACT_MARGIN: u64 = 8 * PUBLISH_EVERY;

/// One worker's view of the Envoy-wide buffered count: the shared value it last saw and its own
/// changes not yet shared. The shell shares them (`publish`) when [`WorkerCount::add`] says so and
/// at every tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCount {
    seen: u64,
    unshared: i64,
    max_buffered: u64,
}

impl WorkerCount {
    pub fn new(max_buffered: u64) -> WorkerCount {
        WorkerCount {
            seen: 0,
            unshared: 0,
            max_buffered,
        }
    }

    /// The count as this worker knows it.
    pub fn estimate(&self) -> u64 {
        adjust(self.seen, self.unshared)
    }

    /// Near `maxBuffered`: every change is shared at once and admission reads the shared count.
    pub fn exact(&self) -> bool {
        self.estimate().saturating_add(EXACT_MARGIN) >= self.max_buffered
    }

    /// Records a change; true when the changes should be shared now.
    pub fn add(&mut self, delta: i64) -> bool {
        self.unshared = self.unshared.saturating_add(delta);
        self.exact() || self.unshared.unsigned_abs() >= PUBLISH_EVERY
    }

    /// The changes to share (the caller adds them to the shared count, then calls
    /// [`WorkerCount::shared`], or [`WorkerCount::unshared_again`] if the host refused).
    pub fn take_unshared(&mut self) -> i64 {
        std::mem::take(&mut self.unshared)
    }

    /// The host refused the update: the changes wait for the next try.
    pub fn unshared_again(&mut self, delta: i64) {
        self.unshared = self.unshared.saturating_add(delta);
    }

    /// The shared count after this worker's update (or as read).
    pub fn shared(&mut self, count: u64) {
        self.seen = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_shares_its_changes_in_steps_far_from_the_limit_and_each_one_near_it() {
        let mut c = WorkerCount::new(20_000);
        // Far from the limit: 31 records are kept to itself, the 32nd asks to share.
        for i in 1..PUBLISH_EVERY {
            assert!(!c.add(1), "record {i}");
        }
        assert_eq!(c.estimate(), PUBLISH_EVERY - 1);
        assert!(c.add(1));
        let delta = c.take_unshared();
        assert_eq!(delta, PUBLISH_EVERY as i64);
        // Another worker added 100 meanwhile: the shared count says so.
        c.shared(PUBLISH_EVERY + 100);
        assert_eq!(c.estimate(), PUBLISH_EVERY + 100);
        // An acknowledged batch of 200 is shared at once (a step of at least PUBLISH_EVERY).
        assert!(c.add(-200));
        assert_eq!(c.estimate(), 0, "never below zero");
        let d = c.take_unshared();
        c.unshared_again(d);
        assert_eq!(c.take_unshared(), -200, "a refused update waits, whole");

        // Near the limit every change is shared, and admission is told to read the shared count.
        let mut near = WorkerCount::new(EXACT_MARGIN + 10);
        near.shared(10);
        assert!(near.exact(), "within EXACT_MARGIN of maxBuffered");
        assert!(near.add(1));
        let mut far = WorkerCount::new(EXACT_MARGIN + 12);
        far.shared(10);
        assert!(!far.exact());
        assert!(!far.add(1));
        // A small maxBuffered (the e2e suites use 5) is always exact: one worker or many.
        assert!(WorkerCount::new(5).exact());
    }

    #[test]
    fn phi_requests_are_refused_only_when_full_and_fail_closed() {
        use WhenCollectorDown::*;
        assert_eq!(admit(RouteClass::Phi, 9, 10, FailClosed), Admission::Pass);
        assert_eq!(
            admit(RouteClass::Phi, 10, 10, FailClosed),
            Admission::Refuse
        );
        assert_eq!(
            admit(RouteClass::Phi, 11, 10, FailClosed),
            Admission::Refuse
        );
        assert_eq!(
            admit(RouteClass::Phi, 10, 10, FailOpen),
            Admission::PassUnaudited
        );
        assert_eq!(admit(RouteClass::Phi, 0, 10, FailOpen), Admission::Pass);
        for class in [RouteClass::Public, RouteClass::Protected] {
            assert_eq!(admit(class, 100, 10, FailClosed), Admission::Pass);
        }
    }

    #[test]
    fn refusal_is_the_contract_503() {
        let r = refusal("rid-9");
        assert_eq!(r.status, 503);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(body["request_id"], "rid-9");
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "retry-after" && v == "1"));
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json"));
    }

    #[test]
    fn hard_limit_keeps_headroom() {
        assert_eq!(hard_limit(5), 1005);
        assert_eq!(hard_limit(20_000), 40_000);
        assert_eq!(hard_limit(u64::MAX), u64::MAX);
        assert!(may_enqueue(1004, 5));
        assert!(!may_enqueue(1005, 5));
    }

    #[test]
    fn count_encoding_and_adjusting() {
        assert_eq!(decode_count(None), 0);
        assert_eq!(decode_count(Some(&[1, 2, 3])), 0);
        assert_eq!(decode_count(Some(&encode_count(77))), 77);
        assert_eq!(adjust(5, 3), 8);
        assert_eq!(adjust(5, -3), 2);
        assert_eq!(adjust(2, -5), 0);
        assert_eq!(adjust(u64::MAX, 1), u64::MAX);
        assert_eq!(adjust(3, i64::MIN), 0);
    }
}
