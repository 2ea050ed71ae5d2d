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

#[cfg(test)]
mod tests {
    use super::*;

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
