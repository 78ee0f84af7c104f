//! A rate limiter over several limits at once (requests and tokens per minute, requests per
//! day, requests in flight) that waits rather than fails.
//!
//! - An acquisition names its cost in every dimension, in the order the limits were given
//!   (`[1, 500]`: one request, 500 estimated tokens) and is granted only when **every**
//!   dimension can pay: all or nothing.
//! - [`RateLimiter::try_acquire`] answers at once, with the time to wait if it is a no;
//!   [`RateLimiter::acquire`] waits (backpressure), **first come first served**: a large request
//!   at the head of the queue is not overtaken by small ones. Waiting is cancel-safe: a waiter
//!   that is dropped or times out has paid nothing and leaves the queue.
//! - After the call, [`Permit::settle`] replaces the estimate with the real cost (refunding or
//!   charging the difference); concurrency limits are given back when the permit is dropped.
//! - What a provider says overrides what we believe: [`RateLimiter::observe_remaining`] (from
//!   `x-ratelimit-remaining-*` headers) and [`RateLimiter::pause_for`] (`retry-after`), or
//!   both from a response's headers at once with [`RateLimiter::apply_headers`].
//!
//! Written here rather than on `governor`: a GCRA cell per dimension cannot reserve across
//! dimensions atomically (a grant in one cannot be undone when the next refuses), has no refund
//! for settlements, cannot be corrected from response headers, and its waiting is not FIFO.
//! This is one mutex around a few floating-point buckets (see `docs/BENCHMARKS.md` for its
//! cost).
//!
//! ```
//! use std::time::Duration;
//! use foundation_core::rate_limit::{Limit, RateLimiter};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let limiter = RateLimiter::new([Limit::per_minute("requests", 600), Limit::per_minute("tokens", 40_000)])?;
//! let mut permit = limiter.acquire(&[1, 1_200], Some(Duration::from_secs(30))).await?;
//! // ... call the model; it reports 950 tokens used:
//! permit.settle(&[1, 950])?;
//! assert!(limiter.available()[1].1 > 38_000.0);
//! # Ok::<(), foundation_core::rate_limit::RateLimitError>(())
//! # }).unwrap();
//! ```

mod bucket;
mod headers;
mod limit;
mod profile;

use crate::sync::MutexRecover;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use bucket::{Bucket, Verdict};
pub use headers::{HeaderReport, parse_duration};
pub use limit::Limit;
pub use profile::{ProviderLimits, TokenCost};

/// The longest a provider can pause a limiter ([`RateLimiter::pause_for`], `retry-after`):
/// five minutes. A longer `retry-after` is cut to this; the limiter then tries again, and a
/// provider that still refuses pauses it again.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);

/// The "dimension" that blocks while the limiter is paused by [`RateLimiter::pause_for`].
const PAUSED: usize = usize::MAX;
/// What a waiter behind others in the queue is waiting for.
const QUEUED: usize = usize::MAX - 1;

/// The most dimensions one limiter has (costs are kept inline, without allocating).
pub const MAX_DIMENSIONS: usize = 8;

/// Why a permit was not granted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// `try_acquire`: not now.
    #[error("rate limited on `{dimension}`; {}", match retry_in { Some(d) => format!("retry in {d:?}"), None => "retry when a permit is released".to_string() })]
    WouldWait {
        /// The dimension that must wait longest.
        dimension: String,
        /// How long until it could pay (`None`: when a concurrent permit is given back).
        retry_in: Option<Duration>,
    },
    /// `acquire` waited its whole timeout.
    #[error("waited {waited:?} for `{dimension}` without being served")]
    Timeout {
        /// The dimension it was still waiting for.
        dimension: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The cost can never be paid: it exceeds what the dimension holds at once.
    #[error("a cost of {cost} exceeds the {capacity} that `{dimension}` allows at once")]
    TooLarge {
        /// The dimension.
        dimension: String,
        /// The cost asked.
        cost: u64,
        /// Its burst capacity.
        capacity: u64,
    },
    /// The cost does not have one amount per dimension.
    #[error("a cost needs {expected} amounts (one per limit: {names}), got {got}")]
    Shape {
        /// Dimensions of the limiter.
        expected: usize,
        /// Amounts given.
        got: usize,
        /// Their names, in order.
        names: String,
    },
    /// The limits themselves are wrong.
    #[error("invalid limits: {0}")]
    Invalid(String),
}

/// A limiter over several dimensions. Cheap to clone (clones share the state).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    names: Vec<String>,
    has_concurrency: bool,
    state: Mutex<State>,
    /// Wakes waiters when the head of the queue changes or capacity comes back.
    changed: Notify,
}

struct State {
    buckets: Vec<Bucket>,
    queue: VecDeque<u64>,
    next_ticket: u64,
    paused_until: Option<Instant>,
    share: f64,
    granted: u64,
}

/// A cost checked against the limiter's shape.
#[derive(Clone, Copy)]
struct Cost {
    amounts: [u64; MAX_DIMENSIONS],
    len: usize,
}

impl Cost {
    fn as_slice(&self) -> &[u64] {
        &self.amounts[..self.len]
    }
}

impl State {
    fn refill(&mut self, now: Instant) {
        for b in &mut self.buckets {
            b.refill(now);
        }
    }

    /// Whether every dimension can pay `cost` now; if not, the one that waits longest.
    fn verdict(&self, cost: &Cost, now: Instant) -> Option<(usize, Option<Duration>)> {
        let paused = self.paused_until.filter(|t| *t > now).map(|t| t - now);
        let mut worst: Option<(usize, Option<Duration>)> = None;
        for (i, (bucket, amount)) in self.buckets.iter().zip(cost.as_slice()).enumerate() {
            let wait = match bucket.verdict(*amount) {
                Verdict::Now => continue,
                Verdict::After(d) => Some(d.max(paused.unwrap_or_default())),
                Verdict::OnRelease => None,
            };
            worst = match worst {
                // Waiting for a release is the longest wait of all.
                Some((_, None)) => worst,
                Some((_, Some(w))) if wait.is_some_and(|d| d <= w) => worst,
                _ => Some((i, wait)),
            };
        }
        match (worst, paused) {
            (None, Some(p)) => Some((PAUSED, Some(p))),
            _ => worst,
        }
    }

    fn pay(&mut self, cost: &Cost) {
        self.granted += 1;
        for (bucket, amount) in self.buckets.iter_mut().zip(cost.as_slice()) {
            bucket.take(*amount as f64);
        }
    }
}

impl RateLimiter {
    /// A limiter over these limits, in this order (costs name their amounts in the same order).
    pub fn new(limits: impl IntoIterator<Item = Limit>) -> Result<Self, RateLimitError> {
        let limits: Vec<Limit> = limits.into_iter().collect();
        if limits.is_empty() || limits.len() > MAX_DIMENSIONS {
            return Err(RateLimitError::Invalid(format!(
                "between 1 and {MAX_DIMENSIONS} limits are needed, got {}",
                limits.len()
            )));
        }
        for l in &limits {
            if l.amount == 0 || l.burst == 0 || l.period.is_some_and(|p| p.is_zero()) {
                return Err(RateLimitError::Invalid(format!(
                    "`{}` must allow a positive amount per non-zero period, with a positive burst",
                    l.name
                )));
            }
        }
        let now = Instant::now();
        let buckets: Vec<Bucket> = limits.iter().map(|l| Bucket::new(l, now)).collect();
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                names: limits.iter().map(|l| l.name.clone()).collect(),
                has_concurrency: buckets.iter().any(Bucket::is_concurrency),
                state: Mutex::new(State {
                    buckets,
                    queue: VecDeque::new(),
                    next_ticket: 0,
                    paused_until: None,
                    share: 1.0,
                    granted: 0,
                }),
                changed: Notify::new(),
            }),
        })
    }

    /// The position of a dimension by name (for building costs by name).
    pub fn dimension(&self, name: &str) -> Option<usize> {
        self.inner.names.iter().position(|n| n == name)
    }

    /// The dimensions' names, in order.
    pub fn dimensions(&self) -> &[String] {
        &self.inner.names
    }

    /// What each dimension has available now (negative: in debt after an underestimate).
    pub fn available(&self) -> Vec<(String, f64)> {
        let mut state = self.inner.lock();
        state.refill(Instant::now());
        self.inner.names.iter().cloned().zip(state.buckets.iter().map(Bucket::level)).collect()
    }

    /// Permits granted so far (a measure of demand, e.g. for a cluster-wide budget).
    pub fn granted(&self) -> u64 {
        self.inner.lock().granted
    }

    /// Waiters queued in `acquire`.
    pub fn waiting(&self) -> usize {
        self.inner.lock().queue.len()
    }

    fn cost(&self, amounts: &[u64]) -> Result<Cost, RateLimitError> {
        self.inner.check_shape(amounts)?;
        let mut cost = Cost { amounts: [0; MAX_DIMENSIONS], len: amounts.len() };
        cost.amounts[..amounts.len()].copy_from_slice(amounts);
        Ok(cost)
    }

    fn too_large(&self, state: &State, cost: &Cost) -> Result<(), RateLimitError> {
        for (i, (bucket, amount)) in state.buckets.iter().zip(cost.as_slice()).enumerate() {
            if *amount as f64 > bucket.full_capacity() {
                return Err(RateLimitError::TooLarge {
                    dimension: self.inner.names[i].clone(),
                    cost: *amount,
                    capacity: bucket.full_capacity() as u64,
                });
            }
        }
        Ok(())
    }

    /// Takes `cost` now if every dimension can pay it and nobody is queued ahead; otherwise
    /// says how long to wait. Never waits.
    pub fn try_acquire(&self, cost: &[u64]) -> Result<Permit, RateLimitError> {
        let cost = self.cost(cost)?;
        let mut state = self.inner.lock();
        let now = Instant::now();
        state.refill(now);
        self.too_large(&state, &cost)?;
        match state.verdict(&cost, now) {
            None if state.queue.is_empty() => {
                state.pay(&cost);
                Ok(self.permit(cost))
            }
            verdict => {
                let (i, retry_in) = verdict.unwrap_or((0, Some(Duration::ZERO)));
                Err(RateLimitError::WouldWait { dimension: self.inner.name(i), retry_in })
            }
        }
    }

    /// Waits until every dimension can pay `cost` and every earlier waiter has been served,
    /// then takes it. Gives up after `timeout` (none: waits as long as it takes). Cancel-safe:
    /// dropping the future pays nothing and leaves the queue.
    pub async fn acquire(&self, cost: &[u64], timeout: Option<Duration>) -> Result<Permit, RateLimitError> {
        let cost = self.cost(cost)?;
        let started = Instant::now();
        let ticket = {
            let mut state = self.inner.lock();
            state.refill(started);
            self.too_large(&state, &cost)?;
            if state.queue.is_empty() && state.verdict(&cost, started).is_none() {
                state.pay(&cost);
                return Ok(self.permit(cost));
            }
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back(ticket);
            ticket
        };
        let mut queued = Queued { inner: &self.inner, ticket, served: false };
        let mut blocking;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let sleep_for = {
                let mut state = self.inner.lock();
                let now = Instant::now();
                state.refill(now);
                if state.queue.front() == Some(&ticket) {
                    // Limits lowered since it queued may make it unpayable: say so rather than
                    // block everyone behind it (dropping `queued` wakes the next).
                    self.too_large(&state, &cost)?;
                    match state.verdict(&cost, now) {
                        None => {
                            state.pay(&cost);
                            state.queue.pop_front();
                            queued.served = true;
                            drop(state);
                            // The next waiter is now at the head.
                            self.inner.changed.notify_waiters();
                            return Ok(self.permit(cost));
                        }
                        Some((i, wait)) => {
                            blocking = i;
                            wait
                        }
                    }
                } else {
                    blocking = QUEUED;
                    None
                }
            };
            let deadline = timeout.map(|t| started + t);
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep(sleep_for.unwrap_or_default()), if sleep_for.is_some() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or(started)), if deadline.is_some() => {
                    return Err(RateLimitError::Timeout {
                        dimension: self.inner.name(blocking),
                        waited: started.elapsed(),
                    });
                }
            }
        }
    }

    /// A provider says only `remaining` units of `dimension` are left (an
    /// `x-ratelimit-remaining-*` header): from now on we believe no more than that (times our
    /// [`share`](Self::share) when the limits are shared across a cluster).
    pub fn observe_remaining(&self, dimension: usize, remaining: u64) {
        let mut state = self.inner.lock();
        state.refill(Instant::now());
        let share = state.share;
        if let Some(b) = state.buckets.get_mut(dimension) {
            // The provider counts for everyone who shares its limits: this limiter's part of
            // what is left is its share of it.
            b.lower_to(remaining as f64 * share);
        }
    }

    /// A provider says to come back later (`retry-after`, or a 429): nothing is granted for
    /// `duration`, at most [`MAX_PAUSE`] (what a provider says is untrusted input: a pause of
    /// `1e20` seconds would stop the limiter for good).
    pub fn pause_for(&self, duration: Duration) {
        let until = Instant::now() + duration.min(MAX_PAUSE);
        let mut state = self.inner.lock();
        state.paused_until = Some(state.paused_until.map_or(until, |t| t.max(until)));
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Runs on `share` (0 to 1) of every limit: capacity and refill rate scaled, concurrency
    /// rounded down. What this limiter has available never rises by a change of share; it
    /// refills faster or slower from now on. At a share of 0 nothing is granted (waiters wait
    /// for a larger share). Used by a cluster-wide budget to run each node on its lease.
    pub fn set_share(&self, share: f64) {
        let share = if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.0 };
        let mut state = self.inner.lock();
        let now = Instant::now();
        for b in &mut state.buckets {
            b.set_share(share, now);
        }
        state.share = share;
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Replaces the limits with `limits`, which must name the same dimensions in the same order,
    /// each of the same kind (per period or at once): a configuration reload that changes an
    /// amount, a period or a burst. What was used stays used: each dimension's available amount
    /// becomes its new capacity minus what was spent and not yet refilled (or the permits held),
    /// so a lower limit binds at once (possibly with nothing available until the spending
    /// refills) and a higher one gives its difference at once. A waiter whose cost no longer
    /// fits is answered `TooLarge` when it reaches the head of the queue, so it blocks no one.
    /// The share is kept. A change of dimensions is refused (costs are shaped by them): build a
    /// new limiter.
    pub fn set_limits(&self, limits: impl IntoIterator<Item = Limit>) -> Result<(), RateLimitError> {
        let limits: Vec<Limit> = limits.into_iter().collect();
        let names: Vec<&str> = limits.iter().map(Limit::name).collect();
        if names != self.inner.names.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(RateLimitError::Invalid(format!(
                "the limits name other dimensions ({}) than this limiter's ({}); that needs a new limiter",
                names.join(", "),
                self.inner.names.join(", ")
            )));
        }
        for l in &limits {
            if l.amount == 0 || l.burst == 0 || l.period.is_some_and(|p| p.is_zero()) {
                return Err(RateLimitError::Invalid(format!(
                    "`{}` must allow a positive amount per non-zero period, with a positive burst",
                    l.name
                )));
            }
        }
        let mut state = self.inner.lock();
        if let Some(l) =
            limits.iter().zip(&state.buckets).find(|(l, b)| l.period.is_none() != b.is_concurrency())
        {
            return Err(RateLimitError::Invalid(format!(
                "`{}` changes between a rate and a concurrency limit; that needs a new limiter",
                l.0.name
            )));
        }
        let (now, share) = (Instant::now(), state.share);
        for (bucket, limit) in state.buckets.iter_mut().zip(&limits) {
            bucket.reconfigure(limit, share, now);
        }
        drop(state);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    /// The share of its limits this limiter runs on (1 unless [`set_share`](Self::set_share)).
    pub fn share(&self) -> f64 {
        self.inner.lock().share
    }

    fn permit(&self, cost: Cost) -> Permit {
        Permit { inner: self.inner.clone(), cost }
    }
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("available", &self.available()).finish()
    }
}

impl Inner {
    /// One amount per dimension, or a clear error.
    fn check_shape(&self, amounts: &[u64]) -> Result<(), RateLimitError> {
        if amounts.len() == self.names.len() {
            return Ok(());
        }
        Err(RateLimitError::Shape {
            expected: self.names.len(),
            got: amounts.len(),
            names: self.names.join(", "),
        })
    }

    fn name(&self, dimension: usize) -> String {
        match (self.names.get(dimension), dimension) {
            (Some(name), _) => name.clone(),
            (None, QUEUED) => "the queue (earlier waiters not yet served)".to_string(),
            (None, _) => "retry-after (paused by the provider)".to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }
}

/// A waiter's place in the queue; leaving it (served or not) lets the next one go.
struct Queued<'a> {
    inner: &'a Inner,
    ticket: u64,
    served: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.inner.lock().queue.retain(|t| *t != self.ticket);
            self.inner.changed.notify_waiters();
        }
    }
}

/// What was granted. Settle it with the real cost; concurrency limits are given back when it is
/// dropped.
pub struct Permit {
    inner: Arc<Inner>,
    cost: Cost,
}

impl Permit {
    /// What this permit has paid, per dimension.
    pub fn cost(&self) -> &[u64] {
        self.cost.as_slice()
    }

    /// Replaces the estimate with the real cost: the difference is refunded (never above a
    /// dimension's capacity) or charged (possibly into debt, which delays later grants).
    /// Concurrency dimensions are not settled: they are given back on drop.
    pub fn settle(&mut self, actual: &[u64]) -> Result<(), RateLimitError> {
        self.inner.check_shape(actual)?;
        let mut state = self.inner.lock();
        state.refill(Instant::now());
        let mut refunded = false;
        for (i, bucket) in state.buckets.iter_mut().enumerate() {
            if bucket.is_concurrency() {
                continue;
            }
            let diff = self.cost.amounts[i] as f64 - actual[i] as f64;
            bucket.adjust(diff);
            refunded |= diff > 0.0;
            self.cost.amounts[i] = actual[i];
        }
        drop(state);
        if refunded {
            self.inner.changed.notify_waiters();
        }
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.inner.has_concurrency {
            let mut state = self.inner.lock();
            for (bucket, amount) in state.buckets.iter_mut().zip(self.cost.as_slice()) {
                if bucket.is_concurrency() {
                    bucket.adjust(*amount as f64);
                }
            }
            drop(state);
            self.inner.changed.notify_waiters();
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("cost", &self.cost()).finish()
    }
}
