//! Replicated CRDT state across three `foundation node --crdt` processes: a real partition
//! {n1, n2} | {n3} (each side refuses the other's sessions, `partition` / `heal` on stdin, the
//! testkit hook), writes on both sides, a majority write refused on the minority side and
//! accepted on the majority side, and after the partition heals every node converges to the
//! merge of both sides' writes (counters add up, a concurrent add wins over a remove); a node
//! killed and restarted gets the state back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{Value, WAIT, json, seen, start_node, text, until, wait};

fn node(name: &str, port: u16, seeds: &[u16]) -> NodeProcess {
    start_node(name, port, seeds, &["--cookie", "crdt", "--crdt"])
}

/// The events the node printed about `key`: `crdt_value` (reads), `crdt_updated` (writes) and
/// `crdt_failed`, oldest first.
fn answers(node: &NodeProcess, key: &str) -> Vec<Value> {
    let kinds = ["crdt_value", "crdt_updated", "crdt_failed"];
    seen(node, json!({"key": key})).into_iter().filter(|e| kinds.iter().any(|k| e["event"] == *k)).collect()
}

/// Sends `command` (about `key`) and returns the answer: the next event about that key.
fn ask(node: &mut NodeProcess, key: &str, command: &str) -> Value {
    let before = answers(node, key).len();
    node.send_line(command).unwrap();
    until(
        || answers(node, key).len() > before,
        || format!("{} never answered `{command}`: {:#?}", node.name(), node.output()),
    );
    answers(node, key).swap_remove(before)
}

/// A counter's value as the node prints it.
fn counter(n: i64) -> Value {
    json!({"counter": n})
}

/// A set's value as the node prints it (its elements in order).
fn set(elements: &[&str]) -> Value {
    json!({"set": elements})
}

/// Asserts that `answer` is a `kind` event (`crdt_value` or `crdt_updated`) with this value.
fn assert_answer(answer: &Value, kind: &str, value: Value) {
    assert!(answer["event"] == kind && answer["value"] == value, "wanted {kind} {value}: {answer}");
}

/// Applies a write and checks that it was accepted.
fn write(node: &mut NodeProcess, key: &str, command: &str) {
    let answer = ask(node, key, command);
    assert!(answer["event"] == "crdt_updated", "{} `{command}`: {answer}", node.name());
}

/// Waits until `crdt-get KEY` on `node` reads `expected`.
fn until_value(node: &mut NodeProcess, key: &str, expected: Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let last = ask(node, key, &format!("crdt-get {key}"));
        if last["event"] == "crdt_value" && last["value"] == expected {
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
            wait(me, json!({"event": "member_up", "name": other}));
        }
    }

    // Before the partition: writes on n1 reach everybody.
    write(&mut n1, "c", "crdt-inc c 1");
    write(&mut n1, "s", "crdt-add s apple");
    write(&mut n1, "s", "crdt-add s pear");
    for n in [&mut n1, &mut n2, &mut n3] {
        until_value(n, "c", counter(1));
        until_value(n, "s", set(&["apple", "pear"]));
    }

    // Partition {n1, n2} | {n3}: each side refuses the other.
    n1.send_line("partition n3").unwrap();
    n2.send_line("partition n3").unwrap();
    n3.send_line("partition n1,n2").unwrap();
    for n in [&n1, &n2, &n3] {
        wait(n, json!({"event": "partitioned"}));
    }
    wait(&n1, json!({"event": "member_down", "name": "n3"}));
    wait(&n2, json!({"event": "member_down", "name": "n3"}));
    wait(&n3, json!({"event": "member_down", "name": "n1"}));
    wait(&n3, json!({"event": "member_down", "name": "n2"}));

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
    assert_eq!(answer["event"], "crdt_failed", "{answer}");
    let error = text(&answer, "error");
    assert!(
        error.starts_with(
            "majority write of `m` not confirmed: 1 of the 2 nodes needed (3 known, 1 reachable)"
        ),
        "{answer}"
    );
    assert!(error.contains("the write stays applied on this node"), "{answer}");
    // ...and confirmed on the majority side.
    assert_answer(&ask(&mut n1, "m", "crdt-inc m 2 majority"), "crdt_updated", counter(2));
    // Majority reads: the same split.
    assert_answer(&ask(&mut n2, "m", "crdt-get m majority"), "crdt_value", counter(2));
    let answer = ask(&mut n3, "m", "crdt-get m majority");
    assert_eq!(answer["event"], "crdt_failed", "{answer}");
    assert!(text(&answer, "error").starts_with("majority read of `m` failed"), "{answer}");

    // The sides diverge: each has its own writes only.
    for n in [&mut n1, &mut n2] {
        until_value(n, "c", counter(16));
        until_value(n, "s", set(&["kiwi", "pear"]));
        until_value(n, "m", counter(2));
    }
    until_value(&mut n3, "c", counter(100));
    until_value(&mut n3, "s", set(&["apple", "fig"]));
    until_value(&mut n3, "m", counter(1));

    // Heal: every node converges to the merge of both sides.
    for n in [&mut n1, &mut n2, &mut n3] {
        n.send_line("heal").unwrap();
        wait(n, json!({"event": "healed"}));
    }
    for n in [&mut n1, &mut n2, &mut n3] {
        until_value(n, "c", counter(115));
        until_value(n, "s", set(&["apple", "fig", "kiwi"]));
        until_value(n, "m", counter(3));
    }
    // The cluster is whole again: a majority write from the former minority side succeeds.
    assert_answer(&ask(&mut n3, "m", "crdt-inc m 1 majority"), "crdt_updated", counter(4));

    // kill -9 and restart: the node comes back empty and gets the state back by gossip,
    // including what was written while it was away.
    n3.kill();
    wait(&n1, json!({"event": "member_down", "name": "n3"}));
    write(&mut n1, "c", "crdt-inc c 1");
    let mut n3 = node("n3", ports[2], &[ports[0]]);
    until_value(&mut n3, "c", counter(116));
    until_value(&mut n3, "s", set(&["apple", "fig", "kiwi"]));
    // It writes on top of its earlier contributions (merged back), and everybody sees it.
    assert_answer(&ask(&mut n3, "c", "crdt-inc c 4 majority"), "crdt_updated", counter(120));
    for n in [&mut n1, &mut n2] {
        until_value(n, "c", counter(120));
    }
}
