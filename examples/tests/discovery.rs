//! Zero-config discovery: `foundation node --cluster` processes on one machine find each other
//! by UDP multicast on loopback, with no seeds and no addresses given; a node of another
//! cluster (another cookie) on the same discovery port is left alone; a restarted node is found
//! again.

use std::time::Duration;

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::WAIT;

/// Starts `foundation node --cluster --name NAME` on discovery port `gossip`, cookie `cookie`.
fn node(name: &str, gossip: u16, cookie: &str) -> NodeProcess {
    let process = NodeProcess::spawn_with_env(
        name,
        env!("CARGO_BIN_EXE_foundation"),
        ["node", "--cluster", "--name", name, "--cookie", cookie],
        [
            ("FOUNDATION_LOG", "error".to_string()),
            // A port of this test's own, so that concurrent tests do not discover each other.
            ("FOUNDATION_CLUSTER__GOSSIP_PORT", gossip.to_string()),
            ("FOUNDATION_CLUSTER__GOSSIP_INTERVAL", "200ms".to_string()),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    process.wait_for(&format!("node {name} listening on 127.0.0.1:"), WAIT).unwrap_or_else(|e| panic!("{e}"));
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
            me.wait_for(&format!("member up: {other} "), WAIT).unwrap();
        }
    }

    // Another cluster on the same port forms by itself; the two never dial each other.
    let t1 = node("t1", gossip, "theirs");
    let t2 = node("t2", gossip, "theirs");
    t1.wait_for("member up: t2 ", WAIT).unwrap();
    t2.wait_for("member up: t1 ", WAIT).unwrap();
    // Both clusters have now heard each other's announcements; give them a few more rounds in
    // which a wrong dial would show (this is a window for a negative check, not a sync).
    std::thread::sleep(Duration::from_secs(1));
    for (n, other_cluster) in [(&g1, "t"), (&g2, "t"), (&g3, "t"), (&t1, "g"), (&t2, "g")] {
        let bad: Vec<String> = n
            .output()
            .into_iter()
            .filter(|l| {
                l.starts_with(&format!("member up: {other_cluster}"))
                    || (l.starts_with("refused") && l.contains(&format!("node {other_cluster}")))
            })
            .collect();
        assert!(bad.is_empty(), "{} dialled or was dialled by the other cluster: {bad:#?}", n.name());
    }

    // Killed and restarted (on another port, found by discovery alone), it rejoins.
    g3.kill();
    g1.wait_for("member down: g3", WAIT).unwrap();
    let g3 = node("g3", gossip, "ours");
    g1.wait_for_count("member up: g3 ", 2, WAIT).unwrap();
    g2.wait_for_count("member up: g3 ", 2, WAIT).unwrap();
    g3.wait_for("member up: g1 ", WAIT).unwrap();
}
