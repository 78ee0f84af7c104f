//! The CRDT kinds a replicator holds, and typed keys.

use std::fmt;
use std::marker::PhantomData;

use foundation_core::crdt::{Crdt, GCounter, LwwRegister, OrMap, OrSet, PnCounter, VectorClock};
use serde::{Deserialize, Serialize};

/// A map of last-writer-wins text registers: an [`OrMap`] (an update wins over a concurrent
/// remove of its key) whose values are [`LwwRegister`]s of text (put JSON there for structure).
pub type LwwMap = OrMap<String, LwwRegister<String>>;

/// A map of counters: an [`OrMap`] whose values are [`PnCounter`]s.
pub type PnCounterMap = OrMap<String, PnCounter>;

/// Which kind of CRDT a key holds. The order is the tie-break for a key created with two
/// different kinds on two nodes that did not see each other (the kind that comes first is kept
/// everywhere, see [`CrdtValue`]'s merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CrdtKind {
    /// [`GCounter`].
    GCounter,
    /// [`PnCounter`].
    PnCounter,
    /// [`OrSet`] of text.
    OrSet,
    /// [`LwwRegister`] of text.
    LwwRegister,
    /// [`LwwMap`].
    LwwMap,
    /// [`PnCounterMap`].
    PnCounterMap,
    /// [`VectorClock`].
    VectorClock,
}

impl fmt::Display for CrdtKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One replicated value: a CRDT of one of the supported kinds, as it is stored and gossiped.
///
/// On the wire (bincode) variants are numbered in declaration order: new kinds are added at
/// the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrdtValue {
    /// A grow-only counter.
    GCounter(GCounter),
    /// A counter that goes up and down.
    PnCounter(PnCounter),
    /// An observed-remove (add-wins) set of text.
    OrSet(OrSet<String>),
    /// A last-writer-wins register of text.
    LwwRegister(LwwRegister<String>),
    /// A map of last-writer-wins text registers.
    LwwMap(LwwMap),
    /// A map of counters.
    PnCounterMap(PnCounterMap),
    /// A vector clock.
    VectorClock(VectorClock),
}

impl CrdtValue {
    /// Its kind.
    pub fn kind(&self) -> CrdtKind {
        match self {
            CrdtValue::GCounter(_) => CrdtKind::GCounter,
            CrdtValue::PnCounter(_) => CrdtKind::PnCounter,
            CrdtValue::OrSet(_) => CrdtKind::OrSet,
            CrdtValue::LwwRegister(_) => CrdtKind::LwwRegister,
            CrdtValue::LwwMap(_) => CrdtKind::LwwMap,
            CrdtValue::PnCounterMap(_) => CrdtKind::PnCounterMap,
            CrdtValue::VectorClock(_) => CrdtKind::VectorClock,
        }
    }
}

/// Values of the same kind merge as that CRDT. Values of different kinds (one key created
/// with two kinds on two sides of a partition) merge to the one whose [`CrdtKind`] comes first:
/// still commutative, associative and idempotent, so every node keeps the same one. The other
/// is lost; replicators log and count it (`foundation_crdt_type_conflicts_total`).
impl Crdt for CrdtValue {
    fn merge(&mut self, other: &Self) {
        match (self, other) {
            (CrdtValue::GCounter(a), CrdtValue::GCounter(b)) => a.merge(b),
            (CrdtValue::PnCounter(a), CrdtValue::PnCounter(b)) => a.merge(b),
            (CrdtValue::OrSet(a), CrdtValue::OrSet(b)) => a.merge(b),
            (CrdtValue::LwwRegister(a), CrdtValue::LwwRegister(b)) => a.merge(b),
            (CrdtValue::LwwMap(a), CrdtValue::LwwMap(b)) => a.merge(b),
            (CrdtValue::PnCounterMap(a), CrdtValue::PnCounterMap(b)) => a.merge(b),
            (CrdtValue::VectorClock(a), CrdtValue::VectorClock(b)) => a.merge(b),
            (mine, theirs) => {
                if theirs.kind() < mine.kind() {
                    *mine = theirs.clone();
                }
            }
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A CRDT type a replicator can hold: one of the kinds of [`CrdtValue`]. Sealed.
pub trait ReplicatedData: Crdt + Default + Send + Sync + 'static + sealed::Sealed {
    /// Its kind.
    const KIND: CrdtKind;
    /// Wrapped as a [`CrdtValue`].
    fn into_value(self) -> CrdtValue;
    /// The value, if `value` is of this kind.
    fn from_value(value: &CrdtValue) -> Option<Self>;
}

macro_rules! replicated {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        impl ReplicatedData for $ty {
            const KIND: CrdtKind = CrdtKind::$variant;
            fn into_value(self) -> CrdtValue {
                CrdtValue::$variant(self)
            }
            fn from_value(value: &CrdtValue) -> Option<Self> {
                match value {
                    CrdtValue::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    )*};
}

replicated! {
    GCounter => GCounter,
    PnCounter => PnCounter,
    OrSet<String> => OrSet,
    LwwRegister<String> => LwwRegister,
    LwwMap => LwwMap,
    PnCounterMap => PnCounterMap,
    VectorClock => VectorClock,
}

/// The name of a replicated value and its CRDT type: `Key::<GCounter>::new("hits")`.
///
/// Keys are names shared by the whole cluster: the same name must be used with the same type on
/// every node (a replicator refuses a key used locally with another type, with
/// [`CrdtError::WrongType`](super::CrdtError::WrongType)).
pub struct Key<T> {
    name: String,
    kind: PhantomData<fn() -> T>,
}

impl<T: ReplicatedData> Key<T> {
    /// The key called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Key { name: name.into(), kind: PhantomData }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of CRDT it holds.
    pub fn kind(&self) -> CrdtKind {
        T::KIND
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        Key { name: self.name.clone(), kind: PhantomData }
    }
}

impl<T: ReplicatedData> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key<{}>({:?})", T::KIND, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_kinds_merge_to_the_first_kind_in_either_order() {
        let mut counter = GCounter::new();
        counter.increment("a", 2);
        let mut set = OrSet::new();
        set.add("b", "x".to_string());
        let (c, s) = (CrdtValue::GCounter(counter), CrdtValue::OrSet(set));
        assert_eq!(c.merged(&s), c);
        assert_eq!(s.merged(&c), c);
        assert_eq!(c.merged(&c), c);
    }
}
