//! The coordination primitives across three `foundation node --coordination` processes, each
//! under a real `kill -9` of a node: a lock held by a killed node passes to a waiting node with
//! a larger fencing token; a killed leader is replaced by a leader with a larger term; a barrier
//! stops counting a killed node's participant; a task whose winning bidder is killed is
//! announced again and run by another bidder.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{Value, json, number, seen, start_node, text, until, wait, wait_n};

/// Three connected nodes n1, n2, n3 (n2 and n3 seeded with n1).
fn cluster() -> [NodeProcess; 3] {
    cluster_with(&[])
}

/// A `--coordination` node.
fn node(name: &str, port: u16, seeds: &[u16], extra: &[&str]) -> NodeProcess {
    let options = [&["--cookie", "coord", "--coordination"][..], extra].concat();
    start_node(name, port, seeds, &options)
}

/// [`cluster`], with extra options for n1.
fn cluster_with(n1_options: &[&str]) -> [NodeProcess; 3] {
    cluster_on([free_port(), free_port(), free_port()], n1_options)
}

fn cluster_on(ports: [u16; 3], n1_options: &[&str]) -> [NodeProcess; 3] {
    let n1 = node("n1", ports[0], &[], n1_options);
    let n2 = node("n2", ports[1], &[ports[0]], &[]);
    let n3 = node("n3", ports[2], &[ports[0]], &[]);
    for (me, others) in [(&n1, ["n2", "n3"]), (&n2, ["n1", "n3"]), (&n3, ["n1", "n2"])] {
        for other in others {
            wait(me, json!({"event": "member_up", "name": other}));
        }
        // It has read the others' tables and grants locks.
        wait(me, json!({"event": "coordination_ready"}));
    }
    [n1, n2, n3]
}

/// The `lock_acquired` events of lock `name` printed so far.
fn acquired(node: &NodeProcess, name: &str) -> Vec<Value> {
    seen(node, json!({"event": "lock_acquired", "name": name}))
}

/// The names of a `barrier_passed` event's participants (`NODE#PROCESS-N`).
fn participants(passed: &Value) -> Vec<&str> {
    let all = passed["participants"].as_array().unwrap_or_else(|| panic!("no participants in {passed}"));
    all.iter().map(|p| p.as_str().unwrap_or_else(|| panic!("not a participant: {p}"))).collect()
}

#[test]
fn a_lock_held_by_a_killed_node_passes_on_with_a_larger_fencing_token() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let [mut n1, mut n2, mut n3] = cluster_with(&["--metrics", &metrics]);
    n1.send_line("lock orders 1500").unwrap();
    let first = number(&wait(&n1, json!({"event": "lock_acquired", "name": "orders"})), "token");
    // The node's Prometheus endpoint counts it.
    let (status, body) = support::request(&metrics, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(body.contains("foundation_lock_acquired_total 1"), "{body}");

    // n2 and n3 ask while n1 holds it (and keeps renewing it): neither gets it.
    n2.send_line("lock orders 1500").unwrap();
    n3.send_line("lock orders 1500").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(acquired(&n2, "orders").is_empty(), "n2 got a lock n1 holds: {:?}", n2.output());
    assert!(acquired(&n3, "orders").is_empty(), "n3 got a lock n1 holds: {:?}", n3.output());

    // kill -9 the holder: once its lease runs out, one of the waiting nodes gets the lock.
    n1.kill();
    let (winner, other) = loop {
        if !acquired(&n2, "orders").is_empty() {
            break (&mut n2, &mut n3);
        }
        if !acquired(&n3, "orders").is_empty() {
            break (&mut n3, &mut n2);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(n2.is_running() && n3.is_running());
    };
    let second = number(&acquired(winner, "orders")[0], "token");
    assert!(second > first, "the new holder's token {second} is not above the killed holder's {first}");
    assert!(acquired(other, "orders").is_empty(), "two holders at once");

    // Released, it goes to the last waiter, with a larger token still.
    winner.send_line("unlock orders").unwrap();
    let third = number(&wait(other, json!({"event": "lock_acquired", "name": "orders"})), "token");
    assert!(third > second, "token {third} is not above {second}");

    // A lock nobody holds is acquired at once; unknown commands and bad arguments are refused.
    other.send_line("lock other-lock").unwrap();
    wait(other, json!({"event": "lock_acquired", "name": "other-lock"}));
    other.send_line("lock x y").unwrap();
    let refused = wait(other, json!({"event": "error", "command": "lock x y"}));
    assert!(text(&refused, "error").contains("`lock` takes a lease and a wait in milliseconds"), "{refused}");
    other.send_line("unlock never-held").unwrap();
    wait(other, json!({"event": "lock_not_held", "name": "never-held"}));
}

#[test]
fn a_killed_leader_is_replaced_by_one_with_a_larger_term() {
    let [mut n1, mut n2, mut n3] = cluster();
    for n in [&mut n1, &mut n2, &mut n3] {
        n.send_line("elect planner").unwrap();
    }
    let leader_lines = |n: &NodeProcess| seen(n, json!({"event": "leader", "election": "planner"}));
    let mut nodes = [n1, n2, n3];
    until(|| nodes.iter().any(|n| !leader_lines(n).is_empty()), || "nobody was elected".into());
    // Give every candidate time to campaign: still one leader.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let leaders: Vec<usize> = (0..3).filter(|&i| !leader_lines(&nodes[i]).is_empty()).collect();
    assert_eq!(leaders.len(), 1, "more than one leader: {leaders:?}");
    let old = leaders[0];
    let old_term = number(&leader_lines(&nodes[old])[0], "term");

    nodes[old].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    until(
        || survivors.iter().any(|&i| !leader_lines(&nodes[i]).is_empty()),
        || format!("no new leader after {} was killed", nodes[old].name()),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let new_leaders: Vec<usize> =
        survivors.iter().copied().filter(|&i| !leader_lines(&nodes[i]).is_empty()).collect();
    assert_eq!(new_leaders.len(), 1, "more than one new leader");
    let new_term = number(&leader_lines(&nodes[new_leaders[0]])[0], "term");
    assert!(new_term > old_term, "new term {new_term} is not above {old_term}");
}

#[test]
fn a_barrier_stops_counting_a_killed_nodes_participant() {
    let [mut n1, mut n2, mut n3] = cluster();
    n1.send_line("barrier phase-1 3").unwrap();
    n3.send_line("barrier phase-1 3").unwrap();
    // Both arrivals are known everywhere before n3 dies (arrivals are re-sent until it fills).
    std::thread::sleep(std::time::Duration::from_secs(1));
    n3.kill();
    wait(&n1, json!({"event": "member_down", "name": "n3"}));
    wait(&n2, json!({"event": "member_down", "name": "n3"}));

    // n2's first participant makes three arrivals counting n3's: the barrier must not fill.
    n2.send_line("barrier phase-1 3").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    for n in [&n1, &n2] {
        let passed = seen(n, json!({"event": "barrier_passed", "name": "phase-1"}));
        assert!(passed.is_empty(), "{} filled with a dead participant: {passed:?}", n.name());
    }

    // A third live participant fills it, on every node, without n3's.
    n2.send_line("barrier phase-1 3").unwrap();
    for n in [&n1, &n2] {
        let passed = wait(n, json!({"event": "barrier_passed", "name": "phase-1"}));
        let names = participants(&passed);
        assert!(!names.iter().any(|p| p.contains("n3#")), "counted the killed node's participant: {passed}");
        assert_eq!(names.iter().filter(|p| p.contains("n2#")).count(), 2, "{passed}");
    }
    assert_eq!(seen(&n2, json!({"event": "barrier_passed", "name": "phase-1"})).len(), 2);

    // Bad arguments are refused with the usage.
    n1.send_line("barrier bad 0").unwrap();
    let refused = wait(&n1, json!({"event": "error", "command": "barrier bad 0"}));
    assert!(text(&refused, "error").contains("`barrier` takes a positive number of parties"), "{refused}");
}

#[test]
fn a_task_whose_winner_is_killed_is_announced_again() {
    let [mut n1, mut n2, mut n3] = cluster();
    n2.send_line("bid summarize 1").unwrap();
    n3.send_line("bid summarize 2").unwrap();
    let bidding = wait(&n2, json!({"event": "bidding", "capability": "summarize"}));
    assert_eq!(bidding["cost"].as_f64(), Some(1.0), "{bidding}");
    let bidding = wait(&n3, json!({"event": "bidding", "capability": "summarize"}));
    assert_eq!(bidding["cost"].as_f64(), Some(2.0), "{bidding}");

    // The cheapest bidder wins; allocate until both bidders are visible from n1 (pg syncs).
    let allocated = |n: &NodeProcess| seen(n, json!({"event": "allocated"}));
    let outcomes = |n: &NodeProcess| allocated(n).len() + seen(n, json!({"event": "allocate_failed"})).len();
    for attempt in 0.. {
        let before = outcomes(&n1);
        n1.send_line("allocate summarize 10").unwrap();
        until(|| outcomes(&n1) > before, || format!("no outcome of allocation {attempt}: {:?}", n1.output()));
        if allocated(&n1).last().is_some_and(|done| awarded(done, "n2", 1.0, 1)) {
            break;
        }
        assert!(attempt < 50, "n1 never awarded to n2: {:?}", n1.output());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // A long task: its winner n2 is killed while it works; the task goes to n3.
    let awarded_before = allocated(&n1).len();
    let performing = json!({"event": "performing"});
    let performed_before = seen(&n2, performing.clone()).len();
    // (n3 may have run some of the first tasks, before n1 saw n2's bidder.)
    let n3_before = seen(&n3, performing.clone()).len();
    n1.send_line("allocate summarize 3000").unwrap();
    wait_n(&n2, performing.clone(), performed_before + 1);
    n2.kill();
    let done = wait_n(&n1, json!({"event": "allocated"}), awarded_before + 1);
    let done = done.last().unwrap();
    assert!(awarded(done, "n3", 2.0, 2), "{done}");
    assert_eq!(done["result"]["done_by"], "n3", "{done}");
    assert_eq!(seen(&n3, performing).len(), n3_before + 1);

    // Nobody bids for an unknown capability: a clear error.
    n1.send_line("allocate nobody 1").unwrap();
    let failed = wait(&n1, json!({"event": "allocate_failed", "capability": "nobody"}));
    assert!(text(&failed, "error").contains("no bids"), "{failed}");
}

/// Whether an `allocated` event gave the task to `node` at `cost` in `rounds` round(s).
fn awarded(done: &Value, node: &str, cost: f64, rounds: u64) -> bool {
    done["node"] == node && done["cost"].as_f64() == Some(cost) && done["rounds"].as_u64() == Some(rounds)
}

#[test]
fn only_the_majority_side_of_a_partition_can_take_a_lock() {
    let [mut n1, mut n2, mut n3] = cluster();
    // {n1, n2} | {n3}: each side refuses the other.
    n1.send_line("partition n3").unwrap();
    n2.send_line("partition n3").unwrap();
    n3.send_line("partition n1,n2").unwrap();
    for n in [&n1, &n2] {
        wait(n, json!({"event": "member_down", "name": "n3"}));
    }
    wait_n(&n3, json!({"event": "member_down"}), 2);

    n3.send_line("lock jobs 1000 2000").unwrap();
    let refused = wait(&n3, json!({"event": "lock_failed", "name": "jobs"}));
    let error = text(&refused, "error");
    // (n3 grants itself nothing either if it was cut off before it had read the others' tables.)
    assert!(
        error.contains("no majority granted it") && error.contains("of 2 nodes needed, 3 known"),
        "{refused}"
    );
    n1.send_line("lock jobs 1000").unwrap();
    let first = number(&wait(&n1, json!({"event": "lock_acquired", "name": "jobs"})), "token");

    // Healed, n3 waits for n1's lease like everyone else; released, it gets a larger token.
    for n in [&mut n1, &mut n2, &mut n3] {
        n.send_line("heal").unwrap();
    }
    wait_n(&n3, json!({"event": "member_up", "name": "n1"}), 2);
    // Once n3 can take a lock of its own, it sees the majority again.
    n3.send_line("lock probe 1000").unwrap();
    wait(&n3, json!({"event": "lock_acquired", "name": "probe"}));
    n3.send_line("unlock probe").unwrap();
    n3.send_line("lock jobs 1000").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(acquired(&n3, "jobs").is_empty(), "n3 took a lock n1 holds");
    n1.send_line("unlock jobs").unwrap();
    let second = number(&wait(&n3, json!({"event": "lock_acquired", "name": "jobs"})), "token");
    assert!(second > first, "token {second} is not above {first}");
}

#[test]
fn a_restarted_node_grants_nothing_until_it_has_read_enough_tables() {
    let ports = [free_port(), free_port(), free_port()];
    let [mut n1, mut n2, mut n3] = cluster_on(ports, &[]);
    n1.send_line("lock jobs 1000").unwrap();
    let first = number(&wait(&n1, json!({"event": "lock_acquired", "name": "jobs"})), "token");
    n1.send_line("unlock jobs").unwrap();
    wait(&n1, json!({"event": "lock_released", "name": "jobs"}));

    // n2 dies and n3 restarts with an empty table. n3 may have granted leases before (it
    // forgot them), and only n1 can tell it what it missed, which is not enough: n3 must not
    // make a majority with n1.
    n2.kill();
    n3.kill();
    wait(&n1, json!({"event": "member_down", "name": "n2"}));
    let n3 = node("n3", ports[2], &[ports[0]], &[]);
    wait(&n3, json!({"event": "member_up", "name": "n1"}));
    n1.send_line("lock jobs 1000 3000").unwrap();
    let refused = wait(&n1, json!({"event": "lock_failed", "name": "jobs"}));
    assert!(text(&refused, "error").contains("no majority granted it"), "{refused}");
    assert!(seen(&n3, json!({"event": "coordination_ready"})).is_empty(), "n3 grants with only n1's table");

    // n2 back: n3 has read both tables and grants again; tokens still grow.
    let _n2 = node("n2", ports[1], &[ports[0]], &[]);
    wait(&n3, json!({"event": "coordination_ready"}));
    n1.send_line("lock jobs 1000").unwrap();
    let second = number(&wait_n(&n1, json!({"event": "lock_acquired", "name": "jobs"}), 2)[1], "token");
    assert!(second > first, "token {second} is not above {first}");
}
