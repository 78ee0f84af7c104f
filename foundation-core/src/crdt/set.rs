//! Observed-remove set (add wins).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Crdt, VectorClock};

/// One add: the replica that made it and its counter there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica.
    pub replica: String,
    /// Its event counter.
    pub counter: u64,
}

/// The dots of one entry that survive a merge: those both sides hold, and those one side holds
/// that the other has not seen (a dot the other has seen but does not hold was removed there).
pub(super) fn surviving(
    mine: Option<&BTreeSet<Dot>>,
    my_context: &VectorClock,
    theirs: Option<&BTreeSet<Dot>>,
    their_context: &VectorClock,
) -> BTreeSet<Dot> {
    let empty = BTreeSet::new();
    let (mine, theirs) = (mine.unwrap_or(&empty), theirs.unwrap_or(&empty));
    let both = mine.intersection(theirs).cloned();
    let only_mine =
        mine.difference(theirs).filter(|d| !their_context.has_seen(&d.replica, d.counter)).cloned();
    let only_theirs =
        theirs.difference(mine).filter(|d| !my_context.has_seen(&d.replica, d.counter)).cloned();
    both.chain(only_mine).chain(only_theirs).collect()
}

/// A set where an element added on one replica while another removes it stays in (the remove
/// only removes the adds it had seen). Removed elements leave no tombstones: what was seen is
/// remembered in a vector clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet<T: Ord> {
    entries: BTreeMap<T, BTreeSet<Dot>>,
    context: VectorClock,
}

impl<T: Ord> Default for OrSet<T> {
    fn default() -> Self {
        OrSet { entries: BTreeMap::new(), context: VectorClock::new() }
    }
}

impl<T: Ord + Clone> OrSet<T> {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` at `replica`.
    pub fn add(&mut self, replica: &str, value: T) {
        let counter = self.context.increment(replica);
        // The element's earlier adds are observed by this one: it replaces them.
        self.entries.insert(value, BTreeSet::from([Dot { replica: replica.to_string(), counter }]));
    }

    /// Removes `value` (the adds of it seen here); `false` if it was not in the set.
    pub fn remove(&mut self, value: &T) -> bool {
        self.entries.remove(value).is_some()
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: &T) -> bool {
        self.entries.contains_key(value)
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.keys()
    }

    /// Elements in the set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<T: Ord + Clone> Crdt for OrSet<T> {
    fn merge(&mut self, other: &Self) {
        let keys: BTreeSet<T> = self.entries.keys().chain(other.entries.keys()).cloned().collect();
        for key in keys {
            let dots =
                surviving(self.entries.get(&key), &self.context, other.entries.get(&key), &other.context);
            if dots.is_empty() {
                self.entries.remove(&key);
            } else {
                self.entries.insert(key, dots);
            }
        }
        self.context.merge(&other.context);
    }
}
