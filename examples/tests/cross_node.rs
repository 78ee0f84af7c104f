//! Channels, services and replicated actors across real node processes: broadcasts reach
//! every node's subscribers, services are discovered everywhere and vanish with their node,
//! replicas run one per node (later joiners included), and a message too large for the frame
//! limit is refused before it is sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::cell::RefCell;

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{Value, json, seen, start_node, start_node_with_env, text, until, wait, wait_n};

fn all_up(nodes: &[&NodeProcess]) {
    for me in nodes {
        for other in nodes {
            if me.name() != other.name() {
                wait(me, json!({"event": "member_up", "name": other.name()}));
            }
        }
    }
}

/// Sends `command` to `node` and returns its answer: the first event after the command that
/// matches `answer`.
fn ask(node: &mut NodeProcess, command: &str, answer: Value) -> Value {
    let answered = seen(node, answer.clone()).len();
    node.send_line(command).unwrap();
    wait_n(node, answer, answered + 1).swap_remove(answered)
}

/// Asks `node` for the services it sees until `check` accepts the listing (the `instances` of
/// its `services` answer); returns it.
fn services_until(node: &mut NodeProcess, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let (name, listing) = (node.name().to_string(), RefCell::new(Vec::new()));
    until(
        || {
            let answer = ask(node, "services", json!({"event": "services"}));
            let instances = answer["instances"].as_array().unwrap_or_else(|| panic!("{answer}"));
            *listing.borrow_mut() = instances.clone();
            check(&listing.borrow())
        },
        || format!("{name}: never saw {what}; last listing: {:#}", json!(*listing.borrow())),
    );
    listing.into_inner()
}

/// Broadcasts `text` on `topic` from `sender` until every receiver has printed it: a node's
/// subscriptions reach the others' pg a moment after the node itself is up.
fn broadcast_until_received(sender: &mut NodeProcess, receivers: &[&NodeProcess], topic: &str, text: &str) {
    let expected = json!({"event": "received", "topic": topic, "text": text});
    until(
        || {
            sender.send_line(&format!("broadcast {topic} {text}")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            receivers.iter().all(|r| !seen(r, expected.clone()).is_empty())
        },
        || format!("`{expected}` never arrived everywhere"),
    );
}

/// Whether an instance in `listing` has every field of `wanted` (`json!({"name": .., "node": ..})`).
fn has(listing: &[Value], wanted: Value) -> bool {
    let wanted = wanted.as_object().unwrap();
    listing.iter().any(|instance| wanted.iter().all(|(field, value)| instance[field] == *value))
}

/// A whole service instance as the `services` answer lists it.
fn service(name: &str, node: &str, capabilities: &[&str], healthy: bool, local: bool) -> Value {
    json!({"name": name, "node": node, "capabilities": capabilities, "healthy": healthy, "local": local})
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
    wait(&n3, json!({"event": "broadcast_sent", "topic": "news", "local_subscribers": 0, "bytes": null}));

    // Every node sees every service, with its capabilities, and knows which are its own.
    // (Exactly three: while two nodes that dialled each other at once settle on one connection,
    // a service can briefly be seen through both.)
    services_until(&mut n2, "all three services", |l| {
        l.len() == 3
            && has(l, service("llm", "n1", &["chat", "json"], true, false))
            && has(l, service("llm", "n3", &["chat"], true, false))
            && has(l, service("embed", "n2", &["vectors"], true, true))
    });

    // Health travels too: n3 reports its instance down, n2 sees it within a sync or two.
    n3.send_line("health llm down").unwrap();
    wait(&n3, json!({"event": "health_reported", "service": "llm", "instances": 1, "healthy": false}));
    services_until(&mut n2, "llm@n3 unhealthy", |l| {
        has(l, json!({"name": "llm", "node": "n3", "capabilities": ["chat"], "healthy": false}))
    });

    // kill -9 n3: its service disappears on the survivors, the others stay.
    n3.kill();
    let llm_n3 = json!({"name": "llm", "node": "n3"});
    let listing = services_until(&mut n2, "llm@n3 gone", |l| !has(l, llm_n3.clone()));
    assert!(
        has(&listing, json!({"name": "llm", "node": "n1"}))
            && has(&listing, json!({"name": "embed", "node": "n2"})),
        "{:#}",
        json!(listing)
    );
    let mut n1 = n1;
    services_until(&mut n1, "llm@n3 gone", |l| {
        !has(l, llm_n3.clone()) && has(l, json!({"name": "embed", "node": "n2"}))
    });
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
    let refused = wait(&n1, json!({"event": "broadcast_refused", "topic": "big"}));
    assert!(
        text(&refused, "error").contains("exceeds the 65536-byte frame limit (cluster.max_frame_bytes)"),
        "{refused}"
    );

    // The connection is intact: a message within the limit still arrives, and nobody went down.
    n1.send_line("broadcast-bytes big 60000").unwrap();
    wait(&n2, json!({"event": "received", "topic": "big", "text": "x".repeat(60000)}));
    n1.send_line("broadcast big small").unwrap();
    wait(&n2, json!({"event": "received", "topic": "big", "text": "small"}));
    for node in [&n1, &n2] {
        assert!(seen(node, json!({"event": "member_down"})).is_empty(), "{:#?}", node.output());
    }
}

/// Asks `node` which nodes run a replica of `name` until the answer is `expected`.
fn replicas_become(node: &mut NodeProcess, name: &str, expected: &[&str]) {
    let (node_name, last) = (node.name().to_string(), RefCell::new(Value::Null));
    until(
        || {
            *last.borrow_mut() =
                ask(node, &format!("replicas {name}"), json!({"event": "replicas", "name": name}));
            last.borrow()["nodes"] == json!(expected)
        },
        || format!("{node_name}: replicas never became {expected:?}; last: {}", last.borrow()),
    );
}

#[test]
fn replicated_actors_run_once_per_node_including_later_joiners_and_leave_with_their_node() {
    let ports = [free_port(), free_port(), free_port()];
    let mut n1 = start_node("n1", ports[0], &[], &["--replicated", "cache"]);
    let n2 = start_node("n2", ports[1], &[ports[0]], &["--replicated", "cache"]);
    all_up(&[&n1, &n2]);
    replicas_become(&mut n1, "cache", &["n1", "n2"]);

    // A node that joins later runs its own replica, and every node sees it.
    let mut n3 = start_node("n3", ports[2], &[ports[0]], &["--replicated", "cache"]);
    all_up(&[&n1, &n2, &n3]);
    replicas_become(&mut n1, "cache", &["n1", "n2", "n3"]);
    replicas_become(&mut n3, "cache", &["n1", "n2", "n3"]);

    // Its node killed, its replica is gone from every list.
    n3.kill();
    replicas_become(&mut n1, "cache", &["n1", "n2"]);
    n1.send_line("replicas nope").unwrap();
    let refused = wait(&n1, json!({"event": "error", "command": "replicas nope"}));
    assert!(
        text(&refused, "error").contains("not run on this node (start it with --replicated nope)"),
        "{refused}"
    );
}
