//! The cluster cache tier across real processes: three `foundation node --shared-cache answers`
//! processes on loopback; every node agrees on each key's owner, a value put on one node is read
//! on another, and when the owner is killed a get is a miss (not a hang, not a crash) and puts
//! go to the new owner.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{Value, WAIT, json, seen, start_node, text, until};

fn node(name: &str, port: u16, seeds: &[u16]) -> NodeProcess {
    start_node(name, port, seeds, &["--cookie", "cache", "--shared-cache", "answers"])
}

/// Sends `command` and returns the next event about `key` of one of these `kinds` (the node
/// answers each command with one event).
fn ask(node: &mut NodeProcess, command: &str, key: &str, kinds: &[&str]) -> Value {
    let answers = |n: &NodeProcess| -> Vec<Value> {
        seen(n, json!({"key": key})).into_iter().filter(|e| kinds.iter().any(|k| e["event"] == *k)).collect()
    };
    let before = answers(node).len();
    node.send_line(command).unwrap();
    until(
        || answers(node).len() > before,
        || format!("{} never answered `{command}`: {:#?}", node.name(), node.output()),
    );
    answers(node).swap_remove(before)
}

fn get(node: &mut NodeProcess, key: &str) -> Value {
    ask(node, &format!("cache-get {key}"), key, &["cache_hit", "cache_miss"])
}

fn put(node: &mut NodeProcess, key: &str, value: &str) -> Value {
    ask(node, &format!("cache-put {key} {value}"), key, &["cache_stored", "cache_put_failed"])
}

/// (owner of `key`, nodes the cache is spread over) as `node` sees them.
fn owner(node: &mut NodeProcess, key: &str) -> (String, Vec<String>) {
    let answer = ask(node, &format!("cache-owner {key}"), key, &["cache_owner"]);
    let nodes = answer["nodes"].as_array().unwrap_or_else(|| panic!("no nodes in {answer}"));
    let nodes = nodes.iter().map(|n| n.as_str().unwrap_or_else(|| panic!("{answer}")).to_string()).collect();
    (text(&answer, "owner").to_string(), nodes)
}

/// Waits until `node` sees the cache spread over exactly `nodes`.
fn until_spread_over(node: &mut NodeProcess, nodes: &[&str]) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, spread) = owner(node, "probe");
        if spread == nodes {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} sees the cache on {spread:?}, not {nodes:?}",
            node.name()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn keys_have_one_owner_everywhere_values_cross_nodes_and_a_lost_owner_is_a_miss() {
    let ports = [free_port(), free_port(), free_port()];
    let mut n1 = node("n1", ports[0], &[]);
    let mut n2 = node("n2", ports[1], &[ports[0]]);
    let mut n3 = node("n3", ports[2], &[ports[0]]);
    for n in [&mut n1, &mut n2, &mut n3] {
        until_spread_over(n, &["n1", "n2", "n3"]);
    }

    // Every node names the same owner for every key, and the keys spread over the nodes.
    let keys: Vec<String> = (0..24).map(|i| format!("key-{i}")).collect();
    let mut owners = Vec::new();
    for key in &keys {
        let seen: Vec<String> = [&mut n1, &mut n2, &mut n3].into_iter().map(|n| owner(n, key).0).collect();
        assert!(seen.iter().all(|o| *o == seen[0]), "{key}: owners differ by node: {seen:?}");
        owners.push(seen[0].clone());
    }
    for n in ["n1", "n2", "n3"] {
        assert!(owners.iter().any(|o| o == n), "no key of 24 on {n}: {owners:?}");
    }

    // Put on n1, read on n3 (and n2): stored on the owner, found from anywhere.
    for (key, owner) in keys.iter().zip(&owners) {
        assert_eq!(
            put(&mut n1, key, &format!("value of {key}")),
            json!({"event": "cache_stored", "key": key, "owner": owner})
        );
    }
    for (key, owner) in keys.iter().zip(&owners) {
        assert_eq!(
            get(&mut n3, key),
            json!({"event": "cache_hit", "key": key, "value": format!("value of {key}"), "owner": owner})
        );
    }
    let (first, its_owner) = (&keys[0], &owners[0]);
    assert_eq!(
        get(&mut n2, first),
        json!({"event": "cache_hit", "key": first, "value": format!("value of {first}"), "owner": its_owner})
    );
    assert_eq!(
        get(&mut n3, "never-stored"),
        json!({
            "event": "cache_miss",
            "key": "never-stored",
            "owner": owner(&mut n3, "never-stored").0,
            "error": null
        })
    );

    // Kill n2, the owner of some keys: a get of one of them is a miss (its entries died with
    // it, and while it is not yet known to be gone the call times out), never a hang or a crash.
    let lost = keys.iter().zip(&owners).find(|(_, o)| *o == "n2").map(|(k, _)| k.clone()).unwrap();
    n2.kill();
    let answer = get(&mut n1, &lost);
    assert_eq!(answer["event"], "cache_miss", "{answer}");
    for n in [&mut n1, &mut n3] {
        until_spread_over(n, &["n1", "n3"]);
    }
    assert!(n1.is_running() && n3.is_running());

    // Its keys now belong to the survivors, which agree on the new owner; puts go there.
    let (new_owner, _) = owner(&mut n1, &lost);
    assert_ne!(new_owner, "n2");
    assert_eq!(owner(&mut n3, &lost).0, new_owner);
    assert_eq!(
        put(&mut n1, &lost, "again"),
        json!({"event": "cache_stored", "key": lost, "owner": new_owner})
    );
    assert_eq!(
        get(&mut n3, &lost),
        json!({"event": "cache_hit", "key": lost, "value": "again", "owner": new_owner})
    );
    // Keys of the survivors did not move and kept their values.
    let (kept, kept_owner) = keys.iter().zip(&owners).find(|(_, o)| *o != "n2").unwrap();
    assert_eq!(
        get(&mut n3, kept),
        json!({"event": "cache_hit", "key": kept, "value": format!("value of {kept}"), "owner": kept_owner})
    );
}
