//! Channels, services and replicated actors across real node processes: broadcasts reach
//! every node's subscribers, services are discovered everywhere and vanish with their node,
//! replicas run one per node (later joiners included), and a message too large for the frame
//! limit is refused before it is sent.

use std::cell::RefCell;

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{WAIT, start_node, start_node_with_env, until};

fn all_up(nodes: &[&NodeProcess]) {
    for me in nodes {
        for other in nodes {
            if me.name() != other.name() {
                me.wait_for(&format!("member up: {} ", other.name()), WAIT).unwrap();
            }
        }
    }
}

/// Sends `command` to `node` and returns the lines of its answer, which ends with the first
/// line after the command that starts with `last_line`.
fn ask(node: &mut NodeProcess, command: &str, last_line: &str) -> Vec<String> {
    let before = node.output().len();
    let answered = node.output().iter().filter(|l| l.starts_with(last_line)).count();
    node.send_line(command).unwrap();
    node.wait_for_count(last_line, answered + 1, WAIT).unwrap();
    let mut answer: Vec<String> = node.output()[before..].to_vec();
    let end = answer.iter().position(|l| l.starts_with(last_line)).unwrap();
    answer.truncate(end + 1);
    answer
}

/// Asks `node` for the services it sees until `check` accepts the listing; returns it.
fn services_until(node: &mut NodeProcess, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
    let (name, listing) = (node.name().to_string(), RefCell::new(Vec::new()));
    until(
        || {
            let answer = ask(node, "services", "services: ");
            *listing.borrow_mut() = answer.into_iter().filter(|l| l.starts_with("service ")).collect();
            check(&listing.borrow())
        },
        || format!("{name}: never saw {what}; last listing: {:#?}", listing.borrow()),
    );
    listing.into_inner()
}

/// Broadcasts `text` on `topic` from `sender` until every receiver has printed it: a node's
/// subscriptions reach the others' pg a moment after the node itself is up.
fn broadcast_until_received(sender: &mut NodeProcess, receivers: &[&NodeProcess], topic: &str, text: &str) {
    let expected = format!("received {topic}: {text}");
    until(
        || {
            sender.send_line(&format!("broadcast {topic} {text}")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            receivers.iter().all(|r| r.output().contains(&expected))
        },
        || format!("`{expected}` never arrived everywhere"),
    );
}

fn has(listing: &[String], prefix: &str) -> bool {
    listing.iter().any(|l| l.starts_with(prefix))
}

#[test]
fn broadcasts_reach_every_node_and_services_vanish_with_their_node() {
    let ports = [free_port(), free_port(), free_port()];
    let n1 = start_node("n1", ports[0], &[], &["--subscribe", "news", "--service", "llm:chat+json"]);
    let mut n2 =
        start_node("n2", ports[1], &[ports[0]], &["--subscribe", "news", "--service", "embed:vectors"]);
    let mut n3 = start_node("n3", ports[2], &[ports[0]], &["--service", "llm:chat"]);
    all_up(&[&n1, &n2, &n3]);

    // A broadcast from n3 (which has no subscriber itself) reaches the subscribers on n1 and n2.
    broadcast_until_received(&mut n3, &[&n1, &n2], "news", "hello from n3");
    n3.wait_for("broadcast news: sent (0 subscribers here)", WAIT).unwrap();

    // Every node sees every service, with its capabilities, and knows which are its own.
    // (Exactly three: while two nodes that dialled each other at once settle on one connection,
    // a service can briefly be seen through both.)
    services_until(&mut n2, "all three services", |l| {
        l.len() == 3
            && has(l, "service llm@n1 caps=chat+json healthy=true local=false")
            && has(l, "service llm@n3 caps=chat healthy=true local=false")
            && has(l, "service embed@n2 caps=vectors healthy=true local=true")
    });

    // Health travels too: n3 reports its instance down, n2 sees it within a sync or two.
    n3.send_line("health llm down").unwrap();
    n3.wait_for("health llm: 1 instance(s) reported down", WAIT).unwrap();
    services_until(&mut n2, "llm@n3 unhealthy", |l| has(l, "service llm@n3 caps=chat healthy=false"));

    // kill -9 n3: its service disappears on the survivors, the others stay.
    n3.kill();
    let listing = services_until(&mut n2, "llm@n3 gone", |l| !has(l, "service llm@n3"));
    assert!(has(&listing, "service llm@n1") && has(&listing, "service embed@n2"), "{listing:#?}");
    let mut n1 = n1;
    services_until(&mut n1, "llm@n3 gone", |l| !has(l, "service llm@n3") && has(l, "service embed@n2"));
}

#[test]
fn a_broadcast_over_the_frame_limit_is_refused_before_sending_and_nothing_breaks() {
    let ports = [free_port(), free_port()];
    let small = [("FOUNDATION_CLUSTER__MAX_FRAME_BYTES", "65536")];
    let mut n1 = start_node_with_env("n1", ports[0], &[], &[], &small);
    let n2 = start_node_with_env("n2", ports[1], &[ports[0]], &["--subscribe", "big"], &small);
    all_up(&[&n1, &n2]);
    broadcast_until_received(&mut n1, &[&n2], "big", "ready");

    n1.send_line("broadcast-bytes big 100000").unwrap();
    let refused = n1.wait_for("broadcast big refused: ", WAIT).unwrap();
    assert!(refused.contains("exceeds the 65536-byte frame limit (cluster.max_frame_bytes)"), "{refused}");

    // The connection is intact: a message within the limit still arrives, and nobody went down.
    n1.send_line("broadcast-bytes big 60000").unwrap();
    n2.wait_for("received big: xxxx", WAIT).unwrap();
    n1.send_line("broadcast big small").unwrap();
    n2.wait_for("received big: small", WAIT).unwrap();
    for node in [&n1, &n2] {
        assert!(!node.output().iter().any(|l| l.contains("member down")), "{:#?}", node.output());
    }
}

/// Asks `node` which nodes run a replica of `name` until the answer is `expected`.
fn replicas_become(node: &mut NodeProcess, name: &str, expected: &str) {
    let (node_name, last) = (node.name().to_string(), RefCell::new(String::new()));
    let pattern = format!("replicas {name}: ");
    until(
        || {
            *last.borrow_mut() = ask(node, &format!("replicas {name}"), &pattern).pop().unwrap_or_default();
            *last.borrow() == format!("{pattern}{expected}")
        },
        || format!("{node_name}: replicas never became {expected}; last: {}", last.borrow()),
    );
}

#[test]
fn replicated_actors_run_once_per_node_including_later_joiners_and_leave_with_their_node() {
    let ports = [free_port(), free_port(), free_port()];
    let mut n1 = start_node("n1", ports[0], &[], &["--replicated", "cache"]);
    let n2 = start_node("n2", ports[1], &[ports[0]], &["--replicated", "cache"]);
    all_up(&[&n1, &n2]);
    replicas_become(&mut n1, "cache", "n1,n2");

    // A node that joins later runs its own replica, and every node sees it.
    let mut n3 = start_node("n3", ports[2], &[ports[0]], &["--replicated", "cache"]);
    all_up(&[&n1, &n2, &n3]);
    replicas_become(&mut n1, "cache", "n1,n2,n3");
    replicas_become(&mut n3, "cache", "n1,n2,n3");

    // Its node killed, its replica is gone from every list.
    n3.kill();
    replicas_become(&mut n1, "cache", "n1,n2");
    n1.send_line("replicas nope").unwrap();
    n1.wait_for("replicas nope: not run on this node", WAIT).unwrap();
}
