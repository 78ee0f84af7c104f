//! Real clusters: `foundation node` processes on loopback, talking real TCP, killed for real.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::Write;

use foundation_cluster::testkit::{NodeProcess, free_port, free_port_range};

mod support;

use support::{Value, WAIT, json, seen, start_node, start_node_with_env, text, until, wait, wait_n};

fn node(name: &str, port: u16, seeds: &[u16], cookie: &str) -> NodeProcess {
    start_node(name, port, seeds, &["--cookie", cookie])
}

#[test]
fn three_nodes_form_a_cluster_see_a_kill_and_a_rejoin() {
    let ports = [free_port(), free_port(), free_port()];
    let n1 = node("n1", ports[0], &[], "secret");
    let n2 = node("n2", ports[1], &[ports[0]], "secret");
    let mut n3 = node("n3", ports[2], &[ports[0]], "secret");

    // Every node sees the two others (n2 and n3 learn of each other through n1).
    for (me, others) in [(&n1, ["n2", "n3"]), (&n2, ["n1", "n3"]), (&n3, ["n1", "n2"])] {
        for other in others {
            wait(me, json!({"event": "member_up", "name": other}));
        }
    }

    // kill -9: the survivors mark it down.
    n3.kill();
    wait(&n1, json!({"event": "member_down", "name": "n3"}));
    wait(&n2, json!({"event": "member_down", "name": "n3"}));

    // Restarted on its address, it rejoins by itself and the others see it up again.
    let n3 = node("n3", ports[2], &[ports[0]], "secret");
    wait_n(&n1, json!({"event": "member_up", "name": "n3"}), 2);
    wait(&n3, json!({"event": "member_up", "name": "n1"}));
    wait(&n3, json!({"event": "member_up", "name": "n2"}));
}

#[test]
fn wrong_cookie_and_garbage_are_refused_and_the_cluster_keeps_serving() {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let mut n1 = node("n1", ports[0], &[], "right");
    let n2 = node("n2", ports[1], &[ports[0]], "right");
    wait(&n1, json!({"event": "member_up", "name": "n2"}));

    // A node with the wrong cookie is refused on both sides and never becomes a member.
    let intruder = node("intruder", ports[2], &[ports[0]], "wrong");
    wait(&n1, json!({"event": "refused"}));
    let refused = wait(&intruder, json!({"event": "refused"}));
    assert!(text(&refused, "peer_addr").starts_with("127.0.0.1:"), "{refused}");

    // Garbage on the cluster port: refused, nothing else happens.
    let refused_before = seen(&n1, json!({"event": "refused"})).len();
    for junk in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0xff; 4096][..], &[0, 0, 0, 5, 1, 2][..]] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
        let _ = s.write_all(junk);
    }
    wait_n(&n1, json!({"event": "refused"}), refused_before + 1);
    assert!(n1.is_running(), "garbage must not take the node down");

    // The cluster still serves: a proper node joins after all that.
    let n3 = node("n3", ports[3], &[ports[0]], "right");
    wait(&n1, json!({"event": "member_up", "name": "n3"}));
    wait(&n3, json!({"event": "member_up", "name": "n2"}));
    for n in [&n1, &n2, &n3] {
        assert!(seen(n, json!({"event": "member_up", "name": "intruder"})).is_empty(), "{:?}", n.output());
    }
    assert!(seen(&intruder, json!({"event": "member_up"})).is_empty(), "{:?}", intruder.output());
}

#[test]
fn a_node_leaves_on_sigterm_its_peers_see_it_leave_and_its_singleton_moves() {
    let ports = [free_port(), free_port()];
    let mut n1 = start_node("n1", ports[0], &[], &["--cookie", "c", "--singleton", "boss"]);
    let n2 = start_node("n2", ports[1], &[ports[0]], &["--cookie", "c", "--singleton", "boss"]);
    wait(&n2, json!({"event": "member_up", "name": "n1"}));
    wait(&n1, json!({"event": "singleton_started", "name": "boss"}));
    assert!(n1.terminate(WAIT), "exits with success on SIGTERM");
    assert!(!seen(&n1, json!({"event": "leaving", "node": "n1"})).is_empty(), "{:#?}", n1.output());
    // Announced, so a planned departure and not a failure...
    wait(&n2, json!({"event": "member_left", "name": "n1"}));
    assert!(seen(&n2, json!({"event": "member_down"})).is_empty(), "{:#?}", n2.output());
    // ...and the cluster shrank to one node, which is a majority of itself: the singleton
    // moves. (Had n1 crashed, n2 alone would be one of two known nodes, and wait.)
    wait(&n2, json!({"event": "singleton_started", "name": "boss"}));
}

#[test]
fn a_default_cookie_on_a_public_address_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .args(["node", "--name", "n1", "--listen", "0.0.0.0:4999"])
        .env_remove("FOUNDATION_COOKIE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`cluster.cookie`") && err.contains("not a loopback address"), "{err}");
}

#[test]
fn a_frozen_node_is_detected_by_heartbeats_and_rejoins_when_thawed() {
    let ports = [free_port(), free_port(), free_port()];
    let n1 = node("n1", ports[0], &[], "frost");
    let n2 = node("n2", ports[1], &[ports[0]], "frost");
    let n3 = node("n3", ports[2], &[ports[0]], "frost");
    for other in ["n2", "n3"] {
        wait(&n1, json!({"event": "member_up", "name": other}));
    }
    wait(&n2, json!({"event": "member_up", "name": "n3"}));

    // SIGSTOP: its TCP connections stay open, so only the failure detector can tell.
    n3.freeze();
    for survivor in [&n1, &n2] {
        wait(survivor, json!({"event": "member_unreachable", "name": "n3"}));
        let down = wait(survivor, json!({"event": "member_down", "name": "n3"}));
        assert!(text(&down, "reason").contains("unreachable"), "{down}");
    }
    assert!(seen(&n1, json!({"event": "member_down", "name": "n2"})).is_empty(), "the healthy node stays up");

    // SIGCONT: it finds its connections closed, reconnects to its seed, and is up again.
    n3.thaw();
    wait_n(&n1, json!({"event": "member_up", "name": "n3"}), 2);
    wait_n(&n2, json!({"event": "member_up", "name": "n3"}), 2);
}

/// With each node watching only one other (`cluster.monitored_peers = 1`: the ring n1 → n2 →
/// n3 → n4 → n5 → n1), a frozen node is found by its one watcher's detector and confirmed by
/// every other node with a ping of its own; thawed, it is up again everywhere.
#[test]
fn a_frozen_node_is_found_by_its_one_watcher_and_confirmed_by_every_other_node() {
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let env = [("FOUNDATION_CLUSTER__MONITORED_PEERS", "1")];
    let nodes: Vec<NodeProcess> = (0..5)
        .map(|i| {
            let seeds: &[u16] = if i == 0 { &[] } else { &ports[..1] };
            start_node_with_env(names[i], ports[i], seeds, &["--cookie", "ring"], &env)
        })
        .collect();
    for (node, own) in nodes.iter().zip(names) {
        for other in names.iter().filter(|n| **n != own) {
            wait(node, json!({"event": "member_up", "name": other}));
        }
    }
    let down = json!({"event": "member_down", "name": "n3"});
    // Count what the freeze causes, not a flap while the cluster formed.
    let before: Vec<usize> = nodes.iter().map(|n| seen(n, down.clone()).len()).collect();

    nodes[2].freeze();
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != 2) {
        let event = wait_n(node, down.clone(), before[i] + 1).pop().unwrap();
        let reason = text(&event, "reason");
        if names[i] == "n2" {
            assert!(reason.contains("phi"), "n2 watches n3: its own detector gave up: {event}");
        } else {
            assert!(
                reason.contains("did not answer this node's check"),
                "{} does not watch n3: it confirmed n2's verdict: {event}",
                names[i]
            );
        }
    }

    nodes[2].thaw();
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != 2) {
        let ups = seen(node, json!({"event": "member_up", "name": "n3"})).len();
        wait_n(node, json!({"event": "member_up", "name": "n3"}), ups.max(before[i] + 2));
    }
}

/// A node whose only watcher is cut off from it (`cluster.monitored_peers = 1`: n2 alone
/// watches n3, and a partition cuts n2 and n3 apart while the others still reach both) has no
/// watcher in the others' rings; frozen then, it is still found by every other node (the
/// sweep, and the watch of peers that did not answer a first ping, are what reach it).
#[test]
fn a_frozen_node_whose_watcher_is_cut_off_is_found_by_the_sweep() {
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let names = ["n1", "n2", "n3", "n4", "n5"];
    let env = [("FOUNDATION_CLUSTER__MONITORED_PEERS", "1")];
    let mut nodes: Vec<NodeProcess> = (0..5)
        .map(|i| {
            let seeds: &[u16] = if i == 0 { &[] } else { &ports[..1] };
            start_node_with_env(names[i], ports[i], seeds, &["--cookie", "sweep"], &env)
        })
        .collect();
    for (node, own) in nodes.iter().zip(names) {
        for other in names.iter().filter(|n| **n != own) {
            wait(node, json!({"event": "member_up", "name": other}));
        }
    }
    // n2 and n3 refuse each other: n2 (n3's only watcher) sees it down, the others keep both.
    nodes[1].send_line("partition n3").unwrap();
    nodes[2].send_line("partition n2").unwrap();
    wait(&nodes[1], json!({"event": "member_down", "name": "n3"}));
    let down = json!({"event": "member_down", "name": "n3"});
    let before: Vec<usize> = nodes.iter().map(|n| seen(n, down.clone()).len()).collect();

    nodes[2].freeze();
    for i in [0, 3, 4] {
        let event = wait_n(&nodes[i], down.clone(), before[i] + 1).pop().unwrap();
        assert!(text(&event, "reason").contains("unreachable"), "{}: {event}", names[i]);
    }
    nodes[2].kill();
}

#[test]
fn cluster_up_launches_a_local_cluster_and_stops_it_on_sigterm() {
    let base = free_port_range(3);
    let mut up = NodeProcess::spawn_with_env(
        "cluster-up",
        env!("CARGO_BIN_EXE_foundation"),
        ["cluster", "up", "--nodes", "3", "--base-port", &base.to_string()],
        [("FOUNDATION_LOG", "error")],
    )
    .unwrap();
    for k in 1..=3 {
        up.wait_for(&format!("started n{k} (pid"), WAIT).unwrap();
    }
    // Every node sees the two others.
    for (me, others) in [("n1", ["n2", "n3"]), ("n2", ["n1", "n3"]), ("n3", ["n1", "n2"])] {
        for other in others {
            up.wait_for(&format!("[{me}] member up: {other} "), WAIT).unwrap();
        }
    }
    let pids: Vec<String> = up
        .output()
        .iter()
        .filter_map(|l| l.split("(pid ").nth(1).and_then(|r| r.split(')').next()).map(str::to_string))
        .collect();
    assert_eq!(pids.len(), 3);
    // The cookie reaches the nodes by environment: no command line (readable by every local
    // user in `ps`) carries it.
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains("--cookie") && !cmdline.contains("foundation-dev-cookie"), "{cmdline}");
    }
    assert!(up.terminate(WAIT), "cluster up exits with success on SIGTERM");
    assert!(up.output().iter().any(|l| l == "cluster stopped"));
    for pid in pids {
        let alive = std::process::Command::new("kill")
            .args(["-0", &pid])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!alive.success(), "node process {pid} must be gone");
    }
}

#[test]
fn cluster_status_reports_every_node_with_health_and_the_dead_one_as_down() {
    let ports = [free_port(), free_port(), free_port()];
    let n1 = node("n1", ports[0], &[], "stat");
    let n2 = node("n2", ports[1], &[ports[0]], "stat");
    let mut n3 = node("n3", ports[2], &[ports[0]], "stat");
    wait(&n1, json!({"event": "member_up", "name": "n3"}));
    wait(&n2, json!({"event": "member_up", "name": "n3"}));
    let status = |seed: u16| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
            .args([
                "cluster",
                "status",
                "--json",
                "--cookie",
                "stat",
                "--seeds",
                &format!("127.0.0.1:{seed}"),
            ])
            .env("FOUNDATION_LOG", "error")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Heartbeats flow: every node has been heard from with its health.
    let mut health = serde_json::Value::Null;
    until(
        || {
            health = status(ports[0]);
            let rows = health["nodes"].as_array().unwrap();
            rows.len() == 3
                && rows.iter().all(|r| r["health"]["memory_bytes"].as_u64().is_some_and(|m| m > 0))
        },
        || "health never arrived from every node".to_string(),
    );

    n3.kill();
    wait(&n1, json!({"event": "member_down", "name": "n3"}));
    wait(&n2, json!({"event": "member_down", "name": "n3"}));
    let health = status(ports[1]);
    let rows = health["nodes"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name} missing: {health}"))
    };
    assert_eq!(rows.len(), 3, "{health}");
    for (name, port) in [("n1", ports[0]), ("n2", ports[1])] {
        assert_eq!(row(name)["status"], "up");
        assert_eq!(row(name)["addr"], format!("127.0.0.1:{port}"));
        let h = &row(name)["health"];
        assert!(h["memory_bytes"].as_u64().unwrap() > 0, "{health}");
        // A node runs a dozen actors of its own (node server, heartbeat, relays, ...) and the
        // tasks under them; it has channels, so its subscriber queues are measured.
        assert!(h["actors"].as_u64().unwrap() >= 5 && h["tasks"].as_u64().unwrap() >= 5, "{health}");
        assert!(h["channel_queued"].as_u64().is_some() && h["runtime_queue_depth"].is_u64(), "{health}");
    }
    assert!(health["actors"].as_u64().unwrap() >= 10, "totals over the nodes up: {health}");
    assert_eq!(row("n3")["status"], "down", "{health}");
    assert!(row("n3")["last_heartbeat_ms"].as_u64().is_some(), "when n3 was last heard from: {health}");
    assert_eq!((health["up"].as_u64(), health["down"].as_u64()), (Some(2), Some(1)));

    // Nobody there: a clear error, not a hang.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .args(["cluster", "status", "--timeout", "1s", "--seeds", &format!("127.0.0.1:{}", free_port())])
        .env("FOUNDATION_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node of the cluster answered"), "{out:?}");
}

/// The events of these kinds about `name` (its `name` field) the node has printed so far, oldest
/// first.
fn events_about(node: &NodeProcess, name: &str, kinds: &[&str]) -> Vec<Value> {
    seen(node, json!({"name": name})).into_iter().filter(|e| kinds.iter().any(|k| e["event"] == *k)).collect()
}

/// Whether the singleton runs on this node now, from its last printed singleton event.
fn holds(node: &NodeProcess, name: &str) -> bool {
    events_about(node, name, &["singleton_started", "singleton_stopped"])
        .last()
        .is_some_and(|e| e["event"] == "singleton_started")
}

#[test]
fn a_singleton_runs_once_fails_over_and_a_thawed_duplicate_is_resolved() {
    let ports = [free_port(), free_port(), free_port()];
    let spawn = |name: &str, port: u16, seed: Option<u16>| {
        start_node(name, port, seed.as_slice(), &["--singleton", "boss", "--cookie", "single"])
    };
    let n1 = spawn("n1", ports[0], None);
    let n2 = spawn("n2", ports[1], Some(ports[0]));
    let n3 = spawn("n3", ports[2], Some(ports[0]));
    wait(&n1, json!({"event": "singleton_started", "name": "boss"}));
    for n in [&n2, &n3] {
        for other in ["n1", if n.name() == "n2" { "n3" } else { "n2" }] {
            wait(n, json!({"event": "member_up", "name": other}));
        }
    }
    // Joining nodes never start it while the cluster already runs it.
    for n in [&n2, &n3] {
        let singleton = events_about(n, "boss", &["singleton_started", "singleton_stopped"]);
        assert!(singleton.is_empty(), "{:?}", n.output());
    }

    // Freeze the holder: the majority side (n2, n3) restarts it on n2, the lowest survivor.
    n1.freeze();
    wait(&n2, json!({"event": "singleton_started", "name": "boss"}));
    assert!(!holds(&n3, "boss"));

    // Thaw it. Depending on whether every peer had already evicted it, it either finds itself
    // alone and stops its copy, or keeps a majority and the lower name (n1) keeps the
    // singleton while n2 stops its duplicate. Either way exactly one copy is left.
    n1.thaw();
    let mut nodes = [n1, n2, n3];
    let holders = |nodes: &[NodeProcess]| {
        nodes.iter().filter(|n| holds(n, "boss")).map(|n| n.name().to_string()).collect::<Vec<_>>()
    };
    until(|| holders(&nodes).len() == 1, || format!("still {:?} holders after the thaw", holders(&nodes)));
    // The thawed node is back in the cluster.
    wait_n(&nodes[0], json!({"event": "member_up"}), 3);

    // kill -9 the holder: a survivor restarts it, and only one.
    let holder = holders(&nodes)[0].clone();
    let index = nodes.iter().position(|n| n.name() == holder).unwrap();
    let started = |n: &NodeProcess| seen(n, json!({"event": "singleton_started", "name": "boss"})).len();
    let started_before: Vec<usize> = nodes.iter().map(started).collect();
    nodes[index].kill();
    until(
        || {
            let survivors = nodes.iter().enumerate().filter(|(i, _)| *i != index);
            let restarted = survivors.clone().any(|(i, n)| started(n) > started_before[i]);
            restarted && survivors.filter(|(_, n)| holds(n, "boss")).count() == 1
        },
        || format!("no single survivor took over after {holder} was killed"),
    );
}

/// Whether this node holds `name` now, from its last printed event about it.
fn holds_name(node: &NodeProcess, name: &str) -> bool {
    events_about(node, name, &["name_registered", "name_lost", "name_refused"])
        .last()
        .is_some_and(|e| e["event"] == "name_registered")
}

#[test]
fn a_name_is_unique_vanishes_with_its_node_and_a_duplicate_after_a_heal_is_resolved() {
    let ports = [free_port(), free_port(), free_port()];
    let spawn = |name: &str, port: u16, seed: Option<u16>| {
        start_node(name, port, seed.as_slice(), &["--register", "leader", "--cookie", "names"])
    };
    let n1 = spawn("n1", ports[0], None);
    wait(&n1, json!({"event": "name_registered", "name": "leader"}));
    let n2 = spawn("n2", ports[1], Some(ports[0]));
    let n3 = spawn("n3", ports[2], Some(ports[0]));
    // Unique: the others are told who holds it, and never get it while n1 lives.
    let held = "name `leader` is already held on node `n1`";
    wait(&n2, json!({"event": "name_refused", "name": "leader", "error": held}));
    wait(&n3, json!({"event": "name_refused", "name": "leader", "error": held}));
    let mut nodes = [n1, n2, n3];
    let holders = |nodes: &[NodeProcess]| {
        nodes.iter().filter(|n| holds_name(n, "leader")).map(|n| n.name().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(holders(&nodes), ["n1"]);

    // Freeze the holder: the name vanishes on the others with it, and one of them takes it.
    nodes[0].freeze();
    until(
        || holds_name(&nodes[1], "leader") || holds_name(&nodes[2], "leader"),
        || "nobody took the name of the frozen holder".to_string(),
    );

    // Thaw: two holders meet; the one on the lowest-named node (n1) keeps it, the other loses it.
    nodes[0].thaw();
    until(|| holders(&nodes) == ["n1"], || format!("holders after the heal: {:?}", holders(&nodes)));
    let lost = json!({"event": "name_lost", "name": "leader", "now_on": "n1"});
    assert!(nodes[1..].iter().any(|n| !seen(n, lost.clone()).is_empty()));

    // kill -9 the holder: a survivor takes the name, and only one.
    nodes[0].kill();
    until(
        || holders(&nodes[1..]).len() == 1,
        || format!("holders after the kill: {:?}", holders(&nodes[1..])),
    );
}

#[test]
fn nodes_do_not_outlive_a_killed_cluster_launcher() {
    let base = free_port_range(2);
    let mut up = NodeProcess::spawn_with_env(
        "cluster-up",
        env!("CARGO_BIN_EXE_foundation"),
        ["cluster", "up", "--nodes", "2", "--base-port", &base.to_string()],
        [("FOUNDATION_LOG", "error")],
    )
    .unwrap();
    up.wait_for("[n2] member up: n1 ", WAIT).unwrap();
    let pids: Vec<String> = up
        .output()
        .iter()
        .filter_map(|l| l.split("(pid ").nth(1).and_then(|r| r.split(')').next()).map(str::to_string))
        .collect();
    assert_eq!(pids.len(), 2);
    up.kill(); // SIGKILL: the launcher cannot clean up after itself
    for pid in &pids {
        let alive = || {
            let status = std::process::Command::new("kill")
                .args(["-0", pid])
                .stderr(std::process::Stdio::null())
                .status();
            status.unwrap().success()
        };
        until(|| !alive(), || format!("node {pid} outlived its launcher"));
    }
}

/// Nodes that meet through a seed dial each other at once (each learns of the others from it):
/// two connections per pair, and ractor_cluster's election closes one of them, sometimes the one
/// that was ready first. Nobody sees a member go down for that: the member stays up until the
/// other connection is ready, and the replacement is reported (`member_reconnected`).
#[test]
fn nodes_meeting_at_once_see_no_member_go_down_while_the_cluster_forms() {
    // Without the hold, about one run in two of six nodes saw a member go down; eight nodes
    // make more pairs meet at once.
    let names = ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"];
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let nodes: Vec<NodeProcess> = (0..names.len())
        .map(|i| node(names[i], ports[i], if i == 0 { &[] } else { &ports[..1] }, "formation"))
        .collect();
    for (node, own) in nodes.iter().zip(names) {
        for other in names.iter().filter(|n| **n != own) {
            wait(node, json!({"event": "member_up", "name": other}));
        }
    }
    // Whatever the last elections close, they close right after the last sessions are ready.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut replaced = 0;
    for (node, own) in nodes.iter().zip(names) {
        let downs = seen(node, json!({"event": "member_down"}));
        assert!(downs.is_empty(), "{own} saw members go down while the cluster formed: {downs:?}");
        replaced += seen(node, json!({"event": "member_reconnected"})).len();
    }
    eprintln!("{replaced} connections replaced while {} nodes met", names.len());
}
