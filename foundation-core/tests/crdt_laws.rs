//! The CRDT merge laws, property-tested: for states reached by any sequence of operations on
//! three replicas (with merges in between), merge is commutative, associative and idempotent;
//! plus the behaviour each type promises (add wins, last writer wins, counters add up).

use foundation_core::crdt::*;
use proptest::prelude::*;

const REPLICAS: [&str; 3] = ["a", "b", "c"];

/// One step on one of three replicas.
#[derive(Debug, Clone)]
enum Op {
    /// Replica, element or key, amount (counters) or stamp (registers).
    Write(usize, u8, i64),
    Remove(usize, u8),
    /// Replica `to` merges replica `from`'s state.
    Sync(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..4u8, -5..6i64).prop_map(|(r, k, n)| Op::Write(r, k, n)),
        2 => (0..3usize, 0..4u8).prop_map(|(r, k)| Op::Remove(r, k)),
        2 => (0..3usize, 0..3usize).prop_map(|(a, b)| Op::Sync(a, b)),
    ]
}

/// Runs `ops` on three replicas of `T` starting from `T::default()`; the three states.
fn run<T: Crdt + Default>(
    ops: &[Op],
    write: impl Fn(&mut T, &str, u8, i64),
    remove: impl Fn(&mut T, u8),
) -> [T; 3] {
    let mut replicas: [T; 3] = Default::default();
    for op in ops {
        match *op {
            Op::Write(r, k, n) => write(&mut replicas[r], REPLICAS[r], k, n),
            Op::Remove(r, k) => remove(&mut replicas[r], k),
            Op::Sync(to, from) => {
                let from = replicas[from].clone();
                replicas[to].merge(&from);
            }
        }
    }
    replicas
}

fn laws<T: Crdt + PartialEq + std::fmt::Debug>([a, b, c]: [T; 3]) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.merged(&b), b.merged(&a), "commutative");
    prop_assert_eq!(a.merged(&b).merged(&c), a.merged(&b.merged(&c)), "associative");
    prop_assert_eq!(a.merged(&a), a.clone(), "idempotent");
    // Everyone merged with everyone: all equal (convergence).
    let all = a.merged(&b).merged(&c);
    prop_assert_eq!(c.merged(&b).merged(&a), all);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn vector_clocks(ops in prop::collection::vec(op(), 0..40)) {
        laws(run::<VectorClock>(&ops, |v, r, _, _| { v.increment(r); }, |_, _| {}))?;
    }

    #[test]
    fn g_counters(ops in prop::collection::vec(op(), 0..40)) {
        laws(run::<GCounter>(&ops, |c, r, _, n| c.increment(r, n.unsigned_abs()), |_, _| {}))?;
    }

    #[test]
    fn pn_counters(ops in prop::collection::vec(op(), 0..40)) {
        laws(run::<PnCounter>(&ops, |c, r, _, n| c.add(r, n), |_, _| {}))?;
    }

    #[test]
    fn lww_registers(ops in prop::collection::vec(op(), 0..40)) {
        let write = |reg: &mut LwwRegister<u8>, r: &str, k: u8, n: i64| {
            let stamp = reg.next_stamp(r, n.unsigned_abs());
            reg.set(k, stamp);
        };
        laws(run::<LwwRegister<u8>>(&ops, write, |_, _| {}))?;
    }

    #[test]
    fn or_sets(ops in prop::collection::vec(op(), 0..40)) {
        laws(run::<OrSet<u8>>(&ops, |s, r, k, _| s.add(r, k), |s, k| { s.remove(&k); }))?;
    }

    #[test]
    fn or_maps_of_counters(ops in prop::collection::vec(op(), 0..40)) {
        let write = |m: &mut OrMap<u8, PnCounter>, r: &str, k: u8, n: i64| m.update(r, k, |c| c.add(r, n));
        laws(run::<OrMap<u8, PnCounter>>(&ops, write, |m, k| { m.remove(&k); }))?;
    }
}

#[test]
fn counters_add_up_across_replicas() {
    let (mut a, mut b) = (PnCounter::new(), PnCounter::new());
    a.add("a", 10);
    b.add("b", 5);
    b.add("b", -3);
    a.merge(&b);
    a.merge(&b);
    assert_eq!(a.value(), 12);
}

#[test]
fn the_later_write_wins_and_ties_go_to_the_higher_replica() {
    let mut a = LwwRegister::new("draft", Stamp { millis: 1, replica: "a".into() });
    let mut b = a.clone();
    a.set("from a", Stamp { millis: 5, replica: "a".into() });
    b.set("from b", Stamp { millis: 5, replica: "b".into() });
    a.merge(&b);
    assert_eq!(*a.get(), "from b");
    // A write stamped behind the register is refused; next_stamp never is.
    assert!(!a.set("late", Stamp { millis: 2, replica: "z".into() }));
    let stamp = a.next_stamp("a", 0);
    assert!(a.set("now", stamp));
}

#[test]
fn a_concurrent_update_wins_over_a_remove_in_a_map() {
    let mut a: OrMap<&str, GCounter> = OrMap::new();
    a.update("a", "cart", |c| c.increment("a", 1));
    let mut b = a.clone();
    b.remove(&"cart");
    a.update("a", "cart", |c| c.increment("a", 1));
    b.merge(&a);
    assert_eq!(b.get(&"cart").map(|c| c.value()), Some(2));
    // A remove that saw every update removes the key everywhere.
    let mut c = b.clone();
    c.remove(&"cart");
    a.merge(&c);
    assert!(a.get(&"cart").is_none());
    assert_eq!(VectorClock::new().compare(&VectorClock::new()), Causality::Equal);
}
