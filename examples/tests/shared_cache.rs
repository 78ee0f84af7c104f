//! The cluster cache tier across real processes: three `foundation node --shared-cache answers`
//! processes on loopback; every node agrees on each key's owner, a value put on one node is read
//! on another, and when the owner is killed a get is a miss (not a hang, not a crash) and puts
//! go to the new owner.

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{WAIT, start_node, until};

fn node(name: &str, port: u16, seeds: &[u16]) -> NodeProcess {
    start_node(name, port, seeds, &["--cookie", "cache", "--shared-cache", "answers"])
}

/// Sends `command` and returns the next line that `matches` (the node answers each command
/// with one line).
fn ask(node: &mut NodeProcess, command: &str, matches: impl Fn(&str) -> bool) -> String {
    let count = |n: &NodeProcess| n.output().iter().filter(|l| matches(l)).count();
    let before = count(node);
    node.send_line(command).unwrap();
    until(
        || count(node) > before,
        || format!("{} never answered `{command}`: {:#?}", node.name(), node.output()),
    );
    node.output().into_iter().filter(|l| matches(l)).nth(before).unwrap()
}

fn get(node: &mut NodeProcess, key: &str) -> String {
    let (hit, other) = (format!("cache {key} ="), format!("cache {key}:"));
    ask(node, &format!("cache-get {key}"), |l| l.starts_with(&hit) || l.starts_with(&other))
}

fn put(node: &mut NodeProcess, key: &str, value: &str) -> String {
    let (ok, failed) = (format!("cache-put {key}:"), format!("cache-put {key} failed"));
    ask(node, &format!("cache-put {key} {value}"), |l| l.starts_with(&ok) || l.starts_with(&failed))
}

/// (owner of `key`, nodes the cache is spread over) as `node` sees them.
fn owner(node: &mut NodeProcess, key: &str) -> (String, String) {
    let prefix = format!("cache-owner {key}: ");
    let line = ask(node, &format!("cache-owner {key}"), |l| l.starts_with(&prefix));
    let rest = line.strip_prefix(&prefix).unwrap();
    let (owner, nodes) = rest.split_once(" (nodes ").unwrap();
    (owner.to_string(), nodes.trim_end_matches(')').to_string())
}

/// Waits until `node` sees the cache spread over exactly `nodes`.
fn until_spread_over(node: &mut NodeProcess, nodes: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, seen) = owner(node, "probe");
        if seen == nodes {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} sees the cache on {seen}, not {nodes}",
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
        until_spread_over(n, "n1,n2,n3");
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
            format!("cache-put {key}: stored on {owner}")
        );
    }
    for (key, owner) in keys.iter().zip(&owners) {
        assert_eq!(get(&mut n3, key), format!("cache {key} = value of {key} (owner {owner})"));
    }
    assert_eq!(
        get(&mut n2, &keys[0]),
        format!("cache {} = value of {} (owner {})", keys[0], keys[0], owners[0])
    );
    assert_eq!(
        get(&mut n3, "never-stored"),
        format!("cache never-stored: miss (owner {})", owner(&mut n3, "never-stored").0)
    );

    // Kill n2, the owner of some keys: a get of one of them is a miss (its entries died with
    // it, and while it is not yet known to be gone the call times out), never a hang or a crash.
    let lost = keys.iter().zip(&owners).find(|(_, o)| *o == "n2").map(|(k, _)| k.clone()).unwrap();
    n2.kill();
    let line = get(&mut n1, &lost);
    assert!(line.starts_with(&format!("cache {lost}: miss")), "{line}");
    for n in [&mut n1, &mut n3] {
        until_spread_over(n, "n1,n3");
    }
    assert!(n1.is_running() && n3.is_running());

    // Its keys now belong to the survivors, which agree on the new owner; puts go there.
    let (new_owner, _) = owner(&mut n1, &lost);
    assert_ne!(new_owner, "n2");
    assert_eq!(owner(&mut n3, &lost).0, new_owner);
    assert_eq!(put(&mut n1, &lost, "again"), format!("cache-put {lost}: stored on {new_owner}"));
    assert_eq!(get(&mut n3, &lost), format!("cache {lost} = again (owner {new_owner})"));
    // Keys of the survivors did not move and kept their values.
    let (kept, kept_owner) = keys.iter().zip(&owners).find(|(_, o)| *o != "n2").unwrap();
    assert_eq!(get(&mut n3, kept), format!("cache {kept} = value of {kept} (owner {kept_owner})"));
}
