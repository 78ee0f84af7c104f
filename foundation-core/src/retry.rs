//! Retry policy: how many attempts, and how long to back off between them (exponential, capped,
//! with jitter so that many clients failing together do not retry together).

use std::time::Duration;

/// Default attempts in all (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default backoff before the second attempt.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default cap on any one backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How backoffs are randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly the computed backoff.
    None,
    /// Uniform in [0, backoff] ("full jitter"): spreads retries the most.
    Full,
    /// Uniform in [backoff/2, backoff]: spread, but never much shorter than computed.
    #[default]
    Equal,
}

/// Attempts and backoff between them: backoff before attempt `n + 1` is
/// `min(initial × multiplier^(n−1), max)`, then jittered.
///
/// ```
/// use std::time::Duration;
/// use foundation_core::retry::{Jitter, RetryPolicy};
/// let policy = RetryPolicy::new(4).backoff(Duration::from_millis(100), Duration::from_secs(1)).jitter(Jitter::None);
/// assert_eq!(policy.delay_after(1), Duration::from_millis(100));
/// assert_eq!(policy.delay_after(2), Duration::from_millis(200));
/// assert_eq!(policy.delay_after(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1 (1 means no retry). Default [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Backoff before the second attempt. Default [`DEFAULT_INITIAL_BACKOFF`].
    pub initial_backoff: Duration,
    /// Cap on one backoff. Default [`DEFAULT_MAX_BACKOFF`].
    pub max_backoff: Duration,
    /// Growth per attempt, at least 1. Default 2.
    pub multiplier: f64,
    /// Randomisation. Default [`Jitter::Equal`].
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            multiplier: 2.0,
            jitter: Jitter::default(),
        }
    }
}

impl RetryPolicy {
    /// The default policy with this many attempts in all (at least 1).
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy { max_attempts: max_attempts.max(1), ..Default::default() }
    }

    /// No retry: one attempt.
    pub fn none() -> Self {
        Self::new(1)
    }

    /// Sets the first backoff and the cap.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Whether another attempt may follow attempt number `attempt` (1-based).
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// How long to wait after failed attempt number `attempt` (1-based) before the next one.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.max(1.0).powi(attempt.saturating_sub(1).min(64) as i32);
        let base = self.initial_backoff.as_secs_f64() * exp;
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jittered = match self.jitter {
            Jitter::None => capped,
            Jitter::Full => capped * crate::random::unit(),
            Jitter::Equal => capped * (0.5 + 0.5 * crate::random::unit()),
        };
        Duration::from_secs_f64(jittered.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jitter_stays_in_range() {
        let p = RetryPolicy::new(10)
            .backoff(Duration::from_millis(100), Duration::from_millis(350))
            .jitter(Jitter::None);
        let d: Vec<u128> = (1..=4).map(|a| p.delay_after(a).as_millis()).collect();
        assert_eq!(d, [100, 200, 350, 350]);
        assert!(p.allows_another(9) && !p.allows_another(10));
        assert!(!RetryPolicy::none().allows_another(1));

        let full = p.clone().jitter(Jitter::Full);
        let equal = p.clone().jitter(Jitter::Equal);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..1000 {
            let f = full.delay_after(2);
            assert!(f <= Duration::from_millis(200));
            let e = equal.delay_after(2);
            assert!(e >= Duration::from_millis(100) && e <= Duration::from_millis(200), "{e:?}");
            distinct.insert(e.as_micros());
        }
        assert!(distinct.len() > 100, "jitter actually varies");
    }
}
