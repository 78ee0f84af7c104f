//! Vector clocks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Crdt;

/// How two histories relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// The same events.
    Equal,
    /// Every event of the first is in the second, which has more.
    Before,
    /// The other way round.
    After,
    /// Each has events the other has not seen.
    Concurrent,
}

/// Events seen per replica. Missing entries are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VectorClock {
    counters: BTreeMap<String, u64>,
}

impl VectorClock {
    /// An empty clock (no events).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one more event at `replica`; returns its counter.
    pub fn increment(&mut self, replica: &str) -> u64 {
        let c = self.counters.entry(replica.to_string()).or_insert(0);
        *c += 1;
        *c
    }

    /// Events seen from `replica`.
    pub fn get(&self, replica: &str) -> u64 {
        self.counters.get(replica).copied().unwrap_or(0)
    }

    /// Whether the event `counter` of `replica` is in this history.
    pub fn has_seen(&self, replica: &str, counter: u64) -> bool {
        self.get(replica) >= counter
    }

    /// How this history relates to `other`.
    pub fn compare(&self, other: &VectorClock) -> Causality {
        let mut less = false;
        let mut greater = false;
        for replica in self.counters.keys().chain(other.counters.keys()) {
            let (a, b) = (self.get(replica), other.get(replica));
            less |= a < b;
            greater |= a > b;
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// The replicas and their counters.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counters.iter().map(|(r, c)| (r.as_str(), *c))
    }
}

impl Crdt for VectorClock {
    fn merge(&mut self, other: &Self) {
        for (replica, c) in &other.counters {
            let mine = self.counters.entry(replica.clone()).or_insert(0);
            *mine = (*mine).max(*c);
        }
    }
}
