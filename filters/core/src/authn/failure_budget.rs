//! The failed-signature budget: a flood of forged tokens (a known `kid`, a bad signature, each
//! one new) would otherwise make every worker pay a full signature check per request and starve
//! valid traffic. Each failed check spends one unit of a token bucket; while the bucket is
//! empty, tokens that would need a signature check are shed (429, `Retry-After`) before the
//! check. Cached tokens never reach the bucket, so sessions in progress keep working; a
//! successful check spends nothing, so ordinary sign-ins do not drain it.

use crate::policy::SignatureFailureBudget;

#[derive(Debug, Clone)]
pub struct FailureBudget {
    per_second: u64,
    burst: u64,
    available: u64,
    /// The second of the last refill.
    refilled_at: u64,
}

impl FailureBudget {
    pub fn new(config: SignatureFailureBudget) -> FailureBudget {
        FailureBudget {
            per_second: u64::from(config.per_second),
            burst: u64::from(config.burst),
            available: u64::from(config.burst),
            refilled_at: 0,
        }
    }

    fn refill(&mut self, now: u64) {
        if now > self.refilled_at {
            let earned = (now - self.refilled_at).saturating_mul(self.per_second);
            self.available = self.available.saturating_add(earned).min(self.burst);
            self.refilled_at = now;
        }
    }

    /// May a signature be checked at `now` (unix seconds)? Always, when the budget is off.
    pub fn allows_check(&mut self, now: u64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        self.refill(now);
        self.available > 0
    }

    /// A signature check failed at `now`.
    pub fn spend(&mut self, now: u64) {
        if self.per_second == 0 {
            return;
        }
        self.refill(now);
        self.available = self.available.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_second: u32, burst: u32) -> FailureBudget {
        FailureBudget::new(SignatureFailureBudget { per_second, burst })
    }

    #[test]
    fn the_burst_is_spent_then_checks_stop_until_a_refill() {
        let mut b = budget(2, 3);
        for _ in 0..3 {
            assert!(b.allows_check(100));
            b.spend(100);
        }
        assert!(!b.allows_check(100));
        // One second later: two more failures may be paid for, not three.
        assert!(b.allows_check(101));
        b.spend(101);
        b.spend(101);
        assert!(!b.allows_check(101));
    }

    #[test]
    fn a_long_quiet_spell_refills_only_up_to_the_burst() {
        let mut b = budget(10, 4);
        for _ in 0..4 {
            b.spend(100);
        }
        assert!(!b.allows_check(100));
        assert!(b.allows_check(10_000));
        for _ in 0..4 {
            b.spend(10_000);
        }
        assert!(!b.allows_check(10_000));
    }

    #[test]
    fn zero_per_second_means_no_budget() {
        let mut b = budget(0, 0);
        for _ in 0..1_000 {
            b.spend(5);
        }
        assert!(b.allows_check(5));
    }

    #[test]
    fn a_clock_going_backwards_earns_nothing() {
        let mut b = budget(5, 1);
        b.spend(100);
        assert!(!b.allows_check(99));
        assert!(!b.allows_check(100));
        assert!(b.allows_check(101));
    }
}
