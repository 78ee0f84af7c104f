//! Real hosts and a real partition: node processes in network namespaces on a bridge, their
//! packets dropped by `iptables` (the sockets stay open, so a peer learns of the partition only
//! by silence). Skips, saying why, where namespaces cannot be made, unless
//! `CI_NETNS_TEST=required` (as under `.ci/run`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use foundation_cluster::testkit::NodeProcess;
use foundation_cluster::testkit::netns::{TestNet, required};
use support::{json, log_level, seen, wait, wait_n};

/// `hosts` test hosts, or `None` (with the reason printed) where this machine cannot make them.
fn test_net(hosts: usize) -> Option<TestNet> {
    match TestNet::new(hosts) {
        Ok(net) => Some(net),
        Err(e) if !required() => {
            eprintln!("skipped: {e} (set CI_NETNS_TEST=required to make this a failure)");
            None
        }
        Err(e) => panic!("{e} (CI_NETNS_TEST=required)"),
    }
}

/// `foundation node` named `name` on host `k`, listening on the host's address, seeded with the
/// hosts in `seeds`.
fn start(net: &TestNet, k: usize, name: &str, seeds: &[usize]) -> NodeProcess {
    let listen = format!("{}:4100", net.host(k).address());
    let mut args: Vec<String> =
        ["node", "--json", "--name", name, "--listen", &listen, "--no-state"].map(String::from).to_vec();
    // Off loopback a cookie of one's own is required.
    args.extend(["--cookie".into(), "netns-test-cookie".into()]);
    if !seeds.is_empty() {
        let seeds: Vec<String> = seeds.iter().map(|s| format!("{}:4100", net.host(*s).address())).collect();
        args.extend(["--seeds".into(), seeds.join(",")]);
    }
    // Plaintext off loopback is an explicit opt-in (the test hosts reach nothing else).
    let env = [("FOUNDATION_LOG", log_level()), ("FOUNDATION_CLUSTER__ALLOW_PLAINTEXT", "true".into())];
    let node = net.spawn(k, name, env!("CARGO_BIN_EXE_foundation"), &args, env).unwrap();
    wait(&node, json!({"event": "listening", "node": name, "addr": listen}));
    node
}

#[test]
fn a_node_whose_packets_are_dropped_is_found_down_by_silence_and_rejoins_after_the_heal() {
    let Some(net) = test_net(3) else { return };
    let n1 = start(&net, 0, "n1", &[]);
    let n2 = start(&net, 1, "n2", &[0]);
    let mut n3 = start(&net, 2, "n3", &[0]);
    for (node, others) in [(&n1, ["n2", "n3"]), (&n2, ["n1", "n3"]), (&n3, ["n1", "n2"])] {
        for other in others {
            wait(node, json!({"event": "member_up", "name": other}));
        }
    }

    // Every packet of n3 dropped, both ways: no connection is closed, no process stops.
    net.isolate(2).unwrap();
    for node in [&n1, &n2] {
        let down = wait(node, json!({"event": "member_down", "name": "n3"}));
        assert!(down["reason"].as_str().unwrap().contains("unreachable"), "{down}");
    }
    wait(&n3, json!({"event": "member_down", "name": "n1"}));
    assert!(n3.is_running(), "a dropped packet is not a dead process");
    assert!(seen(&n1, json!({"event": "member_down", "name": "n2"})).is_empty(), "n2 was never cut off");

    // The heal: n3 dials its seed again and is up everywhere.
    net.heal().unwrap();
    for node in [&n1, &n2] {
        wait_n(node, json!({"event": "member_up", "name": "n3"}), 2);
    }
}

/// Three `foundation node --cluster` processes named `PREFIX1..3`, no seeds and no state (only
/// the announcements on the bridge can bring them together), host `k` listening on
/// `listen(k)`; each must see the other two up at their hosts' addresses.
fn discovered_on_the_bridge(prefix: &str, listen: impl Fn(&TestNet, usize) -> String) {
    let Some(net) = test_net(3) else { return };
    let nodes: Vec<NodeProcess> = (0..3)
        .map(|k| {
            let name = format!("{prefix}{}", k + 1);
            let listen = listen(&net, k);
            let args = ["node", "--json", "--cluster", "--name", &name, "--listen", &listen, "--no-state"];
            let env = [
                ("FOUNDATION_LOG", log_level()),
                ("FOUNDATION_COOKIE", "netns-discovery-cookie".into()),
                ("FOUNDATION_CLUSTER__ALLOW_PLAINTEXT", "true".into()),
            ];
            let node = net.spawn(k, &name, env!("CARGO_BIN_EXE_foundation"), args, env).unwrap();
            wait(&node, json!({"event": "listening", "node": name}));
            node
        })
        .collect();
    for (k, node) in nodes.iter().enumerate() {
        for other in (0..3).filter(|j| *j != k) {
            let up = wait(node, json!({"event": "member_up", "name": format!("{prefix}{}", other + 1)}));
            // Known by the address of its host (never `0.0.0.0`, which would be every such node's).
            assert_eq!(up["addr"], json!(format!("{}:4100", net.host(other).address())), "{up}");
        }
    }
}

#[test]
fn zero_config_nodes_find_each_other_on_the_bridge_by_multicast() {
    discovered_on_the_bridge("z", |net, k| format!("{}:4100", net.host(k).address()));
}

/// Two hosts listening on every interface at the same port (`0.0.0.0:4100`) and one on its
/// address: each announces the address its multicast leaves by (an unspecified one would be
/// refused: its MAC would not cover the address dialled) and is known to its peers by it, and
/// the two on `0.0.0.0` do not take each other for themselves.
#[test]
fn nodes_listening_on_every_interface_are_discovered_and_connect() {
    discovered_on_the_bridge("w", |net, k| match k {
        0 => format!("{}:4100", net.host(k).address()),
        _ => "0.0.0.0:4100".to_string(),
    });
}

#[test]
fn delay_and_loss_slow_a_link_where_the_kernel_has_netem() {
    let Some(net) = test_net(2) else { return };
    if let Err(e) = net.degrade(1, std::time::Duration::from_millis(300), 0.0) {
        // Not every kernel has sch_netem (this skip is not made a failure by CI_NETNS_TEST).
        eprintln!("skipped: {e}");
        return;
    }
    // A TCP connect from host 1 to a node on host 0 takes at least the delay (its SYN leaves
    // late): a lower bound only, which a slow machine cannot break.
    let _n1 = start(&net, 0, "n1", &[]);
    let probe = format!(
        "start=$(date +%s%N); exec 3<>/dev/tcp/{}/4100; echo $(( ($(date +%s%N) - start) / 1000000 ))",
        net.host(0).address()
    );
    let out = net.spawn(1, "probe", "bash", ["-c", &probe], [("LC_ALL", "C")]).unwrap();
    let line = out.wait_for("", std::time::Duration::from_secs(10)).unwrap();
    let ms: u64 = line.trim().parse().unwrap();
    assert!(ms >= 250, "a connection through a 300 ms netem delay took {ms} ms");
    net.heal().unwrap();
}

/// An optimization run over a real partition: the scheduler's host loses every packet mid-run
/// (its sockets stay open), the majority side elects another scheduler from its own replicas of
/// the log, the cut-off one commits nothing more, and after the heal it catches up. The result
/// is the single-process one, every task is in the majority's log once, and the cut-off
/// node's log, caught up, holds no task twice (its uncommitted tail was replaced).
#[test]
fn an_optimization_run_goes_on_across_a_packet_dropping_partition_of_its_schedulers_host() {
    let Some(net) = test_net(3) else { return };
    let dirs = tempfile::tempdir().unwrap();
    let node = |k: usize, seeds: &[usize]| {
        let name = format!("n{}", k + 1);
        let listen = format!("{}:4100", net.host(k).address());
        let state = dirs.path().join(&name).display().to_string();
        let mut args: Vec<String> =
            ["node", "--json", "--name", &name, "--listen", &listen, "--state-dir", &state]
                .map(String::from)
                .to_vec();
        args.extend(
            ["--cookie", "netns-test-cookie", "--optimize", "partitioned", "--seed", "7"].map(String::from),
        );
        args.extend(["--candidates", "5", "--workers", "2", "--latency-ms", "40"].map(String::from));
        if !seeds.is_empty() {
            let seeds: Vec<String> =
                seeds.iter().map(|s| format!("{}:4100", net.host(*s).address())).collect();
            args.extend(["--seeds".into(), seeds.join(",")]);
        }
        let env = [("FOUNDATION_LOG", log_level()), ("FOUNDATION_CLUSTER__ALLOW_PLAINTEXT", "true".into())];
        let node = net.spawn(k, &name, env!("CARGO_BIN_EXE_foundation"), &args, env).unwrap();
        wait(&node, json!({"event": "listening", "node": name, "addr": listen}));
        node
    };
    let n1 = node(0, &[]);
    let n2 = node(1, &[0]);
    let _n3 = node(2, &[0]);
    let done = |n: &NodeProcess| {
        seen(n, json!({"event": "optimization_progress"}))
            .iter()
            .filter_map(|e| e["done"].as_u64())
            .max()
            .unwrap_or(0)
    };
    support::until(|| done(&n2) >= 160, || format!("progress: {:?}", n2.output()));
    // n1, the lowest name, holds the scheduler: every packet of its host dropped.
    net.isolate(0).unwrap();
    let before = done(&n2);
    support::until(|| done(&n2) >= before + 240, || format!("no progress without n1: {:?}", n2.output()));
    assert!(seen(&n2, json!({"event": "optimization_finished"})).is_empty(), "healed mid-run");
    net.heal().unwrap();
    let result = n2
        .wait_for_event(&json!({"event": "optimization_finished"}), std::time::Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = dspex_optimizer::distributed::RunSpec::questions("local", 7, 5);
    let lm: std::sync::Arc<dyn foundation_actors::providers::LanguageModel> = std::sync::Arc::new(
        foundation_actors::providers::SimulatedModel::new(foundation_actors::providers::SimulatedConfig {
            seed: 7,
            latency: std::time::Duration::ZERO,
            ..Default::default()
        }),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = runtime.block_on(spec.search().compile(
        &spec.student,
        &spec.trainset,
        &spec.valset,
        lm,
        &spec.metric,
        7,
    ));
    assert_eq!(result["best_seed"], local.best.seed, "{result}");
    let scores: Vec<(i64, f64)> = serde_json::from_value(result["scores"].clone()).unwrap();
    assert_eq!(scores, local.scores);
    // Let n1 catch up, then read the logs from the stopped nodes' directories.
    std::thread::sleep(std::time::Duration::from_secs(3));
    drop((n1, n2, _n3));
    let tasks = |name: &str| {
        let dir = dirs.path().join(name).join("logs");
        let entries = foundation_cluster::replicated_log::ReplicatedLog::read_replica(
            &dir,
            dspex_optimizer::distributed::LOG,
        )
        .unwrap();
        dspex_optimizer::distributed::scheduler::logged_results(&entries)
            .into_iter()
            .map(|(_, task)| task)
            .collect::<Vec<u64>>()
    };
    let expected = 8 * (1 + dspex_optimizer::distributed::QUESTIONS_VAL.div_ceil(5));
    let mut n2_tasks = tasks("n2");
    n2_tasks.sort_unstable();
    let logged = n2_tasks.len();
    n2_tasks.dedup();
    assert_eq!((logged, n2_tasks.len()), (expected, expected), "n2's log");
    let mut n1_tasks = tasks("n1");
    n1_tasks.sort_unstable();
    let logged = n1_tasks.len();
    n1_tasks.dedup();
    assert_eq!(logged, n1_tasks.len(), "the cut-off node's log holds a task twice");
}
