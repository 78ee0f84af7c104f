//! Last-writer-wins register.

use serde::{Deserialize, Serialize};

use super::Crdt;

/// When a write happened: wall-clock milliseconds, then the writing replica's id to order
/// writes of the same millisecond. Give each write a stamp above the register's current one
/// ([`LwwRegister::next_stamp`] does): stamps must be unique for merges to agree.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Milliseconds (a hybrid clock: never below the last stamp seen).
    pub millis: u64,
    /// The writer.
    pub replica: String,
}

/// A value whose latest write (by [`Stamp`]) wins on merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister<T> {
    value: T,
    stamp: Stamp,
}

impl<T: Clone> LwwRegister<T> {
    /// A register holding `value`, written at `stamp`.
    pub fn new(value: T, stamp: Stamp) -> Self {
        LwwRegister { value, stamp }
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The stamp of the value held.
    pub fn stamp(&self) -> &Stamp {
        &self.stamp
    }

    /// A stamp for a write by `replica` at `now_millis`: `now_millis`, or one more than the
    /// current stamp's if the clock is behind it (so a write always wins locally).
    pub fn next_stamp(&self, replica: &str, now_millis: u64) -> Stamp {
        Stamp { millis: now_millis.max(self.stamp.millis + 1), replica: replica.to_string() }
    }

    /// Writes `value` at `stamp`; ignored (returns `false`) if the register holds a later write.
    pub fn set(&mut self, value: T, stamp: Stamp) -> bool {
        if stamp > self.stamp {
            self.value = value;
            self.stamp = stamp;
            true
        } else {
            false
        }
    }
}

/// The default value, stamped before any write (so that an [`OrMap`](super::OrMap) of
/// registers can create one).
impl<T: Default> Default for LwwRegister<T> {
    fn default() -> Self {
        LwwRegister { value: T::default(), stamp: Stamp::default() }
    }
}

impl<T: Clone + PartialEq> Crdt for LwwRegister<T> {
    fn merge(&mut self, other: &Self) {
        if other.stamp > self.stamp {
            self.value = other.value.clone();
            self.stamp = other.stamp.clone();
        }
    }
}
