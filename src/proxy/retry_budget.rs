//! A retry budget: retries allowed as a share of recent requests, plus a small floor, so
//! retries cannot multiply an outage (linkerd's and Finagle's budget, tower's `TpsBudget`).
//!
//! Each request deposits a fraction of a retry; each retry withdraws one whole retry.
//! Deposits and withdrawals are kept per tenth of the window and forgotten when their
//! tenth leaves it; the floor is a constant reserve of `min_per_sec × window` retries
//! always added to the balance, so a quiet route can still retry. Atomics only: the
//! tenth is rotated by whichever caller first notices it has ended.

use std::sync::atomic::{
    AtomicI64, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Release,
};
use std::time::{Duration, Instant};

/// The balance one retry costs; a request deposits `percent × UNIT / 100`.
const UNIT: i64 = 1000;
/// How many parts the window is kept in.
const SLOTS: usize = 10;
/// The most a request may earn: ten retries.
const MAX_PERCENT: u32 = 1000;

/// Retries allowed as a share of requests over a sliding window.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    start: Instant,
    /// One tenth of the window, in nanoseconds (at least 1).
    slot_nanos: u64,
    /// The tenth `writer` belongs to, counted from `start`.
    generation: AtomicU64,
    /// Deposits and withdrawals of the current tenth.
    writer: AtomicI64,
    /// Those of past tenths, by generation modulo [`SLOTS`].
    slots: [AtomicI64; SLOTS],
    /// What a request deposits.
    deposit: i64,
    /// The floor: `min_per_sec × window` retries, always in the balance.
    reserve: i64,
}

impl Default for RetryBudget {
    /// 20 % of requests over 10 s, and at least 3 retries a second.
    fn default() -> RetryBudget {
        RetryBudget::new(20, 3, Duration::from_secs(10))
    }
}

impl RetryBudget {
    /// A budget allowing `percent` retries per 100 requests (up to 1000) over `window`,
    /// plus `min_per_sec` retries a second whatever the traffic.
    pub(crate) fn new(percent: u32, min_per_sec: u32, window: Duration) -> RetryBudget {
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let window_millis = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        RetryBudget {
            start: Instant::now(),
            slot_nanos: (window_nanos / SLOTS as u64).max(1),
            generation: AtomicU64::new(0),
            writer: AtomicI64::new(0),
            slots: [const { AtomicI64::new(0) }; SLOTS],
            deposit: i64::from(percent.min(MAX_PERCENT)) * UNIT / 100,
            // UNIT per retry × min_per_sec × seconds = min_per_sec × milliseconds.
            reserve: i64::from(min_per_sec).saturating_mul(window_millis),
        }
    }

    /// Counts one original request (not a retry).
    pub(crate) fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// [`RetryBudget::deposit`] at a given time.
    pub(crate) fn deposit_at(&self, now: Instant) {
        self.rotate(now);
        self.writer.fetch_add(self.deposit, AcqRel);
    }

    /// Takes one retry from the budget; false when it is spent (then do not retry).
    pub(crate) fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }

    /// [`RetryBudget::withdraw`] at a given time.
    pub(crate) fn withdraw_at(&self, now: Instant) -> bool {
        self.rotate(now);
        // Concurrent withdrawals may overdraw by a retry or two; no lock is worth that.
        if self.balance() < UNIT {
            return false;
        }
        self.writer.fetch_sub(UNIT, AcqRel);
        true
    }

    fn balance(&self) -> i64 {
        self.slots.iter().map(|slot| slot.load(Acquire)).fold(
            self.reserve.saturating_add(self.writer.load(Acquire)),
            i64::saturating_add,
        )
    }

    /// Commits the current tenth and forgets those that left the window, once per tenth,
    /// by the caller that wins the generation's compare-and-swap.
    fn rotate(&self, now: Instant) {
        let elapsed =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let generation = elapsed / self.slot_nanos;
        let current = self.generation.load(Acquire);
        if generation <= current
            || self
                .generation
                .compare_exchange(current, generation, AcqRel, Acquire)
                .is_err()
        {
            return;
        }
        let committed = self.writer.swap(0, AcqRel);
        let passed = generation - current;
        if passed >= SLOTS as u64 {
            // The whole window went by: everything it held is forgotten.
            self.slots.iter().for_each(|slot| slot.store(0, Release));
            return;
        }
        self.slots[slot_of(current)].store(committed, Release);
        for skipped in current + 1..=generation {
            self.slots[slot_of(skipped)].store(0, Release);
        }
    }
}

/// Where a generation's total is kept.
fn slot_of(generation: u64) -> usize {
    // Below SLOTS, so the cast cannot truncate.
    (generation % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many retries the budget grants in a row at `now`.
    fn drain(budget: &RetryBudget, now: Instant) -> usize {
        (0..100_000).take_while(|_| budget.withdraw_at(now)).count()
    }

    fn deposit(budget: &RetryBudget, requests: usize, now: Instant) {
        for _ in 0..requests {
            budget.deposit_at(now);
        }
    }

    #[test]
    fn allows_a_fifth_of_requests_plus_the_floor() {
        let budget = RetryBudget::default();
        let now = Instant::now();
        deposit(&budget, 1000, now);
        // 20 % of 1000, plus 3 a second over 10 s.
        assert_eq!(drain(&budget, now), 200 + 30);
        assert!(!budget.withdraw_at(now));
        // Each further request earns a fifth of a retry.
        deposit(&budget, 5, now);
        assert_eq!(drain(&budget, now), 1);
    }

    #[test]
    fn a_quiet_route_can_still_retry_a_little() {
        let budget = RetryBudget::default();
        let now = Instant::now();
        assert_eq!(drain(&budget, now), 30);
        // Spent retries are remembered for the window, then forgotten.
        assert_eq!(drain(&budget, now + Duration::from_secs(5)), 0);
        assert_eq!(drain(&budget, now + Duration::from_secs(11)), 30);
    }

    #[test]
    fn requests_leave_the_window_a_tenth_at_a_time() {
        let budget = RetryBudget::new(20, 0, Duration::from_secs(10));
        let t0 = budget.start;
        deposit(&budget, 100, t0);
        deposit(&budget, 100, t0 + Duration::from_secs(5));
        // Both halves count at 9 s; at 10 s the first has left the window.
        let t9 = t0 + Duration::from_millis(9_500);
        assert_eq!(budget.balance_at(t9), 40 * UNIT);
        let t10 = t0 + Duration::from_millis(10_500);
        assert_eq!(budget.balance_at(t10), 20 * UNIT);
        assert_eq!(budget.balance_at(t0 + Duration::from_secs(16)), 0);
    }

    #[test]
    fn odd_settings_neither_panic_nor_overflow() {
        let now = Instant::now();
        let none = RetryBudget::new(0, 0, Duration::ZERO);
        deposit(&none, 100, now);
        assert!(!none.withdraw_at(now));
        assert!(!none.withdraw_at(now + Duration::from_secs(1)));
        let huge = RetryBudget::new(u32::MAX, u32::MAX, Duration::MAX);
        huge.deposit_at(now);
        assert!(huge.withdraw_at(now + Duration::from_secs(1 << 40)));
        let budget = RetryBudget::default();
        assert!(budget.withdraw());
        budget.deposit();
    }

    impl RetryBudget {
        fn balance_at(&self, now: Instant) -> i64 {
            self.rotate(now);
            self.balance() - self.reserve
        }
    }
}
