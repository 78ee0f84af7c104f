//! Replicated CRDT state across three `foundation node --crdt` processes: a real partition
//! {n1, n2} | {n3} (each side refuses the other's sessions, `partition` / `heal` on stdin, the
//! testkit hook), writes on both sides, a majority write refused on the minority side and
//! accepted on the majority side, and after the partition heals every node converges to the
//! merge of both sides' writes (counters add up, a concurrent add wins over a remove); a node
//! killed and restarted gets the state back.

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{WAIT, start_node};

fn node(name: &str, port: u16, seeds: &[u16]) -> NodeProcess {
    start_node(name, port, seeds, &["--cookie", "crdt", "--crdt"])
}

/// Sends `command` (about `key`) and returns the answer: the text after `crdt KEY ` of the next
/// line about that key (`= VALUE`, `updated: VALUE` or `failed: ERROR`).
fn ask(node: &mut NodeProcess, key: &str, command: &str) -> String {
    let prefix = format!("crdt {key} ");
    let before = node.output().iter().filter(|l| l.starts_with(&prefix)).count();
    node.send_line(command).unwrap();
    let lines = node.wait_for_count(&prefix, before + 1, WAIT).unwrap_or_else(|e| panic!("{e}"));
    let line = lines.into_iter().filter(|l| l.starts_with(&prefix)).nth(before).unwrap();
    line[prefix.len()..].to_string()
}

/// Applies a write and checks that it was accepted.
fn write(node: &mut NodeProcess, key: &str, command: &str) {
    let answer = ask(node, key, command);
    assert!(answer.starts_with("updated: "), "{} `{command}`: {answer}", node.name());
}

/// Waits until `crdt-get KEY` on `node` answers `= expected`.
fn until_value(node: &mut NodeProcess, key: &str, expected: &str) {
    let want = format!("= {expected}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let last = ask(node, key, &format!("crdt-get {key}"));
        if last == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: `{key}` never became `{expected}` (last: `{last}`)",
            node.name()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn crdt_state_converges_after_a_partition_where_both_sides_wrote() {
    let ports = [free_port(), free_port(), free_port()];
    let mut n1 = node("n1", ports[0], &[]);
    let mut n2 = node("n2", ports[1], &[ports[0]]);
    let mut n3 = node("n3", ports[2], &[ports[0]]);
    for (me, others) in [(&n1, ["n2", "n3"]), (&n2, ["n1", "n3"]), (&n3, ["n1", "n2"])] {
        for other in others {
            me.wait_for(&format!("member up: {other} "), WAIT).unwrap();
        }
    }

    // Before the partition: writes on n1 reach everybody.
    write(&mut n1, "c", "crdt-inc c 1");
    write(&mut n1, "s", "crdt-add s apple");
    write(&mut n1, "s", "crdt-add s pear");
    for n in [&mut n1, &mut n2, &mut n3] {
        until_value(n, "c", "counter 1");
        until_value(n, "s", "set [apple,pear]");
    }

    // Partition {n1, n2} | {n3}: each side refuses the other.
    n1.send_line("partition n3").unwrap();
    n2.send_line("partition n3").unwrap();
    n3.send_line("partition n1,n2").unwrap();
    for n in [&n1, &n2, &n3] {
        n.wait_for("partitioned from ", WAIT).unwrap();
    }
    n1.wait_for("member down: n3", WAIT).unwrap();
    n2.wait_for("member down: n3", WAIT).unwrap();
    n3.wait_for("member down: n1", WAIT).unwrap();
    n3.wait_for("member down: n2", WAIT).unwrap();

    // Both sides write. On the set: n1 removes `apple` while n3 adds it again (add wins), n3
    // removes `pear`, each side adds its own element.
    write(&mut n1, "c", "crdt-inc c 10");
    write(&mut n2, "c", "crdt-inc c 5");
    write(&mut n3, "c", "crdt-inc c 100");
    write(&mut n3, "c", "crdt-inc c -1");
    write(&mut n1, "s", "crdt-remove s apple");
    write(&mut n2, "s", "crdt-add s kiwi");
    write(&mut n3, "s", "crdt-add s apple");
    write(&mut n3, "s", "crdt-remove s pear");
    write(&mut n3, "s", "crdt-add s fig");

    // A majority write: refused (timed out) on the minority side, which keeps it applied...
    let answer = ask(&mut n3, "m", "crdt-inc m 1 majority");
    assert!(
        answer.starts_with(
            "failed: majority write of `m` not confirmed: 1 of the 2 nodes needed (3 known, 1 reachable)"
        ),
        "{answer}"
    );
    assert!(answer.contains("the write stays applied on this node"), "{answer}");
    // ...and confirmed on the majority side.
    assert_eq!(ask(&mut n1, "m", "crdt-inc m 2 majority"), "updated: counter 2");
    // Majority reads: the same split.
    assert_eq!(ask(&mut n2, "m", "crdt-get m majority"), "= counter 2");
    assert!(ask(&mut n3, "m", "crdt-get m majority").starts_with("failed: majority read of `m` failed"));

    // The sides diverge: each has its own writes only.
    for n in [&mut n1, &mut n2] {
        until_value(n, "c", "counter 16");
        until_value(n, "s", "set [kiwi,pear]");
        until_value(n, "m", "counter 2");
    }
    until_value(&mut n3, "c", "counter 100");
    until_value(&mut n3, "s", "set [apple,fig]");
    until_value(&mut n3, "m", "counter 1");

    // Heal: every node converges to the merge of both sides.
    for n in [&mut n1, &mut n2, &mut n3] {
        n.send_line("heal").unwrap();
        n.wait_for("healed", WAIT).unwrap();
    }
    for n in [&mut n1, &mut n2, &mut n3] {
        until_value(n, "c", "counter 115");
        until_value(n, "s", "set [apple,fig,kiwi]");
        until_value(n, "m", "counter 3");
    }
    // The cluster is whole again: a majority write from the former minority side succeeds.
    assert_eq!(ask(&mut n3, "m", "crdt-inc m 1 majority"), "updated: counter 4");

    // kill -9 and restart: the node comes back empty and gets the state back by gossip,
    // including what was written while it was away.
    n3.kill();
    n1.wait_for("member down: n3", WAIT).unwrap();
    write(&mut n1, "c", "crdt-inc c 1");
    let mut n3 = node("n3", ports[2], &[ports[0]]);
    until_value(&mut n3, "c", "counter 116");
    until_value(&mut n3, "s", "set [apple,fig,kiwi]");
    // It writes on top of its earlier contributions (merged back), and everybody sees it.
    assert_eq!(ask(&mut n3, "c", "crdt-inc c 4 majority"), "updated: counter 120");
    for n in [&mut n1, &mut n2] {
        until_value(n, "c", "counter 120");
    }
}
