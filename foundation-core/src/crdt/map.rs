//! Observed-remove map of CRDT values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::set::{Dot, surviving};
use super::{Crdt, VectorClock};

/// A map whose keys behave as an [`OrSet`](super::OrSet) (an update on one replica wins over a
/// concurrent remove on another) and whose values are CRDTs.
///
/// Each update is a dot carrying the value it wrote (the key's value as the updating replica
/// saw it, changed); a key's value is the merge of the values of its surviving dots. Dots and
/// their values are never changed once made, so merging maps is merging sets, and the merge
/// laws hold for any value type. A key kept by a concurrent update keeps that replica's value,
/// including what it held before the remove (the usual observed-remove map semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrMap<K: Ord, V> {
    entries: BTreeMap<K, BTreeMap<Dot, V>>,
    context: VectorClock,
}

impl<K: Ord, V> Default for OrMap<K, V> {
    fn default() -> Self {
        OrMap { entries: BTreeMap::new(), context: VectorClock::new() }
    }
}

/// The value of an entry: its dots' values merged.
fn value_of<V: Crdt + Default>(dots: &BTreeMap<Dot, V>) -> V {
    let mut values = dots.values();
    let first = values.next().cloned().unwrap_or_default();
    values.fold(first, |acc, v| acc.merged(v))
}

impl<K: Ord + Clone, V: Crdt + Default> OrMap<K, V> {
    /// The empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the value at `key` (a default value if absent) at `replica`.
    pub fn update(&mut self, replica: &str, key: K, change: impl FnOnce(&mut V)) {
        let counter = self.context.increment(replica);
        let entry = self.entries.entry(key).or_default();
        let mut value = value_of(entry);
        change(&mut value);
        // This update has seen the key's earlier ones: it replaces them.
        *entry = BTreeMap::from([(Dot { replica: replica.to_string(), counter }, value)]);
    }

    /// Removes `key`; `false` if it was not in the map.
    pub fn remove(&mut self, key: &K) -> bool {
        self.entries.remove(key).is_some()
    }

    /// The value at `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key).map(value_of)
    }

    /// Whether `key` is in the map.
    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, V)> {
        self.entries.iter().map(|(k, dots)| (k, value_of(dots)))
    }

    /// Keys in the map.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Ord + Clone, V: Crdt + Default> Crdt for OrMap<K, V> {
    fn merge(&mut self, other: &Self) {
        let keys: BTreeSet<K> = self.entries.keys().chain(other.entries.keys()).cloned().collect();
        for key in keys {
            let mine = self.entries.get(&key);
            let theirs = other.entries.get(&key);
            let dot_set =
                |e: Option<&BTreeMap<Dot, V>>| e.map(|m| m.keys().cloned().collect::<BTreeSet<Dot>>());
            let (my_dots, their_dots) = (dot_set(mine), dot_set(theirs));
            let kept = surviving(my_dots.as_ref(), &self.context, their_dots.as_ref(), &other.context);
            let entry: BTreeMap<Dot, V> = kept
                .into_iter()
                .filter_map(|dot| {
                    let value =
                        mine.and_then(|m| m.get(&dot)).or_else(|| theirs.and_then(|t| t.get(&dot)))?;
                    Some((dot, value.clone()))
                })
                .collect();
            if entry.is_empty() {
                self.entries.remove(&key);
            } else {
                self.entries.insert(key, entry);
            }
        }
        self.context.merge(&other.context);
    }
}
