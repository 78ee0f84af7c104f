//! One dimension's state: a token bucket refilled continuously, or a concurrency count.

use std::time::Duration;

use tokio::time::Instant;

use super::Limit;

pub(crate) struct Bucket {
    capacity: f64,
    /// Units per nanosecond; 0 for a concurrency limit (given back by permits instead), or for a
    /// rate limit whose share is zero.
    rate: f64,
    concurrency: bool,
    /// Capacity and rate at a share of 1 (see [`Bucket::set_share`]).
    full_capacity: f64,
    full_rate: f64,
    /// Units available now; negative after a settlement that cost more than estimated (a debt
    /// paid off by the refill before anything else is granted).
    level: f64,
    updated: Instant,
}

/// Whether a bucket can pay a cost now.
pub(crate) enum Verdict {
    Now,
    /// After this long (rate limits refill by themselves).
    After(Duration),
    /// When some permit is given back (concurrency limits).
    OnRelease,
}

impl Bucket {
    pub(crate) fn new(limit: &Limit, now: Instant) -> Self {
        let rate = limit.period.map_or(0.0, |p| limit.amount as f64 / p.as_nanos().max(1) as f64);
        let capacity = limit.burst as f64;
        Bucket {
            capacity,
            rate,
            concurrency: limit.period.is_none(),
            full_capacity: capacity,
            full_rate: rate,
            level: capacity,
            updated: now,
        }
    }

    pub(crate) fn is_concurrency(&self) -> bool {
        self.concurrency
    }

    /// The capacity at a share of 1: a cost above it can never be paid.
    pub(crate) fn full_capacity(&self) -> f64 {
        self.full_capacity
    }

    /// New full limits from `limit` (of the same kind), at `share`. What was used stays used:
    /// the level becomes the new capacity minus what the old one had spent (tokens not yet
    /// refilled, or permits held), so a lower limit leaves less available at once (possibly
    /// nothing, until the spending refills) and a higher one more; the window's use is never
    /// forgiven, so the provider's own count (which did not change) is never exceeded.
    pub(crate) fn reconfigure(&mut self, limit: &Limit, share: f64, now: Instant) {
        let fresh = Bucket::new(limit, now);
        self.refill(now);
        let used = (self.capacity - self.level).max(0.0);
        self.full_capacity = fresh.full_capacity;
        self.full_rate = fresh.full_rate;
        self.set_share(share, now);
        self.level = self.capacity - used;
    }

    /// Scales capacity and rate to `share` of the limit (concurrency: rounded down). What is
    /// available never rises by a change of share, it only refills faster or slower from now on.
    pub(crate) fn set_share(&mut self, share: f64, now: Instant) {
        self.refill(now);
        if self.concurrency {
            let in_use = self.capacity - self.level;
            self.capacity = (self.full_capacity * share).floor();
            self.level = self.capacity - in_use;
        } else {
            self.capacity = self.full_capacity * share;
            self.rate = self.full_rate * share;
            self.level = self.level.min(self.capacity);
        }
    }

    pub(crate) fn level(&self) -> f64 {
        self.level
    }

    pub(crate) fn refill(&mut self, now: Instant) {
        if !self.concurrency && now > self.updated {
            let elapsed = (now - self.updated).as_nanos() as f64;
            self.level = (self.level + elapsed * self.rate).min(self.capacity);
        }
        self.updated = now;
    }

    pub(crate) fn verdict(&self, cost: u64) -> Verdict {
        let missing = cost as f64 - self.level;
        if missing <= 0.0 {
            Verdict::Now
        } else if self.concurrency || self.rate == 0.0 || cost as f64 > self.capacity {
            // Given back by a permit, or by a larger share.
            Verdict::OnRelease
        } else {
            // Rounded up, so that waking at that instant finds enough.
            Verdict::After(Duration::from_nanos((missing / self.rate).ceil() as u64 + 1))
        }
    }

    pub(crate) fn take(&mut self, amount: f64) {
        self.level -= amount;
    }

    /// Gives back (positive) or charges (negative) an amount; never above capacity.
    pub(crate) fn adjust(&mut self, amount: f64) {
        self.level = (self.level + amount).min(self.capacity);
    }

    /// A provider says only `remaining` is left: never believe we have more.
    pub(crate) fn lower_to(&mut self, remaining: f64) {
        self.level = self.level.min(remaining);
    }
}
