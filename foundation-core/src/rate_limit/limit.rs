//! What one dimension of a limiter allows.

use std::time::Duration;

/// One limit: so much per period (a token bucket), or so many at once (a concurrency limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub(crate) name: String,
    pub(crate) amount: u64,
    pub(crate) burst: u64,
    /// `None` for a concurrency limit.
    pub(crate) period: Option<Duration>,
}

impl Limit {
    /// `amount` per `period`, refilled continuously; up to `amount` may be spent at once (see
    /// [`with_burst`](Self::with_burst)).
    pub fn per(name: impl Into<String>, amount: u64, period: Duration) -> Self {
        Limit { name: name.into(), amount, burst: amount, period: Some(period) }
    }

    /// `amount` per second.
    pub fn per_second(name: impl Into<String>, amount: u64) -> Self {
        Self::per(name, amount, Duration::from_secs(1))
    }

    /// `amount` per minute (requests or tokens per minute).
    pub fn per_minute(name: impl Into<String>, amount: u64) -> Self {
        Self::per(name, amount, Duration::from_secs(60))
    }

    /// `amount` per day.
    pub fn per_day(name: impl Into<String>, amount: u64) -> Self {
        Self::per(name, amount, Duration::from_secs(86_400))
    }

    /// At most `amount` held at once: what a permit takes is given back when it is dropped.
    pub fn concurrent(name: impl Into<String>, amount: u64) -> Self {
        Limit { name: name.into(), amount, burst: amount, period: None }
    }

    /// The most that can be spent at once after a quiet spell (default: the whole `amount`).
    /// A smaller burst spreads use over the period.
    pub fn with_burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }

    /// The dimension's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
