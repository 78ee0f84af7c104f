//! Conflict-free replicated data types: values that replicas change independently and merge in
//! any order, any number of times, always to the same result.
//!
//! Every type here is a state-based CRDT: [`Crdt::merge`] is commutative, associative and
//! idempotent (property-tested in `tests/crdt_laws.rs`), so replicas that have seen the same
//! updates, in whatever order and however often, hold equal values. Replica ids are strings
//! (node names); the types are serde values, ready to be gossiped (replication across nodes is
//! foundation-cluster's part).
//!
//! - [`VectorClock`]: causality between replicas' histories (before, after, concurrent).
//! - [`GCounter`] (grow-only) and [`PnCounter`] (increments and decrements).
//! - [`LwwRegister`]: the last write wins, by a [`Stamp`] (time, then replica id to break ties).
//! - [`OrSet`]: an observed-remove set (add wins over a concurrent remove).
//! - [`OrMap`]: keys as in an `OrSet`, each value a CRDT merged on conflict.
//!
//! Written here rather than taken from the `crdts` crate: it has been unmaintained since 2023
//! and compiles its counters out without an extra feature; these are small, canonical (equal
//! states compare equal, which the law tests rely on) and serde-ready.
//!
//! ```
//! use foundation_core::crdt::{Crdt, OrSet};
//!
//! let mut a = OrSet::new();
//! a.add("a", "apples");
//! let mut b = a.clone();
//! b.remove(&"apples");     // b removes what it saw…
//! a.add("a", "apples");    // …while a adds it again: the add wins.
//! a.merge(&b);
//! b.merge(&a);
//! assert_eq!(a, b);
//! assert!(a.contains(&"apples"));
//! ```

mod counter;
mod map;
mod register;
mod set;
mod vclock;

pub use counter::{GCounter, PnCounter};
pub use map::OrMap;
pub use register::{LwwRegister, Stamp};
pub use set::{Dot, OrSet};
pub use vclock::{Causality, VectorClock};

/// A state-based CRDT: replicas merge into each other's state.
pub trait Crdt: Clone {
    /// Merges `other` into `self`. Commutative, associative and idempotent.
    fn merge(&mut self, other: &Self);

    /// `self` merged with `other`, as a new value.
    fn merged(&self, other: &Self) -> Self {
        let mut out = self.clone();
        out.merge(other);
        out
    }
}
