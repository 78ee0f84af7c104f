//! The profiler: spans timed by name, and what `analyze` makes of nodes' health and profiles.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_cluster::health::{ClusterHealth, NodeHealth, NodeStatus};
use scope_tracer::profiler::*;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn spans_are_counted_and_timed_by_name() {
    let profiler = Profiler::default();
    let subscriber = tracing_subscriber::registry().with(ProfileLayer::new(profiler.clone()));
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..10 {
            let _s = tracing::info_span!("handle_order").entered();
        }
        for _ in 0..3 {
            let _s = tracing::info_span!("handle_payment").entered();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let p = profiler.snapshot("n1");
    assert_eq!(p.kinds["handle_order"].count, 10);
    assert_eq!(p.kinds["handle_payment"].count, 3);
    let pay = &p.kinds["handle_payment"];
    assert!(pay.total >= Duration::from_millis(6));
    // Quantiles within the sketch's 1 %, inside the shortest and longest run: each sleep was
    // at least 2 ms and the slowest took at most the total.
    assert!(pay.quantile(0.5) >= Duration::from_micros(1980) && pay.quantile(0.99) <= pay.total);
    // (medians: one empty span preempted on a loaded machine can be slow, but not half of them)
    assert!(p.kinds["handle_order"].quantile(0.5) < pay.quantile(0.5));
    assert!(p.window.is_none() && !p.observer);
}

#[test]
fn a_window_counts_only_what_ran_inside_it_and_keeps_it_once_stopped() {
    let profiler = Profiler::default();
    let run = |n: usize| {
        tracing::subscriber::with_default(subscriber_clone(&profiler), || {
            for _ in 0..n {
                let _s = tracing::info_span!("step").entered();
            }
        })
    };
    run(5);
    assert!(profiler.start_window("00000000000000a1", 100));
    run(7);
    // Starting the running window again changes nothing; an earlier-started one is not taken.
    assert!(profiler.start_window("00000000000000a1", 100));
    assert!(!profiler.start_window("00000000000000c3", 99));
    run(1);
    assert!(!profiler.stop_window("00000000000000ff"), "not the current window");
    assert!(profiler.stop_window("00000000000000a1"));
    run(3);
    let p = profiler.snapshot("n1");
    assert_eq!(p.kinds["step"].count, 16);
    let w = p.window.unwrap();
    assert_eq!((w.id.as_str(), w.running, w.kinds["step"].count), ("00000000000000a1", false, 8));
    // A later window starts from nothing.
    assert!(profiler.start_window("00000000000000b2", 200));
    let w = profiler.snapshot("status-1").window.unwrap();
    assert!(w.running && w.kinds.is_empty());
    assert!(profiler.snapshot("status-1").observer);
}

fn subscriber_clone(profiler: &Profiler) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(ProfileLayer::new(profiler.clone()))
}

fn node(name: &str, cpu: f64, memory: u64, queued: usize) -> NodeStatus {
    node_with_topics(name, cpu, memory, queued, &[])
}

fn node_with_topics(
    name: &str,
    cpu: f64,
    memory: u64,
    queued: usize,
    topics: &[(&str, usize)],
) -> NodeStatus {
    NodeStatus {
        name: name.into(),
        addr: "127.0.0.1:1".into(),
        status: "up".into(),
        health: Some(NodeHealth {
            cpu_percent: Some(cpu),
            memory_bytes: Some(memory),
            host_memory_bytes: Some(4 << 30),
            channel_queued: Some(queued),
            channel_topics: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            ..Default::default()
        }),
        last_heartbeat_ms: Some(0),
    }
}

fn kinds(kinds: &[(&str, u64, u64)]) -> BTreeMap<String, KindStats> {
    let mut map = BTreeMap::new();
    for (kind, count, total_ms) in kinds {
        let mut s = KindStats::default();
        let each = Duration::from_millis(*total_ms) / (*count).max(1) as u32;
        for _ in 0..*count {
            s.record(each);
        }
        map.insert(kind.to_string(), s);
    }
    map
}

fn profile(node: &str, spans: &[(&str, u64, u64)]) -> NodeProfile {
    NodeProfile {
        node: node.into(),
        observer: node.starts_with("status-"),
        elapsed: Duration::from_secs(10),
        kinds: kinds(spans),
        window: None,
    }
}

#[test]
fn analyze_names_hot_full_and_backed_up_nodes_uneven_load_and_hotspots() {
    let health = ClusterHealth {
        nodes: vec![
            node("n1", 95.0, 100 << 20, 10),
            node("n2", 10.0, 3 << 30, 5_000),
            node("n3", 5.0, 50 << 20, 5_000),
        ],
        ..Default::default()
    };
    let before = ClusterHealth {
        nodes: vec![
            node("n1", 50.0, 100 << 20, 10),
            node("n2", 10.0, 3 << 30, 2_000),
            node("n3", 5.0, 50 << 20, 9_000),
        ],
        ..Default::default()
    };
    let profiles = [
        profile("n1", &[("handle_order", 1_000, 900), ("handle_payment", 10, 2_000)]),
        profile("n2", &[("handle_order", 50, 40)]),
    ];
    let analysis = analyze(&health, Some(&before), &profiles, &Thresholds::default());
    let said = analysis.bottlenecks.join("\n");
    assert!(said.contains("n1: CPU at 95 %"), "{said}");
    assert!(said.contains("n2: 3072 MiB resident, 75 % of its host's 4096 MiB (over 50 %)"), "{said}");
    assert!(!said.contains("n1: 100 MiB"), "{said}");
    assert!(said.contains("n2: 5000 messages queued and growing (was 2000)"), "{said}");
    // n3's queue is long but shrinking: not a bottleneck.
    assert!(!said.contains("n3: 5000"), "{said}");
    assert!(said.contains("uneven load: n1"), "{said}");
    // Hotspots per kind over every node, the most time first, with each node's part.
    let hot: Vec<(&str, u64, Vec<&str>)> = analysis
        .hotspots
        .iter()
        .map(|h| (h.kind.as_str(), h.count, h.nodes.iter().map(|n| n.node.as_str()).collect()))
        .collect();
    assert_eq!(hot, [("handle_payment", 10, vec!["n1"]), ("handle_order", 1_050, vec!["n1", "n2"])]);
    let order = &analysis.hotspots[1];
    assert_eq!(order.total, Duration::from_millis(940));
    // n1's 1 000 runs of 0.9 ms and n2's 50 of 0.8 ms: the merged median is n1's, within 1 %.
    let p50 = order.p50.as_secs_f64();
    assert!((p50 - 0.0009).abs() <= 0.0009 * 0.0101, "{p50}");
    assert_eq!(analysis.window, None);
    // Where a node tells its queues per topic, the kind of subscriber that falls behind is
    // named (and a topic that drains is not).
    let by_topic = |orders, audit| ClusterHealth {
        nodes: vec![node_with_topics(
            "n4",
            10.0,
            1 << 20,
            orders + audit,
            &[("orders", orders), ("audit", audit)],
        )],
        ..Default::default()
    };
    let said = analyze(&by_topic(4_000, 1_500), Some(&by_topic(2_500, 3_000)), &[], &Thresholds::default())
        .bottlenecks
        .join("\n");
    assert_eq!(said, "n4: 4000 messages waiting for subscribers of `orders` and growing (was 2500)");
    // A balanced, cool cluster has nothing to say.
    let calm = ClusterHealth { nodes: vec![node("a", 10.0, 1 << 20, 0)], ..Default::default() };
    assert!(
        analyze(&calm, None, &[profile("a", &[("x", 1, 1)])], &Thresholds::default()).bottlenecks.is_empty()
    );
}

#[test]
fn observers_are_marked_and_left_out_of_load_and_nodes_outside_the_window_are_named() {
    let health = ClusterHealth {
        nodes: vec![
            node("n1", 10.0, 1 << 20, 0),
            node("n2", 10.0, 1 << 20, 0),
            node("status-77", 99.0, 1 << 20, 0),
        ],
        ..Default::default()
    };
    // Lifetime figures: the observer runs nothing, and is not "uneven load".
    let profiles =
        [profile("n1", &[("x", 100, 10)]), profile("n2", &[("x", 90, 10)]), profile("status-77", &[])];
    let analysis = analyze(&health, None, &profiles, &Thresholds::default());
    assert!(analysis.bottlenecks.is_empty(), "{:?}", analysis.bottlenecks);
    assert_eq!(analysis.observers, ["status-77"]);

    // A window: n1 and n2 recorded it, n3 (which did not hear of it) is named and left out;
    // the older window n4 still has is not the one looked at.
    let window = |id: &str, started: u64, spans: &[(&str, u64, u64)]| {
        Some(ProfileWindow {
            id: id.into(),
            started_unix_ns: started,
            running: true,
            elapsed: Duration::from_secs(2),
            kinds: kinds(spans),
        })
    };
    let profiles = [
        NodeProfile {
            window: window("00000000000000b2", 20, &[("x", 10, 5)]),
            ..profile("n1", &[("x", 100, 10)])
        },
        NodeProfile {
            window: window("00000000000000b2", 21, &[("x", 30, 5)]),
            ..profile("n2", &[("x", 90, 10)])
        },
        profile("n3", &[("x", 1_000, 10)]),
        NodeProfile { window: window("00000000000000a1", 10, &[("x", 1, 1)]), ..profile("n4", &[]) },
        // A node that lies about its window's start cannot take the analysis over alone.
        NodeProfile { window: window("00000000000000ff", u64::MAX, &[("x", 1, 1)]), ..profile("n5", &[]) },
    ];
    let analysis = analyze(&health, None, &profiles, &Thresholds::default());
    assert_eq!((analysis.window.as_deref(), analysis.window_running), (Some("00000000000000b2"), true));
    assert_eq!(analysis.outside_window, ["n3", "n4", "n5"]);
    assert_eq!(analysis.hotspots[0].count, 40);
    // Over the window n2 ran three times n1's rate: uneven.
    assert!(
        analysis.bottlenecks.iter().any(|b| b.starts_with("uneven load: n2 runs 15 spans/s, n1 5")),
        "{:?}",
        analysis.bottlenecks
    );
}

#[test]
fn made_up_durations_saturate_instead_of_panicking() {
    // What a node could send: a sketch of absurd durations, counts at the top of u64.
    let mut s = KindStats::default();
    s.durations.record(1e300);
    s.count = u64::MAX;
    assert_eq!(s.quantile(0.5), Duration::MAX);
    let profiles = [
        profile("n1", &[("x", 1, 1)]),
        NodeProfile {
            kinds: [("x".to_string(), s.clone()), ("y".to_string(), s)].into(),
            ..profile("n2", &[])
        },
    ];
    let health =
        ClusterHealth { nodes: vec![node("n1", 1.0, 1, 0), node("n2", 1.0, 1, 0)], ..Default::default() };
    let analysis = analyze(&health, None, &profiles, &Thresholds::default());
    assert_eq!(analysis.hotspots.iter().find(|h| h.kind == "x").unwrap().count, u64::MAX);
}
