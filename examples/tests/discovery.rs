//! Zero-config discovery: `foundation node --cluster` processes on one machine find each other
//! by UDP multicast on loopback, with no seeds and no addresses given; a node of another
//! cluster (another cookie) on the same discovery port is left alone; a restarted node is found
//! again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{Value, json, seen, text, wait, wait_n};

/// Starts `foundation node --json --cluster --name NAME` on discovery port `gossip`, cookie `cookie`.
fn node(name: &str, gossip: u16, cookie: &str) -> NodeProcess {
    let process = NodeProcess::spawn_with_env(
        name,
        env!("CARGO_BIN_EXE_foundation"),
        ["node", "--json", "--cluster", "--name", name, "--cookie", cookie],
        [
            ("FOUNDATION_LOG", "error".to_string()),
            // A port of this test's own, so that concurrent tests do not discover each other.
            ("FOUNDATION_CLUSTER__GOSSIP_PORT", gossip.to_string()),
            ("FOUNDATION_CLUSTER__GOSSIP_INTERVAL", "200ms".to_string()),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let listening = wait(&process, json!({"event": "listening", "node": name}));
    assert!(text(&listening, "addr").starts_with("127.0.0.1:"), "{listening}");
    process
}

#[test]
fn nodes_find_each_other_without_seeds_ignore_other_clusters_and_find_a_restarted_node() {
    let gossip = free_port();
    let g1 = node("g1", gossip, "ours");
    let g2 = node("g2", gossip, "ours");
    let mut g3 = node("g3", gossip, "ours");
    for (me, others) in [(&g1, ["g2", "g3"]), (&g2, ["g1", "g3"]), (&g3, ["g1", "g2"])] {
        for other in others {
            wait(me, json!({"event": "member_up", "name": other}));
        }
    }

    // Another cluster on the same port forms by itself; the two never dial each other.
    let t1 = node("t1", gossip, "theirs");
    let t2 = node("t2", gossip, "theirs");
    wait(&t1, json!({"event": "member_up", "name": "t2"}));
    wait(&t2, json!({"event": "member_up", "name": "t1"}));
    // Both clusters have now heard each other's announcements; give them a few more rounds in
    // which a wrong dial would show (this is a window for a negative check, not a sync).
    std::thread::sleep(Duration::from_secs(1));
    for (n, other_cluster) in [(&g1, "t"), (&g2, "t"), (&g3, "t"), (&t1, "g"), (&t2, "g")] {
        let of_other = |name: &Value| name.as_str().is_some_and(|s| s.starts_with(other_cluster));
        let bad: Vec<Value> = seen(n, json!({}))
            .into_iter()
            .filter(|e| {
                (e["event"] == "member_up" && of_other(&e["name"]))
                    || (e["event"] == "refused" && of_other(&e["peer_name"]))
            })
            .collect();
        assert!(bad.is_empty(), "{} dialled or was dialled by the other cluster: {bad:#?}", n.name());
    }

    // Killed and restarted (on another port, found by discovery alone), it rejoins.
    g3.kill();
    wait(&g1, json!({"event": "member_down", "name": "g3"}));
    let g3 = node("g3", gossip, "ours");
    wait_n(&g1, json!({"event": "member_up", "name": "g3"}), 2);
    wait_n(&g2, json!({"event": "member_up", "name": "g3"}), 2);
    wait(&g3, json!({"event": "member_up", "name": "g1"}));
}
