//! The coordination primitives across three `foundation node --coordination` processes, each
//! under a real `kill -9` of a node: a lock held by a killed node passes to a waiting node with
//! a larger fencing token; a killed leader is replaced by a leader with a larger term; a barrier
//! stops counting a killed node's participant; a task whose winning bidder is killed is
//! announced again and run by another bidder.

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{WAIT, number_after, start_node};

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
            me.wait_for(&format!("member up: {other} "), WAIT).unwrap();
        }
        // It has read the others' tables and grants locks.
        me.wait_for("coordination ready", WAIT).unwrap();
    }
    [n1, n2, n3]
}

fn lines_with(node: &NodeProcess, pattern: &str) -> Vec<String> {
    node.output().into_iter().filter(|l| l.contains(pattern)).collect()
}

#[test]
fn a_lock_held_by_a_killed_node_passes_on_with_a_larger_fencing_token() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let [mut n1, mut n2, mut n3] = cluster_with(&["--metrics", &metrics]);
    n1.send_line("lock orders 1500").unwrap();
    let first = number_after(&n1.wait_for("lock orders acquired", WAIT).unwrap(), "token");
    // The node's Prometheus endpoint counts it.
    let (status, body) = support::request(&metrics, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(body.contains("foundation_lock_acquired_total 1"), "{body}");

    // n2 and n3 ask while n1 holds it (and keeps renewing it): neither gets it.
    n2.send_line("lock orders 1500").unwrap();
    n3.send_line("lock orders 1500").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(lines_with(&n2, "lock orders acquired").is_empty(), "n2 got a lock n1 holds: {:?}", n2.output());
    assert!(lines_with(&n3, "lock orders acquired").is_empty(), "n3 got a lock n1 holds: {:?}", n3.output());

    // kill -9 the holder: once its lease runs out, one of the waiting nodes gets the lock.
    n1.kill();
    let (winner, other) = loop {
        if !lines_with(&n2, "lock orders acquired").is_empty() {
            break (&mut n2, &mut n3);
        }
        if !lines_with(&n3, "lock orders acquired").is_empty() {
            break (&mut n3, &mut n2);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(n2.is_running() && n3.is_running());
    };
    let second = number_after(&lines_with(winner, "lock orders acquired")[0], "token");
    assert!(second > first, "the new holder's token {second} is not above the killed holder's {first}");
    assert!(lines_with(other, "lock orders acquired").is_empty(), "two holders at once");

    // Released, it goes to the last waiter, with a larger token still.
    winner.send_line("unlock orders").unwrap();
    let third = number_after(&other.wait_for("lock orders acquired", WAIT).unwrap(), "token");
    assert!(third > second, "token {third} is not above {second}");

    // A lock nobody holds is acquired at once; unknown commands and bad arguments are refused.
    other.send_line("lock other-lock").unwrap();
    other.wait_for("lock other-lock acquired", WAIT).unwrap();
    other.send_line("lock x y").unwrap();
    other.wait_for("`lock` takes a lease and a wait in milliseconds", WAIT).unwrap();
    other.send_line("unlock never-held").unwrap();
    other.wait_for("lock never-held is not held here", WAIT).unwrap();
}

#[test]
fn a_killed_leader_is_replaced_by_one_with_a_larger_term() {
    let [mut n1, mut n2, mut n3] = cluster();
    for n in [&mut n1, &mut n2, &mut n3] {
        n.send_line("elect planner").unwrap();
    }
    let leader_lines = |n: &NodeProcess| lines_with(n, "leader planner term");
    let mut nodes = [n1, n2, n3];
    support::until(|| nodes.iter().any(|n| !leader_lines(n).is_empty()), || "nobody was elected".into());
    // Give every candidate time to campaign: still one leader.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let leaders: Vec<usize> = (0..3).filter(|&i| !leader_lines(&nodes[i]).is_empty()).collect();
    assert_eq!(leaders.len(), 1, "more than one leader: {leaders:?}");
    let old = leaders[0];
    let old_term = number_after(&leader_lines(&nodes[old])[0], "term");

    nodes[old].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    support::until(
        || survivors.iter().any(|&i| !leader_lines(&nodes[i]).is_empty()),
        || format!("no new leader after {} was killed", nodes[old].name()),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let new_leaders: Vec<usize> =
        survivors.iter().copied().filter(|&i| !leader_lines(&nodes[i]).is_empty()).collect();
    assert_eq!(new_leaders.len(), 1, "more than one new leader");
    let new_term = number_after(&leader_lines(&nodes[new_leaders[0]])[0], "term");
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
    n1.wait_for("member down: n3", WAIT).unwrap();
    n2.wait_for("member down: n3", WAIT).unwrap();

    // n2's first participant makes three arrivals counting n3's: the barrier must not fill.
    n2.send_line("barrier phase-1 3").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    for n in [&n1, &n2] {
        let passed = lines_with(n, "barrier phase-1 passed");
        assert!(passed.is_empty(), "{} filled with a dead participant: {passed:?}", n.name());
    }

    // A third live participant fills it, on every node, without n3's.
    n2.send_line("barrier phase-1 3").unwrap();
    for n in [&n1, &n2] {
        let passed = n.wait_for("barrier phase-1 passed: ", WAIT).unwrap();
        assert!(!passed.contains("n3#"), "counted the killed node's participant: {passed}");
        assert_eq!(passed.matches("n2#").count(), 2, "{passed}");
    }
    assert_eq!(lines_with(&n2, "barrier phase-1 passed").len(), 2);

    // Bad arguments are refused with the usage.
    n1.send_line("barrier bad 0").unwrap();
    n1.wait_for("`barrier` takes a positive number of parties", WAIT).unwrap();
}

#[test]
fn a_task_whose_winner_is_killed_is_announced_again() {
    let [mut n1, mut n2, mut n3] = cluster();
    n2.send_line("bid summarize 1").unwrap();
    n3.send_line("bid summarize 2").unwrap();
    n2.wait_for("bidding for summarize at 1", WAIT).unwrap();
    n3.wait_for("bidding for summarize at 2", WAIT).unwrap();

    // The cheapest bidder wins; allocate until both bidders are visible from n1 (pg syncs).
    for attempt in 0.. {
        let before = lines_with(&n1, "alloc").len();
        n1.send_line("allocate summarize 10").unwrap();
        n1.wait_for_count("alloc", before + 1, WAIT).unwrap();
        if lines_with(&n1, "allocated ").last().is_some_and(|l| l.contains(" to n2 at 1 in 1 round(s)")) {
            break;
        }
        assert!(attempt < 50, "n1 never awarded to n2: {:?}", n1.output());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // A long task: its winner n2 is killed while it works; the task goes to n3.
    let awarded_before = lines_with(&n1, "allocated ").len();
    let performed_before = lines_with(&n2, "performing ").len();
    // (n3 may have run some of the first tasks, before n1 saw n2's bidder.)
    let n3_before = lines_with(&n3, "performing ").len();
    n1.send_line("allocate summarize 3000").unwrap();
    n2.wait_for_count("performing ", performed_before + 1, WAIT).unwrap();
    n2.kill();
    let done = n1.wait_for_count("allocated ", awarded_before + 1, WAIT).unwrap();
    let done = done.last().unwrap();
    assert!(done.contains(" to n3 at 2 in 2 round(s)"), "{done}");
    assert!(done.contains("\"done_by\":\"n3\""), "{done}");
    assert_eq!(lines_with(&n3, "performing ").len(), n3_before + 1);

    // Nobody bids for an unknown capability: a clear error.
    n1.send_line("allocate nobody 1").unwrap();
    let failed = n1.wait_for("allocate nobody failed", WAIT).unwrap();
    assert!(failed.contains("no bids"), "{failed}");
}

#[test]
fn only_the_majority_side_of_a_partition_can_take_a_lock() {
    let [mut n1, mut n2, mut n3] = cluster();
    // {n1, n2} | {n3}: each side refuses the other.
    n1.send_line("partition n3").unwrap();
    n2.send_line("partition n3").unwrap();
    n3.send_line("partition n1,n2").unwrap();
    for n in [&n1, &n2] {
        n.wait_for("member down: n3", WAIT).unwrap();
    }
    n3.wait_for_count("member down: ", 2, WAIT).unwrap();

    n3.send_line("lock jobs 1000 2000").unwrap();
    let refused = n3.wait_for("lock jobs failed", WAIT).unwrap();
    // (n3 grants itself nothing either if it was cut off before it had read the others' tables.)
    assert!(
        refused.contains("no majority granted it") && refused.contains("of 2 nodes needed, 3 known"),
        "{refused}"
    );
    n1.send_line("lock jobs 1000").unwrap();
    let first = number_after(&n1.wait_for("lock jobs acquired", WAIT).unwrap(), "token");

    // Healed, n3 waits for n1's lease like everyone else; released, it gets a larger token.
    for n in [&mut n1, &mut n2, &mut n3] {
        n.send_line("heal").unwrap();
    }
    n3.wait_for_count("member up: n1", 2, WAIT).unwrap();
    // Once n3 can take a lock of its own, it sees the majority again.
    n3.send_line("lock probe 1000").unwrap();
    n3.wait_for("lock probe acquired", WAIT).unwrap();
    n3.send_line("unlock probe").unwrap();
    n3.send_line("lock jobs 1000").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(lines_with(&n3, "lock jobs acquired").is_empty(), "n3 took a lock n1 holds");
    n1.send_line("unlock jobs").unwrap();
    let second = number_after(&n3.wait_for("lock jobs acquired", WAIT).unwrap(), "token");
    assert!(second > first, "token {second} is not above {first}");
}

#[test]
fn a_restarted_node_grants_nothing_until_it_has_read_enough_tables() {
    let ports = [free_port(), free_port(), free_port()];
    let [mut n1, mut n2, mut n3] = cluster_on(ports, &[]);
    n1.send_line("lock jobs 1000").unwrap();
    let first = number_after(&n1.wait_for("lock jobs acquired", WAIT).unwrap(), "token");
    n1.send_line("unlock jobs").unwrap();
    n1.wait_for("lock jobs released", WAIT).unwrap();

    // n2 dies and n3 restarts with an empty table. n3 may have granted leases before (it
    // forgot them), and only n1 can tell it what it missed, which is not enough: n3 must not
    // make a majority with n1.
    n2.kill();
    n3.kill();
    n1.wait_for("member down: n2", WAIT).unwrap();
    let n3 = node("n3", ports[2], &[ports[0]], &[]);
    n3.wait_for("member up: n1", WAIT).unwrap();
    n1.send_line("lock jobs 1000 3000").unwrap();
    let refused = n1.wait_for("lock jobs failed", WAIT).unwrap();
    assert!(refused.contains("no majority granted it"), "{refused}");
    assert!(lines_with(&n3, "coordination ready").is_empty(), "n3 grants with only n1's table");

    // n2 back: n3 has read both tables and grants again; tokens still grow.
    let _n2 = node("n2", ports[1], &[ports[0]], &[]);
    n3.wait_for("coordination ready", WAIT).unwrap();
    n1.send_line("lock jobs 1000").unwrap();
    let second = number_after(&n1.wait_for_count("lock jobs acquired", 2, WAIT).unwrap()[1], "token");
    assert!(second > first, "token {second} is not above {first}");
}
