//! When a failed outbox row is tried again, and when it is given up.
//!
//! A fault of the database (a lock, a revoked grant, a missing table, a failover) is retried
//! with growing delays over minutes, so that a fault of a few seconds loses nothing and needs
//! no manual retry. A row that fails on its own (a constraint, a value its column refuses)
//! gets fewer attempts, spaced the same way. Either way the row, its attempts, its last
//! error and its next attempt are in `event_outbox`, and a row given up is a dead letter
//! (`dead_at`).

use std::time::Duration;

use notifyscope_store::ErrorClass;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySchedule {
    /// The wait after the first failed attempt; each further one doubles it.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Attempts for a fault of the database (see [`ErrorClass::is_transient`]).
    pub transient_attempts: i32,
    /// Attempts for a row that fails on its own.
    pub row_attempts: i32,
}

impl Default for RetrySchedule {
    /// 1, 2, 4, 8, 16, 32 s, then a minute: a database fault is given about six minutes
    /// (12 attempts), a row that fails on its own 15 s (5 attempts).
    fn default() -> Self {
        RetrySchedule {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            transient_attempts: 12,
            row_attempts: 5,
        }
    }
}

impl RetrySchedule {
    /// The wait after the `failed`-th failed attempt (1-based).
    pub fn delay_after(&self, failed: i32) -> Duration {
        let doublings = u32::try_from(failed.saturating_sub(1)).unwrap_or(0).min(30);
        self.first_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// How many attempts a row gets when its errors are of `class`; `None`: the row's
    /// payload broke the contract, which no retry cures.
    pub fn attempts_for(&self, class: Option<ErrorClass>) -> i32 {
        match class {
            Some(c) if c.is_transient() => self.transient_attempts.max(1),
            Some(_) => self.row_attempts.max(1),
            None => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let s = RetrySchedule::default();
        let delays: Vec<u64> = (1..=8).map(|n| s.delay_after(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        // A database fault is given minutes before its rows are given up.
        let transient_span: Duration = (1..s.transient_attempts).map(|n| s.delay_after(n)).sum();
        assert!(transient_span >= Duration::from_secs(5 * 60));
    }

    #[test]
    fn attempts_by_class() {
        let s = RetrySchedule::default();
        assert_eq!(s.attempts_for(Some(ErrorClass::Permission)), 12);
        assert_eq!(s.attempts_for(Some(ErrorClass::Constraint)), 5);
        assert_eq!(s.attempts_for(None), 1);
    }
}
