//! Delivery of sealed records to the collector: batching, one batch in flight, retry with capped
//! exponential backoff, acknowledgement only on a 2xx answer (164.312(b): nothing lost).
//!
//! One [`Delivery`] per chain (per filter VM), driven by the VM's root context:
//! * [`Delivery::push`] adds a sealed record (in seq order);
//! * [`Delivery::poll`] returns a batch body to send now, or nothing: a batch goes when
//!   `maxBatch` records wait, or when the oldest has waited `flushIntervalMs`; a failed batch is
//!   resent, unchanged, once its backoff has passed;
//! * [`Delivery::on_response`] takes the collector's answer: a 2xx acknowledges the batch (the
//!   collector answers only after its transaction committed); anything else — no status at all
//!   (Envoy's failed or timed-out call: zero headers, no body), a non-number or a non-2xx status —
//!   keeps the batch for a retry.
//!
//! **Size**: a batch is cut at `maxBatch` records or [`MAX_BATCH_BYTES`] of body, whichever comes
//! first (a record is at most `MAX_RECORD_BYTES`, so one always fits). A collector configured
//! below that limit (or any collector) answering **413 or 400** makes the batch **split**: its
//! first half is resent at once and the rest goes back in front of the waiting records, so
//! halving isolates the record refused. A record refused **alone** is replaced by a **stand-in**
//! ([`stand_in`]: its chain position, its length, the SHA-256 of its bytes, a bounded excerpt) —
//! the collector stores that as a `malformed` integrity record and the missing seq as a `gap`, so
//! the trail says what was lost and `audit verify` reports it; a stand-in refused in turn is
//! given up ([`Answer::GivenUp`]: the caller counts and logs it). Nothing is retried forever
//! for its content, nothing is dropped silently, and later records keep flowing. Any other
//! failure (no answer, 5xx, ...) keeps the batch unchanged for a retry with backoff, as before.
//!
//! **Shutdown** ([`Delivery::drain_now`]): when the VM's configuration is replaced, whatever waits
//! is sent without waiting for the flush interval (backoff still applies), until everything is
//! acknowledged or the root context's deadline ([`DONE_DEADLINE_MS`]) passes.
//!
//! Only one batch is in flight at a time and a failed batch is retried before any later record is
//! sent, so the collector receives each chain in seq order (no gaps, no late records); a batch
//! that was stored but whose answer was lost is sent again, and the collector acknowledges the
//! duplicates without storing them twice. A call that never answers is given up after its timeout
//! plus a grace period ([`Delivery::poll`] treats it as failed).

use crate::audit::limits::MAX_BATCH_BYTES;
use crate::policy::Audit;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

/// The first retry waits this long; each further failure doubles it, up to the cap.
pub const BACKOFF_BASE_MS: u64 = 250;
/// The longest wait between retries.
pub const BACKOFF_CAP_MS: u64 = 8_000;
/// Extra time after a call's timeout before an unanswered call counts as failed.
pub const WATCHDOG_GRACE_MS: u64 = 2_000;
/// How long a replaced (or stopping) configuration keeps delivering its unacknowledged records
/// before it gives up on them (counted and logged) and lets the host release it.
pub const DONE_DEADLINE_MS: u64 = 30_000;
/// The bytes of a refused record kept in its stand-in.
pub const STAND_IN_EXCERPT: usize = 1024;

/// The delivery settings, from the policy's `audit` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    pub max_batch: usize,
    pub flush_interval_ms: u64,
    /// The call timeout; never 0 (0 would mean no timeout to Envoy).
    pub timeout_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// The largest batch body ([`MAX_BATCH_BYTES`]).
    pub max_batch_bytes: usize,
}

impl DeliveryConfig {
    pub fn from_policy(audit: &Audit) -> DeliveryConfig {
        DeliveryConfig {
            max_batch: usize::try_from(audit.max_batch)
                .unwrap_or(usize::MAX)
                .max(1),
            flush_interval_ms: audit.flush_interval_ms.max(1),
            timeout_ms: audit.collector.timeout_ms.max(1),
            backoff_base_ms: BACKOFF_BASE_MS,
            backoff_cap_ms: BACKOFF_CAP_MS,
            max_batch_bytes: MAX_BATCH_BYTES,
        }
    }

    /// The wait before retry number `failures` (1 = after the first failure).
    pub fn backoff_ms(&self, failures: u32) -> u64 {
        let shift = failures.saturating_sub(1).min(32);
        self.backoff_base_ms
            .saturating_mul(1u64 << shift)
            .min(self.backoff_cap_ms)
    }

    /// How often the root context should look at its queue and timers.
    pub fn tick_ms(&self) -> u64 {
        self.flush_interval_ms.clamp(10, 250)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing in flight; a failed batch may be waiting for its retry time.
    Idle {
        retry_at: Option<i64>,
    },
    InFlight {
        since: i64,
    },
}

/// The answer to a call, as the root context should act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The batch is durable at the collector: this many records are acknowledged.
    Acked(usize),
    /// The batch is kept; it is resent after this many milliseconds.
    Retry { failures: u32, delay_ms: u64 },
    /// The collector refused the batch for its size or content (413 / 400): it was split, this
    /// many records are resent now and the rest wait in front of the queue.
    Split { kept: usize, returned: usize },
    /// The collector refused a record alone (413 / 400): its stand-in is sent in its place.
    StandIn,
    /// The collector refused a record's stand-in too: the record is given up (the caller counts
    /// and logs it; the collector shows the missing seq as a gap).
    GivenUp(usize),
    /// No batch was in flight (a late answer to a call already given up).
    Ignored,
}

/// One chain's delivery state.
#[derive(Debug, Clone)]
pub struct Delivery {
    cfg: DeliveryConfig,
    pending: VecDeque<Vec<u8>>,
    /// When the oldest pending record was pushed.
    oldest_ms: Option<i64>,
    batch: Vec<Vec<u8>>,
    state: State,
    failures: u32,
    /// The current batch is a single record's stand-in.
    stand_in: bool,
    /// Send what waits without waiting for the flush interval (the configuration is going).
    draining: bool,
}

/// Whether a collector answer acknowledges: a `:status` of 200-299. None (no headers: the call
/// failed) or anything else does not.
pub fn is_ack(status: Option<&str>) -> bool {
    status
        .and_then(|s| s.trim().parse::<u16>().ok())
        .is_some_and(|s| (200..300).contains(&s))
}

/// Whether the collector refused the batch for what it is (413 too large, 400 unreadable), so
/// that resending it unchanged can never succeed.
pub fn is_refusal(status: Option<&str>) -> bool {
    status
        .and_then(|s| s.trim().parse::<u16>().ok())
        .is_some_and(|s| s == 413 || s == 400)
}

/// What stands in for a sealed record the collector refused alone: a small JSON object with the
/// record's `chain` (when it can be read), its length, the SHA-256 of its bytes and its first
/// [`STAND_IN_EXCERPT`] bytes. Its `kind` is `refused`, which no filter record has: the collector
/// keeps it as a `malformed` integrity record, and the chain's next record shows the gap.
pub fn stand_in(sealed: &[u8], status: Option<&str>) -> Vec<u8> {
    let chain = serde_json::from_slice::<serde_json::Value>(sealed)
        .ok()
        .and_then(|v| v.get("chain").cloned())
        .unwrap_or(serde_json::Value::Null);
    let excerpt = sealed.get(..STAND_IN_EXCERPT).unwrap_or(sealed);
    let body = serde_json::json!({
        // The stand-in's own shape, unchanged since v1 (not the sealed record's version).
        "v": 1,
        "kind": "refused",
        "chain": chain,
        "refused": {
            "status": status.and_then(|s| s.trim().parse::<u16>().ok()),
            "bytes": sealed.len(),
            "sha256": hex::encode(Sha256::digest(sealed)),
            "excerpt": String::from_utf8_lossy(excerpt),
        }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A batch body: the records' JSON, as one JSON array.
pub fn batch_body(records: &[Vec<u8>]) -> Vec<u8> {
    let len = records.iter().map(|r| r.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.push(b']');
    body
}

impl Delivery {
    pub fn new(cfg: DeliveryConfig) -> Delivery {
        Delivery {
            cfg,
            pending: VecDeque::new(),
            oldest_ms: None,
            batch: Vec::new(),
            state: State::Idle { retry_at: None },
            failures: 0,
            stand_in: false,
            draining: false,
        }
    }

    /// From now on, send whatever waits without waiting for the flush interval.
    pub fn drain_now(&mut self) {
        self.draining = true;
    }

    /// Nothing unacknowledged is left.
    pub fn is_empty(&self) -> bool {
        self.unacked() == 0
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.cfg
    }

    /// Adds a sealed record after every record pushed before it.
    pub fn push(&mut self, sealed: Vec<u8>, now: i64) {
        if self.pending.is_empty() {
            self.oldest_ms = Some(now);
        }
        self.pending.push_back(sealed);
    }

    /// How many more records the root context should take from its queue and seal now (at most
    /// two batches wait sealed; the rest stay in the queue, unsealed, outside the VM's memory).
    pub fn room(&self) -> usize {
        self.cfg
            .max_batch
            .saturating_mul(2)
            .saturating_sub(self.pending.len())
    }

    /// Records not yet acknowledged (waiting and in the current batch).
    pub fn unacked(&self) -> usize {
        self.pending.len() + self.batch.len()
    }

    /// Records in the current batch (in flight or waiting for its retry).
    pub fn batch_len(&self) -> usize {
        self.batch.len()
    }

    pub fn in_flight(&self) -> bool {
        matches!(self.state, State::InFlight { .. })
    }

    /// Consecutive failures of the current batch.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A batch body to send now, or None. The caller must dispatch it and then report the
    /// outcome with [`Delivery::on_response`] (or [`Delivery::on_dispatch_failed`]).
    /// `force` sends whatever waits without waiting for the flush interval (shutdown).
    pub fn poll(&mut self, now: i64, force: bool) -> Option<Vec<u8>> {
        match self.state {
            State::InFlight { since } => {
                let limit = self.cfg.timeout_ms.saturating_add(WATCHDOG_GRACE_MS);
                if now.saturating_sub(since) < i64::try_from(limit).unwrap_or(i64::MAX) {
                    return None;
                }
                // The host never answered: count it as a failure and wait for the retry.
                self.fail(now);
                return None;
            }
            State::Idle { retry_at: Some(at) } if now < at && !force => return None,
            State::Idle { .. } => {}
        }
        if self.batch.is_empty() {
            if self.pending.is_empty() {
                return None;
            }
            let waited = self.oldest_ms.map_or(0, |t| now.saturating_sub(t));
            let due = force
                || self.draining
                || self.pending.len() >= self.cfg.max_batch
                || waited >= i64::try_from(self.cfg.flush_interval_ms).unwrap_or(i64::MAX);
            if !due {
                return None;
            }
            // Up to maxBatch records and the byte limit (brackets and commas included); always
            // at least one record.
            let mut n = 0;
            let mut bytes = 2usize;
            for r in self.pending.iter().take(self.cfg.max_batch) {
                let add = r.len() + usize::from(n > 0);
                if n > 0 && bytes + add > self.cfg.max_batch_bytes {
                    break;
                }
                bytes += add;
                n += 1;
            }
            self.batch = self.pending.drain(..n).collect();
            self.stand_in = false;
            self.oldest_ms = (!self.pending.is_empty()).then_some(now);
        }
        self.state = State::InFlight { since: now };
        Some(batch_body(&self.batch))
    }

    /// The collector's answer to the batch in flight: its `:status`, None for a failed call.
    pub fn on_response(&mut self, status: Option<&str>, now: i64) -> Answer {
        if !self.in_flight() {
            return Answer::Ignored;
        }
        if is_ack(status) {
            let n = self.batch.len();
            self.batch.clear();
            self.failures = 0;
            self.stand_in = false;
            self.state = State::Idle { retry_at: None };
            return Answer::Acked(n);
        }
        if is_refusal(status) {
            // Resending the same bytes can never succeed: split, stand in, or give up — and go
            // on at once (no backoff: the collector answered).
            self.failures = 0;
            self.state = State::Idle { retry_at: None };
            let n = self.batch.len();
            if n > 1 {
                let back = self.batch.split_off(n / 2);
                let returned = back.len();
                for r in back.into_iter().rev() {
                    self.pending.push_front(r);
                }
                if self.oldest_ms.is_none() {
                    self.oldest_ms = Some(now);
                }
                return Answer::Split {
                    kept: self.batch.len(),
                    returned,
                };
            }
            if !self.stand_in {
                if let Some(record) = self.batch.first_mut() {
                    *record = stand_in(record, status);
                    self.stand_in = true;
                    return Answer::StandIn;
                }
            }
            self.batch.clear();
            self.stand_in = false;
            return Answer::GivenUp(n);
        }
        self.fail(now)
    }

    /// `dispatch_http_call` itself refused (unknown cluster, ...): a failure like any other.
    pub fn on_dispatch_failed(&mut self, now: i64) -> Answer {
        self.fail(now)
    }

    fn fail(&mut self, now: i64) -> Answer {
        self.failures = self.failures.saturating_add(1);
        let delay_ms = self.cfg.backoff_ms(self.failures);
        let at = now.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
        self.state = State::Idle { retry_at: Some(at) };
        Answer::Retry {
            failures: self.failures,
            delay_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_batch: usize) -> DeliveryConfig {
        DeliveryConfig {
            max_batch,
            flush_interval_ms: 1000,
            timeout_ms: 2000,
            backoff_base_ms: 250,
            backoff_cap_ms: 8000,
            max_batch_bytes: MAX_BATCH_BYTES,
        }
    }

    fn rec(i: u32) -> Vec<u8> {
        format!("{{\"seq\":{i}}}").into_bytes()
    }

    fn body_of(records: &[u32]) -> Vec<u8> {
        batch_body(&records.iter().map(|i| rec(*i)).collect::<Vec<_>>())
    }

    #[test]
    fn config_from_policy_and_backoff() {
        let audit: Audit = serde_json::from_value(serde_json::json!({
            "collector": {"cluster": "c", "timeoutMs": 1500}, "flushIntervalMs": 100, "maxBatch": 7
        }))
        .unwrap();
        let c = DeliveryConfig::from_policy(&audit);
        assert_eq!(
            (c.max_batch, c.flush_interval_ms, c.timeout_ms),
            (7, 100, 1500)
        );
        assert_eq!(c.tick_ms(), 100);
        assert_eq!(cfg(1).tick_ms(), 250);
        let c = cfg(1);
        let waits: Vec<u64> = (1..=8).map(|f| c.backoff_ms(f)).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(c.backoff_ms(0), 250);
        assert_eq!(c.backoff_ms(u32::MAX), 8000);
    }

    #[test]
    fn acks_only_on_2xx() {
        assert!(is_ack(Some("200")));
        assert!(is_ack(Some("204")));
        assert!(is_ack(Some(" 299 ")));
        for s in [
            None,
            Some(""),
            Some("199"),
            Some("300"),
            Some("409"),
            Some("503"),
            Some("x"),
        ] {
            assert!(!is_ack(s), "{s:?}");
        }
    }

    #[test]
    fn batch_bodies_are_json_arrays() {
        assert_eq!(batch_body(&[]), b"[]");
        assert_eq!(body_of(&[1, 2]), b"[{\"seq\":1},{\"seq\":2}]");
        let v: serde_json::Value = serde_json::from_slice(&body_of(&[1, 2, 3])).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
    }

    #[test]
    fn sends_a_full_batch_at_once_and_a_partial_one_after_the_interval() {
        let mut d = Delivery::new(cfg(3));
        assert_eq!(d.poll(0, false), None, "nothing waits");
        d.push(rec(0), 0);
        d.push(rec(1), 10);
        assert_eq!(d.poll(500, false), None, "partial batch, interval not over");
        d.push(rec(2), 600);
        d.push(rec(3), 600);
        assert_eq!(
            d.poll(600, false),
            Some(body_of(&[0, 1, 2])),
            "a full batch goes at once"
        );
        assert!(d.in_flight());
        assert_eq!(d.batch_len(), 3);
        assert_eq!(d.unacked(), 4);
        assert_eq!(d.poll(700, false), None, "one batch in flight at a time");
        assert_eq!(d.on_response(Some("200"), 700), Answer::Acked(3));
        assert_eq!(d.unacked(), 1);
        // The leftover's clock started when the batch was cut.
        assert_eq!(d.poll(1500, false), None);
        assert_eq!(d.poll(1600, false), Some(body_of(&[3])));
        assert_eq!(d.on_response(Some("201"), 1600), Answer::Acked(1));
        assert_eq!(d.unacked(), 0);
        assert_eq!(d.poll(9000, false), None);
    }

    #[test]
    fn force_flushes_without_waiting() {
        let mut d = Delivery::new(cfg(10));
        d.push(rec(0), 0);
        assert_eq!(d.poll(1, false), None);
        assert_eq!(d.poll(1, true), Some(body_of(&[0])));
    }

    #[test]
    fn failures_keep_the_batch_and_back_off_until_acked() {
        let mut d = Delivery::new(cfg(2));
        d.push(rec(0), 0);
        d.push(rec(1), 0);
        d.push(rec(2), 0);
        assert_eq!(d.poll(0, false), Some(body_of(&[0, 1])));
        // A failed call: zero headers.
        assert_eq!(
            d.on_response(None, 100),
            Answer::Retry {
                failures: 1,
                delay_ms: 250
            }
        );
        assert!(!d.in_flight());
        assert_eq!(d.poll(349, false), None, "backing off");
        // The same batch again, not the next records.
        assert_eq!(d.poll(350, false), Some(body_of(&[0, 1])));
        assert_eq!(
            d.on_response(Some("503"), 400),
            Answer::Retry {
                failures: 2,
                delay_ms: 500
            }
        );
        assert_eq!(d.poll(899, false), None);
        assert_eq!(d.poll(900, false), Some(body_of(&[0, 1])));
        assert_eq!(
            d.on_dispatch_failed(900),
            Answer::Retry {
                failures: 3,
                delay_ms: 1000
            }
        );
        assert_eq!(d.failures(), 3);
        assert_eq!(d.poll(1900, false), Some(body_of(&[0, 1])));
        assert_eq!(d.on_response(Some("200"), 1950), Answer::Acked(2));
        assert_eq!(d.failures(), 0);
        assert_eq!(d.unacked(), 1);
        // The leftover has waited since the batch was cut (at 0): it is due.
        assert_eq!(d.poll(1950, false), Some(body_of(&[2])));
    }

    #[test]
    fn a_call_that_never_answers_is_given_up_and_retried() {
        let mut d = Delivery::new(cfg(1));
        d.push(rec(0), 0);
        assert!(d.poll(0, false).is_some());
        assert_eq!(d.poll(3999, false), None, "still within timeout + grace");
        assert_eq!(d.poll(4000, false), None, "given up; now backing off");
        assert!(!d.in_flight());
        assert_eq!(d.failures(), 1);
        // The late answer to the abandoned call changes nothing.
        assert_eq!(d.on_response(Some("200"), 4100), Answer::Ignored);
        assert_eq!(d.unacked(), 1);
        assert_eq!(d.poll(4250, false), Some(body_of(&[0])));
    }

    #[test]
    fn room_bounds_what_is_sealed_ahead() {
        let mut d = Delivery::new(cfg(2));
        assert_eq!(d.room(), 4);
        for i in 0..3 {
            d.push(rec(i), 0);
        }
        assert_eq!(d.room(), 1);
        assert!(d.poll(0, false).is_some());
        assert_eq!(
            d.room(),
            3,
            "the batch in flight no longer counts against room"
        );
        assert_eq!(d.config().max_batch, 2);
    }

    fn big(i: u32, len: usize) -> Vec<u8> {
        format!("{{\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(len)).into_bytes()
    }

    #[test]
    fn a_batch_never_exceeds_the_byte_limit_and_always_holds_one_record() {
        let mut c = cfg(200);
        c.max_batch_bytes = 1000;
        let mut d = Delivery::new(c);
        for i in 0..10 {
            d.push(big(i, 300), 0);
        }
        let body = d.poll(0, true).unwrap();
        assert!(body.len() <= 1000, "{}", body.len());
        assert_eq!(d.batch_len(), 3);
        assert_eq!(d.on_response(Some("200"), 1), Answer::Acked(3));
        // A record larger than the limit alone still goes, alone.
        let mut c = cfg(200);
        c.max_batch_bytes = 100;
        let mut d = Delivery::new(c);
        d.push(big(0, 500), 0);
        d.push(big(1, 10), 0);
        assert_eq!(d.poll(0, true), Some(batch_body(&[big(0, 500)])));
        // The shared constant: the collector's default body limit is the filter's batch cap.
        assert_eq!(
            DeliveryConfig::from_policy(
                &serde_json::from_value(serde_json::json!({
                    "collector": {"cluster": "c"}
                }))
                .unwrap()
            )
            .max_batch_bytes,
            MAX_BATCH_BYTES
        );
    }

    #[test]
    fn a_413_or_400_splits_the_batch_until_the_refused_record_is_alone() {
        for refusal in ["413", "400"] {
            let mut d = Delivery::new(cfg(4));
            for i in 0..5 {
                d.push(rec(i), 0);
            }
            assert_eq!(d.poll(0, true), Some(body_of(&[0, 1, 2, 3])));
            assert_eq!(
                d.on_response(Some(refusal), 10),
                Answer::Split {
                    kept: 2,
                    returned: 2
                }
            );
            assert_eq!(
                d.failures(),
                0,
                "a refusal is not a failure to back off from"
            );
            // The first half again at once, then the rest in order.
            assert_eq!(d.poll(10, false), Some(body_of(&[0, 1])));
            assert_eq!(d.on_response(Some("200"), 11), Answer::Acked(2));
            assert_eq!(d.poll(11, true), Some(body_of(&[2, 3, 4])));
            assert_eq!(
                d.on_response(Some(refusal), 12),
                Answer::Split {
                    kept: 1,
                    returned: 2
                }
            );
            assert_eq!(d.poll(12, false), Some(body_of(&[2])));
            // Record 2 is refused alone: its stand-in goes in its place, at once.
            assert_eq!(d.on_response(Some(refusal), 13), Answer::StandIn);
            let sent = d.poll(13, false).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
            assert_eq!(v[0]["kind"], "refused");
            assert_eq!(v[0]["refused"]["bytes"], rec(2).len());
            assert_eq!(d.on_response(Some("200"), 14), Answer::Acked(1));
            // Later records keep flowing.
            assert_eq!(d.poll(14, true), Some(body_of(&[3, 4])));
            assert_eq!(d.on_response(Some("200"), 15), Answer::Acked(2));
            assert!(d.is_empty());
        }
    }

    #[test]
    fn a_refused_stand_in_is_given_up_never_retried_forever() {
        let mut d = Delivery::new(cfg(4));
        d.push(rec(0), 0);
        d.push(rec(1), 0);
        assert!(d.poll(0, true).is_some());
        assert_eq!(
            d.on_response(Some("413"), 1),
            Answer::Split {
                kept: 1,
                returned: 1
            }
        );
        assert!(d.poll(1, false).is_some());
        assert_eq!(d.on_response(Some("413"), 2), Answer::StandIn);
        assert!(d.poll(2, false).is_some());
        assert_eq!(d.on_response(Some("413"), 3), Answer::GivenUp(1));
        assert_eq!(d.poll(3, true), Some(body_of(&[1])));
        // A collector refusing everything: a bounded number of calls, every record given up.
        let mut d = Delivery::new(cfg(8));
        for i in 0..8 {
            d.push(rec(i), 0);
        }
        let mut calls = 0;
        let mut given_up = 0;
        let mut now = 0;
        while !d.is_empty() {
            now += 1;
            assert!(d.poll(now, true).is_some());
            calls += 1;
            if let Answer::GivenUp(n) = d.on_response(Some("400"), now) {
                given_up += n;
            }
            assert!(calls < 100, "retried forever");
        }
        assert_eq!(given_up, 8);
        // Splits re-merge with what waits, so each record is cut out in at most log2(8) + 1
        // splits, plus its own refusal and its stand-in's.
        assert!(calls <= 8 * (3 + 1 + 2), "{calls}");
    }

    #[test]
    fn a_5xx_still_keeps_the_batch_whole_for_a_retry() {
        let mut d = Delivery::new(cfg(4));
        d.push(rec(0), 0);
        d.push(rec(1), 0);
        assert!(d.poll(0, true).is_some());
        assert!(matches!(
            d.on_response(Some("503"), 1),
            Answer::Retry { .. }
        ));
        assert_eq!(d.poll(1000, false), Some(body_of(&[0, 1])));
    }

    /// The collector's per-source garbage limit answers 429: the batch is kept whole, unsplit,
    /// and resent after the backoff (a rate limit never loses a record).
    #[test]
    fn a_429_is_retry_later_never_a_split_or_a_drop() {
        let mut d = Delivery::new(cfg(4));
        d.push(rec(0), 0);
        d.push(rec(1), 0);
        assert!(d.poll(0, true).is_some());
        assert!(!is_refusal(Some("429")));
        let Answer::Retry { delay_ms, .. } = d.on_response(Some("429"), 1) else {
            panic!("429 must be a retry");
        };
        assert!(delay_ms > 0);
        assert_eq!(d.poll(1, false), None, "waits for the backoff");
        assert_eq!(d.poll(1 + delay_ms as i64, false), Some(body_of(&[0, 1])));
    }

    #[test]
    fn stand_in_names_the_chain_position_and_hash_and_is_bounded() {
        let sealed = format!(
            "{{\"chain\":{{\"id\":\"c1\",\"seq\":7}},\"pad\":\"{}\"}}",
            "y".repeat(100_000)
        )
        .into_bytes();
        let s = stand_in(&sealed, Some("413"));
        assert!(s.len() < 2 * STAND_IN_EXCERPT + 400, "{}", s.len());
        let v: serde_json::Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["chain"]["seq"], 7);
        assert_eq!(v["refused"]["status"], 413);
        assert_eq!(v["refused"]["bytes"], sealed.len());
        assert_eq!(v["refused"]["sha256"].as_str().unwrap().len(), 64);
        // Garbage still makes a stand-in (no chain).
        let v: serde_json::Value = serde_json::from_slice(&stand_in(b"\xff\x00", None)).unwrap();
        assert_eq!(v["chain"], serde_json::Value::Null);
    }

    #[test]
    fn draining_sends_without_waiting_for_the_interval_but_keeps_backoff() {
        let mut d = Delivery::new(cfg(10));
        d.push(rec(0), 0);
        assert_eq!(d.poll(1, false), None);
        d.drain_now();
        assert_eq!(d.poll(1, false), Some(body_of(&[0])));
        assert!(matches!(d.on_response(None, 2), Answer::Retry { .. }));
        assert_eq!(d.poll(3, false), None, "backing off");
        assert!(d.poll(300, false).is_some());
    }
}
