//! A circuit breaker: after repeated failures, stop calling for a while, then let one probe
//! through to see whether the other side has recovered.
//!
//! - **Closed** (normal): calls go through; `failure_threshold` failures in a row open it.
//! - **Open**: calls are refused at once with the time left ([`BreakerOpen`]), for `open_for`.
//! - **Half-open**: after `open_for`, one probe at a time goes through; a success closes the
//!   breaker, a failure opens it again for another `open_for`.
//!
//! A call is an [`Attempt`]: report [`Attempt::success`] or [`Attempt::failure`]; an attempt
//! dropped without a report (cancelled, or an error that says nothing about the other side's
//! health, such as a rejected request) counts as neither, and frees the half-open probe slot.
//!
//! Written here rather than on `recloser`: a router must ask "is this provider open?" to pick
//! the next one in its chain without calling it ([`CircuitBreaker::state`]), `recloser` does not
//! expose its state; and time here is tokio's, so tests run on a paused clock.
//!
//! ```
//! use std::time::Duration;
//! use foundation_core::circuit_breaker::{BreakerConfig, BreakerState, CircuitBreaker};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let breaker = CircuitBreaker::new(BreakerConfig { failure_threshold: 2, open_for: Duration::from_secs(5) });
//! breaker.try_call().unwrap().failure();
//! breaker.try_call().unwrap().failure();
//! assert!(matches!(breaker.state(), BreakerState::Open { .. }));
//! assert!(breaker.try_call().is_err());
//! # });
//! ```

use crate::sync::MutexRecover;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Default failures in a row that open a breaker.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default time a breaker stays open before letting a probe through.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker. Default [`DEFAULT_FAILURE_THRESHOLD`].
    pub failure_threshold: u32,
    /// How long it stays open before a probe is let through. Default [`DEFAULT_OPEN_FOR`]: a
    /// provider that fails 5 times in a row is left alone for 30 s, then tried once.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: DEFAULT_FAILURE_THRESHOLD, open_for: DEFAULT_OPEN_FOR }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; this many failures in a row so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls are refused for this long still.
    Open {
        /// Time until a probe is allowed.
        retry_in: Duration,
    },
    /// A probe may go through (or one is in flight).
    HalfOpen {
        /// Whether a probe is in flight now.
        probing: bool,
    },
}

/// A call refused because the breaker is open (or its probe is in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; next probe in {retry_in:?}")]
pub struct BreakerOpen {
    /// When a call may be tried again (zero: when the probe in flight reports).
    pub retry_in: Duration,
}

/// A circuit breaker. Cheap to clone (clones share the state).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker { config, state: Arc::new(Mutex::new(Inner::Closed { failures: 0 })) }
    }

    /// Its configuration.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock_or_recover()
    }

    /// Where it stands now.
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        Self::advance(&mut inner);
        match *inner {
            Inner::Closed { failures } => BreakerState::Closed { failures },
            Inner::Open { until } => BreakerState::Open { retry_in: until - Instant::now() },
            Inner::HalfOpen { probing } => BreakerState::HalfOpen { probing },
        }
    }

    /// Whether a call would be let through now.
    pub fn allows(&self) -> bool {
        matches!(self.state(), BreakerState::Closed { .. } | BreakerState::HalfOpen { probing: false })
    }

    fn advance(inner: &mut Inner) {
        if let Inner::Open { until } = *inner
            && Instant::now() >= until
        {
            *inner = Inner::HalfOpen { probing: false };
        }
    }

    /// Lets a call through, or refuses it while open (or while the half-open probe is out).
    pub fn try_call(&self) -> Result<Attempt, BreakerOpen> {
        let mut inner = self.lock();
        Self::advance(&mut inner);
        match &mut *inner {
            Inner::Closed { .. } => Ok(Attempt { breaker: self.clone(), probe: false, reported: false }),
            Inner::Open { until } => Err(BreakerOpen { retry_in: *until - Instant::now() }),
            Inner::HalfOpen { probing: true } => Err(BreakerOpen { retry_in: Duration::ZERO }),
            Inner::HalfOpen { probing } => {
                *probing = true;
                Ok(Attempt { breaker: self.clone(), probe: true, reported: false })
            }
        }
    }

    fn report(&self, ok: bool, probe: bool) {
        let mut inner = self.lock();
        let open = Inner::Open { until: Instant::now() + self.config.open_for };
        *inner = match (&*inner, ok) {
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) if failures + 1 < self.config.failure_threshold => {
                Inner::Closed { failures: failures + 1 }
            }
            (Inner::Closed { .. }, false) => open,
            (Inner::HalfOpen { .. }, false) if probe => open,
            // A late report from a call let through before the breaker opened: it is open already.
            (Inner::Open { .. } | Inner::HalfOpen { .. }, false) => return,
        };
    }
}

/// One call let through a breaker: report how it went.
#[derive(Debug)]
#[must_use = "report the outcome with success() or failure()"]
pub struct Attempt {
    breaker: CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl Attempt {
    /// The call succeeded: the breaker closes (and its failure count resets).
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.report(true, self.probe);
    }

    /// The call failed in a way that says the other side is unwell (a 5xx, a timeout, a reset).
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.report(false, self.probe);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            // Neither outcome: the probe slot is free for the next call.
            let mut inner = self.breaker.lock();
            if let Inner::HalfOpen { probing } = &mut *inner {
                *probing = false;
            }
        }
    }
}
