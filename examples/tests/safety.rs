//! The cluster's safety under restarts and partitions, on real `foundation node` processes:
//! a restarted node is never granted a lock another node holds (with or without seeds);
//! singletons run only on the nodes that declared them and two copies are never active at
//! once (checked on the copies' own history, written while each believes its lease valid);
//! members can be forgotten (stable zero-config names, `cluster remove`); a leave notice in
//! another node's name is not believed, nor a suspect notice about a live node.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{Value, WAIT, json, number, seen, start_node, text, until, wait, wait_n};

/// Whether the node printed an event holding every field of `pattern`.
fn printed(node: &NodeProcess, pattern: Value) -> bool {
    !seen(node, pattern).is_empty()
}

/// `singleton_started` of `boss`, the singleton these tests declare.
fn boss_started() -> Value {
    json!({"event": "singleton_started", "name": "boss"})
}

/// `singleton_stopped` of `boss`.
fn boss_stopped() -> Value {
    json!({"event": "singleton_stopped", "name": "boss"})
}

/// Whether the node printed anything about a singleton (started or stopped).
fn printed_singleton(node: &NodeProcess) -> bool {
    let singleton = |e: &Value| e["event"].as_str().is_some_and(|k| k.starts_with("singleton_"));
    seen(node, json!({})).iter().any(singleton)
}

/// `member_up` of `name`.
fn up(name: &str) -> Value {
    json!({"event": "member_up", "name": name})
}

/// `member_down` of `name`.
fn down(name: &str) -> Value {
    json!({"event": "member_down", "name": name})
}

/// A fresh file for singleton histories, in this test's own directory.
fn history_file(test: &str) -> PathBuf {
    let dir = foundation_cluster::testkit::state_home().join("histories");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{test}.log"));
    let _ = std::fs::remove_file(&file);
    file
}

/// Each copy's active interval (first and last `active` time), by copy, with its node.
fn active_intervals(file: &Path) -> BTreeMap<String, (String, u128, u128)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut copies: BTreeMap<String, (String, u128, u128)> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [what, node, copy, ms] = words[..] else { panic!("malformed history line `{line}`") };
        if what != "active" {
            continue;
        }
        let ms: u128 = ms.parse().unwrap();
        let entry = copies.entry(copy.to_string()).or_insert((node.to_string(), ms, ms));
        entry.1 = entry.1.min(ms);
        entry.2 = entry.2.max(ms);
    }
    copies
}

/// Fails if two copies were active at overlapping times: the checker over the history.
fn assert_no_overlap(file: &Path) {
    let copies = active_intervals(file);
    let mut intervals: Vec<_> = copies.iter().collect();
    intervals.sort_by_key(|(_, (_, first, _))| *first);
    for pair in intervals.windows(2) {
        let (a, (a_node, _, a_last)) = pair[0];
        let (b, (b_node, b_first, _)) = pair[1];
        assert!(
            a_last < b_first,
            "copies {a} on {a_node} (active until {a_last}) and {b} on {b_node} (active from {b_first}) overlap; \
             history: {copies:#?}"
        );
    }
}

/// The nodes whose copies were ever active.
fn active_nodes(file: &Path) -> Vec<String> {
    let mut nodes: Vec<String> = active_intervals(file).into_values().map(|(n, _, _)| n).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Restarted with the same command line and no seeds (the README's first node), n1 remembers
/// the members it knew in its state directory: it is not granted the lock n2 holds, and the
/// next holder's token is larger. Before, it was a new cluster of one and granted the lock at
/// once with the same token.
#[test]
fn a_restarted_seedless_node_is_never_granted_a_held_lock() {
    let ports = [free_port(), free_port(), free_port()];
    let coord = ["--coordination", "--cookie", "restart"];
    let mut n1 = start_node("n1", ports[0], &[], &coord);
    let mut n2 = start_node("n2", ports[1], &[ports[0]], &coord);
    let n3 = start_node("n3", ports[2], &[ports[0]], &coord);
    for n in [&n1, &n2, &n3] {
        wait(n, json!({"event": "coordination_ready"}));
    }
    wait(&n2, up("n3"));
    let lock_acquired = json!({"event": "lock_acquired", "name": "L"});
    let leader = json!({"event": "leader", "election": "E"});
    n2.send_line("lock L 30000").unwrap();
    let held = number(&wait(&n2, lock_acquired.clone()), "token");
    n2.send_line("elect E").unwrap();
    let term = number(&wait(&n2, leader.clone()), "term");

    n1.kill();
    wait(&n2, down("n1"));
    let mut n1 = start_node("n1", ports[0], &[], &coord);
    let state = wait(&n1, json!({"event": "state"}));
    assert_eq!(state["remembers"], json!(["n2", "n3"]), "{state}");
    // At once, as the user did: it must not be granted the lock n2 holds.
    n1.send_line("lock L 30000 3000").unwrap();
    let refused = wait(&n1, json!({"event": "lock_failed", "name": "L"}));
    assert!(!printed(&n1, lock_acquired.clone()), "{:?}", n1.output());
    let error = text(&refused, "error");
    assert!(error.contains("held by n2") || error.contains("no majority"), "{refused}");
    n1.send_line("elect E").unwrap();

    // Released by n2, it goes to n1 with a larger token; the election's next term is larger.
    n1.send_line("lock L 30000").unwrap();
    n2.send_line("unlock L").unwrap();
    let next = number(&wait(&n1, lock_acquired), "token");
    assert!(next > held, "token {next} after a restart is not above {held}");
    n2.send_line("resign E").unwrap();
    let next_term = number(&wait(&n1, leader.clone()), "term");
    assert!(next_term > term, "term {next_term} is not above {term}");
    assert!(!printed(&n3, leader), "n3 never stood");
}

/// A node that did not declare the singleton is never placed, however low its name: `a` has
/// the lowest name, `b` and `c` declare `boss`, and `boss` runs on `b`. A candidate that joins
/// later does not take it over; with the only declaring node left, it runs there.
#[test]
fn a_singleton_runs_only_on_the_nodes_that_declared_it() {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let single = ["--singleton", "boss", "--cookie", "placing"];
    let a = start_node("a", ports[0], &[], &["--cookie", "placing"]);
    let b = start_node("b", ports[1], &[ports[0]], &single);
    wait(&b, boss_started());
    let c = start_node("c", ports[2], &[ports[0]], &single);
    wait(&c, up("b"));
    // A lower-named candidate joining later: the running copy stays where it is.
    let a0 = start_node("a0", ports[3], &[ports[0]], &single);
    wait(&a0, up("c"));
    std::thread::sleep(std::time::Duration::from_secs(2)); // a window for a wrong start to show
    for n in [&a, &c, &a0] {
        assert!(!printed(n, boss_started()), "{}: {:?}", n.name(), n.output());
    }
    assert!(!printed_singleton(&a), "a never declared it: {:?}", a.output());

    // b goes (SIGTERM: a planned departure, its lease given back): the lowest candidate up, a0.
    let mut b = b;
    assert!(b.terminate(WAIT));
    wait(&a0, boss_started());
    assert!(!printed(&c, boss_started()));
}

/// With one declaring node among three, the singleton runs there (and nowhere else), even
/// though the two others have lower names.
#[test]
fn one_declaring_node_of_three_runs_the_singleton() {
    let ports = [free_port(), free_port(), free_port()];
    let a = start_node("a", ports[0], &[], &["--cookie", "one"]);
    let b = start_node("b", ports[1], &[ports[0]], &["--cookie", "one"]);
    let c = start_node("c", ports[2], &[ports[0]], &["--singleton", "boss", "--cookie", "one"]);
    wait(&c, boss_started());
    for n in [&a, &b] {
        assert!(!printed_singleton(n), "{}: {:?}", n.name(), n.output());
    }
}

/// The holder is frozen (SIGSTOP): another candidate starts the singleton only after the
/// frozen holder's lease ran out, and the frozen copy, when thawed, never acts again. The
/// checker reads every copy's history: no two copies active at once.
#[test]
fn a_frozen_holder_and_its_successor_are_never_active_at_once() {
    let ports = [free_port(), free_port(), free_port()];
    let log = history_file("frozen");
    let log_arg = log.to_string_lossy().to_string();
    let args = ["--singleton", "boss", "--singleton-log", log_arg.as_str(), "--cookie", "frozen"];
    let n1 = start_node("n1", ports[0], &[], &args);
    let n2 = start_node("n2", ports[1], &[ports[0]], &args);
    let n3 = start_node("n3", ports[2], &[ports[0]], &args);
    wait(&n1, boss_started());
    wait(&n2, up("n3"));
    until(|| active_nodes(&log) == ["n1"], || format!("n1's copy never acted: {:?}", active_nodes(&log)));

    n1.freeze();
    until(
        || printed(&n2, boss_started()) || printed(&n3, boss_started()),
        || "no survivor took the singleton over".into(),
    );
    let successor = if printed(&n2, boss_started()) { &n2 } else { &n3 };
    until(
        || active_nodes(&log).contains(&successor.name().to_string()),
        || format!("{}'s copy never acted", successor.name()),
    );
    // Thawed: its lease is long over; it must stop without acting once more.
    n1.thaw();
    wait(&n1, boss_stopped());
    std::thread::sleep(std::time::Duration::from_millis(500)); // let a wrong `active` line show
    assert_no_overlap(&log);
}

/// The holder is cut off from the two others (the in-process partition hook, both sides): it
/// loses its lease and stops, and the other side starts the singleton only after that.
#[test]
fn a_holder_cut_off_stops_before_the_majority_starts_another_copy() {
    let ports = [free_port(), free_port(), free_port()];
    let log = history_file("cut-off");
    let log_arg = log.to_string_lossy().to_string();
    let args = ["--singleton", "boss", "--singleton-log", log_arg.as_str(), "--cookie", "cut"];
    let mut n1 = start_node("n1", ports[0], &[], &args);
    let mut n2 = start_node("n2", ports[1], &[ports[0]], &args);
    let mut n3 = start_node("n3", ports[2], &[ports[0]], &args);
    wait(&n1, boss_started());
    wait(&n2, up("n3"));
    wait(&n3, up("n2"));
    until(|| active_nodes(&log) == ["n1"], || "n1's copy never acted".into());

    n1.send_line("partition n2,n3").unwrap();
    n2.send_line("partition n1").unwrap();
    n3.send_line("partition n1").unwrap();
    let stopped = wait(&n1, boss_stopped());
    assert!(text(&stopped, "reason").contains("lease"), "{stopped}");
    until(
        || printed(&n2, boss_started()) || printed(&n3, boss_started()),
        || "the majority side never started the singleton".into(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_no_overlap(&log);

    // Healed: still one copy.
    for n in [&mut n1, &mut n2, &mut n3] {
        n.send_line("heal").unwrap();
    }
    wait_n(&n1, up("n2"), 2);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_no_overlap(&log);
}

/// Starts `foundation node --json --cluster` (no name, no address) on discovery port `gossip`.
fn zero_config(gossip: u16, extra: &[&str]) -> NodeProcess {
    let mut args = vec!["node", "--json", "--cluster", "--cookie", "zero"];
    args.extend_from_slice(extra);
    let process = NodeProcess::spawn_with_env(
        "zero-config",
        env!("CARGO_BIN_EXE_foundation"),
        &args,
        [
            ("FOUNDATION_LOG", support::log_level()),
            ("FOUNDATION_CLUSTER__GOSSIP_PORT", gossip.to_string()),
            ("FOUNDATION_CLUSTER__GOSSIP_INTERVAL", "200ms".to_string()),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let listening = wait(&process, json!({"event": "listening"}));
    assert!(text(&listening, "addr").starts_with("127.0.0.1:"), "{listening}");
    process
}

/// The name in the node's `listening` event.
fn name_of(node: &NodeProcess) -> String {
    text(&wait(node, json!({"event": "listening"})), "node").to_string()
}

/// Three zero-config nodes, each killed and restarted in turn (three crash-restarts): each
/// comes back under its own name and address, so the cluster still knows three members and
/// still has a majority (the singleton keeps running). Before, each restart added a
/// `node-PORT` member, and after three the cluster knew six with three up: no majority.
#[test]
fn zero_config_nodes_keep_their_names_across_crash_restarts() {
    let gossip = free_port();
    let single = ["--singleton", "boss"];
    let mut nodes: Vec<NodeProcess> = (0..3).map(|_| zero_config(gossip, &single)).collect();
    let names: Vec<String> = nodes.iter().map(name_of).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "three nodes, three names: {names:?}");
    for n in &nodes {
        for other in names.iter().filter(|o| **o != name_of(n)) {
            wait(n, up(other));
        }
    }
    for round in 0..3 {
        nodes[round].kill();
        let restarted = zero_config(gossip, &single);
        assert_eq!(name_of(&restarted), names[round], "restart {round} took another name");
        nodes[round] = restarted;
        for other in names.iter().filter(|o| **o != names[round]) {
            wait(&nodes[round], up(other));
        }
    }
    // Three members, all up: a majority, so exactly one node runs the singleton.
    let holds = |n: &NodeProcess| {
        let last = seen(n, json!({})).into_iter().rev().find(|e| {
            e["name"] == "boss" && (e["event"] == "singleton_started" || e["event"] == "singleton_stopped")
        });
        last.is_some_and(|e| e["event"] == "singleton_started")
    };
    until(
        || nodes.iter().filter(|n| holds(n)).count() == 1,
        || format!("holders: {:?}", nodes.iter().filter(|n| holds(n)).map(name_of).collect::<Vec<_>>()),
    );
}

/// Two of three nodes are stopped for good: the last one has no majority (1 of 3 known), so
/// its singleton stops. `foundation cluster remove` of both makes it a cluster of one again and
/// the singleton runs; a new start of a removed node joins again as usual.
#[test]
fn removed_nodes_no_longer_count_and_a_new_start_joins_again() {
    let ports = [free_port(), free_port(), free_port()];
    let args = ["--singleton", "boss", "--cookie", "removal"];
    // n1 has the two others as seeds: once removed, a seed must not count as a node still
    // joining (before, it did forever, and n1 never had a majority again).
    let n1 = start_node("n1", ports[0], &[ports[1], ports[2]], &args);
    let mut n2 = start_node("n2", ports[1], &[ports[0]], &args);
    let mut n3 = start_node("n3", ports[2], &[ports[0]], &args);
    wait(&n1, boss_started());
    wait(&n1, up("n3"));
    n2.kill();
    n3.kill();
    let stopped = wait(&n1, boss_stopped());
    assert!(text(&stopped, "reason").contains("lease"), "{stopped}");

    // A node that is up cannot be removed.
    let remove = |node: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
            .args(["cluster", "remove", node, "--seeds", &format!("127.0.0.1:{}", ports[0])])
            .args(["--cookie", "removal"])
            .env("FOUNDATION_LOG", "error")
            .env("XDG_STATE_HOME", foundation_cluster::testkit::state_home())
            .output()
            .unwrap()
    };
    let refused = remove("n1");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is up"), "{refused:?}");

    for node in ["n2", "n3"] {
        let out = remove(node);
        assert!(out.status.success(), "{out:?}");
        wait(&n1, json!({"event": "member_removed", "name": node}));
    }
    wait_n(&n1, boss_started(), 2);
    // n1's state directory forgot them too.
    let state = wait(&n1, json!({"event": "state"}));
    let members = std::fs::read_to_string(Path::new(text(&state, "dir")).join("members.json")).unwrap();
    let members: Value = serde_json::from_str(&members).unwrap();
    assert_eq!(members["members"], json!({}), "removed members still remembered: {members}");
    let removed: Vec<&String> = members["removed"].as_object().unwrap().keys().collect();
    assert_eq!(removed, ["n2", "n3"], "{members}");
    // With their addresses, so that a seed there would no longer count as a node still joining.
    assert!(members["removed"]["n3"]["addr"].is_string(), "{members}");

    // A new start of n3 joins as usual (it started after the removal).
    let n3 = start_node("n3", ports[2], &[ports[0]], &args);
    wait(&n1, up("n3"));
    wait(&n3, up("n1"));
    std::thread::sleep(std::time::Duration::from_millis(1500)); // a window for a refusal to show
    // The last membership event about n3 (up, unreachable, down, left, removed).
    let last = seen(&n1, json!({"name": "n3"})).pop();
    assert!(last.is_some_and(|e| e["event"] == "member_up"), "{:?}", n1.output());

    // A break after the rejoin (n3 frozen until n1 marks it down) does not remove it again:
    // the removal covers only processes started before it.
    let count = |pattern: Value| seen(&n1, pattern).len();
    let (downs, ups) = (count(down("n3")), count(up("n3")));
    n3.freeze();
    wait_n(&n1, down("n3"), downs + 1);
    n3.thaw();
    wait_n(&n1, up("n3"), ups + 1);
    let removed = json!({"event": "member_removed", "name": "n3"});
    assert_eq!(count(removed), 1, "removed again after the break: {:?}", n1.output());

    // n1 restarted remembers n3 (and not n2), so it is not a cluster of one.
    let mut n1 = n1;
    n1.kill();
    let n1 = start_node("n1", ports[0], &[ports[1], ports[2]], &args);
    let state = wait(&n1, json!({"event": "state"}));
    assert_eq!(state["remembers"], json!(["n3"]), "{state}");
    wait(&n1, up("n3"));
    drop(n3);
}

/// A removed process that was only frozen, thawed, is refused without ever counting as up
/// again; a new start of it joins.
#[test]
fn a_removed_process_that_comes_back_is_refused_until_it_restarts() {
    let ports = [free_port(), free_port(), free_port()];
    let args = ["--cookie", "thawed"];
    let n1 = start_node("n1", ports[0], &[], &args);
    let _n2 = start_node("n2", ports[1], &[ports[0]], &args);
    let mut n3 = start_node("n3", ports[2], &[ports[0]], &args);
    wait(&n1, up("n3"));
    n3.freeze();
    wait(&n1, down("n3"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .args([
            "cluster",
            "remove",
            "n3",
            "--seeds",
            &format!("127.0.0.1:{}", ports[0]),
            "--cookie",
            "thawed",
        ])
        .env("FOUNDATION_LOG", "error")
        .env("XDG_STATE_HOME", foundation_cluster::testkit::state_home())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait(&n1, json!({"event": "member_removed", "name": "n3"}));
    n3.thaw();
    // It redials; give it a few rounds in which a wrong admission would show.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after: Vec<Value> = seen(&n1, json!({}))
        .into_iter()
        .skip_while(|e| !(e["event"] == "member_removed" && e["name"] == "n3"))
        .collect();
    assert!(
        !after.iter().any(|e| e["event"] == "member_up" && e["name"] == "n3"),
        "the removed process counted again: {after:?}"
    );
    n3.kill();
    let _n3 = start_node("n3", ports[2], &[ports[0]], &args);
    wait(&n1, up("n3"));
}

/// A peer that sends a leave notice in another node's name is not believed: when that node is
/// later killed, it is down, not "left" (a left node no longer counts towards majorities).
#[test]
fn a_leave_notice_in_another_nodes_name_is_not_believed() {
    let ports = [free_port(), free_port(), free_port()];
    let n1 = start_node("n1", ports[0], &[], &["--cookie", "liar"]);
    let mut n2 = start_node("n2", ports[1], &[ports[0]], &["--cookie", "liar"]);
    let mut n3 = start_node("n3", ports[2], &[ports[0]], &["--cookie", "liar"]);
    wait(&n2, up("n3"));
    wait(&n1, up("n3"));
    n2.send_line("forge-leaving n3").unwrap();
    let forged = wait(&n2, json!({"event": "forged_leaving", "node": "n3"}));
    assert!(number(&forged, "told") > 0, "{forged}");
    n3.kill();
    let left = json!({"event": "member_left", "name": "n3"});
    until(|| printed(&n1, down("n3")) || printed(&n1, left.clone()), || "n3 never went".into());
    assert!(printed(&n1, down("n3")), "{:?}", n1.output());
    assert!(!printed(&n1, left), "a forged notice was believed: {:?}", n1.output());
}

/// A peer that tells every other node that a watcher gave up on a live node is not believed:
/// each pings the node itself, hears it, and keeps it up. (The same notice from its real watcher
/// about a frozen node is believed: `cluster.rs`,
/// `a_frozen_node_is_found_by_its_one_watcher_and_confirmed_by_every_other_node`.)
#[test]
fn a_suspect_notice_about_a_live_node_is_not_believed() {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let args = ["--cookie", "suspicious"];
    let env = [("FOUNDATION_CLUSTER__MONITORED_PEERS", "1")];
    let n1 = support::start_node_with_env("n1", ports[0], &[], &args, &env);
    let n2 = support::start_node_with_env("n2", ports[1], &[ports[0]], &args, &env);
    let n3 = support::start_node_with_env("n3", ports[2], &[ports[0]], &args, &env);
    let mut n4 = support::start_node_with_env("n4", ports[3], &[ports[0]], &args, &env);
    for node in [&n1, &n2, &n4] {
        wait(node, up("n3"));
    }
    for other in ["n1", "n2"] {
        wait(&n4, up(other));
    }
    wait(&n3, up("n4"));
    let before: Vec<usize> = [&n1, &n2].iter().map(|n| seen(n, down("n3")).len()).collect();
    // Once n4 reaches every other node's heartbeat actor (their groups arrive after `member_up`):
    // until then a notice reaches fewer, which proves nothing.
    let mut sent = 0;
    support::until(
        || {
            n4.send_line("forge-suspect n3").unwrap();
            sent += 1;
            let forged = wait_n(&n4, json!({"event": "forged_suspect", "node": "n3"}), sent).pop().unwrap();
            number(&forged, "told") >= 3
        },
        || "n4 never reached the three other nodes' heartbeat actors".to_string(),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for round in 1..=3 {
        n4.send_line("forge-suspect n3").unwrap();
        let forged =
            wait_n(&n4, json!({"event": "forged_suspect", "node": "n3"}), sent + round).pop().unwrap();
        assert!(number(&forged, "told") >= 3, "{forged}");
        // Longer than a check waits for its answer (1 s): a check that went unanswered would
        // have made n3 unreachable by now.
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    for (node, before) in [&n1, &n2].into_iter().zip(before) {
        assert_eq!(seen(node, down("n3")).len(), before, "a forged notice was believed: {:?}", node.output());
    }
}
