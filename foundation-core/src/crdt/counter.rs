//! Counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Crdt;

/// A counter that only grows: each replica counts its own increments; the value is the sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    counts: BTreeMap<String, u64>,
}

impl GCounter {
    /// Zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` at `replica` (saturating at `u64::MAX`).
    pub fn increment(&mut self, replica: &str, n: u64) {
        let c = self.counts.entry(replica.to_string()).or_insert(0);
        *c = c.saturating_add(n);
    }

    /// The count over every replica (saturating).
    pub fn value(&self) -> u64 {
        self.counts.values().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

impl Crdt for GCounter {
    fn merge(&mut self, other: &Self) {
        for (replica, n) in &other.counts {
            let mine = self.counts.entry(replica.clone()).or_insert(0);
            *mine = (*mine).max(*n);
        }
    }
}

/// A counter that goes up and down: two grow-only counters, increments minus decrements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    up: GCounter,
    down: GCounter,
}

impl PnCounter {
    /// Zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` (negative to subtract) at `replica`.
    pub fn add(&mut self, replica: &str, n: i64) {
        if n >= 0 {
            self.up.increment(replica, n.unsigned_abs());
        } else {
            self.down.increment(replica, n.unsigned_abs());
        }
    }

    /// Increments minus decrements (saturating at the ends of `i64`).
    pub fn value(&self) -> i64 {
        let diff = i128::from(self.up.value()) - i128::from(self.down.value());
        diff.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

impl Crdt for PnCounter {
    fn merge(&mut self, other: &Self) {
        self.up.merge(&other.up);
        self.down.merge(&other.down);
    }
}
