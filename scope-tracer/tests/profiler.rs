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
    // Histogram edges bracket the 2 ms sleeps.
    assert!(pay.quantile(0.5) >= Duration::from_millis(2) && pay.quantile(0.99) <= Duration::from_millis(64));
    assert!(p.kinds["handle_order"].quantile(0.99) < pay.quantile(0.5));
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
            channel_queued: Some(queued),
            channel_topics: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            ..Default::default()
        }),
        last_heartbeat_ms: Some(0),
    }
}

fn profile(node: &str, kinds: &[(&str, u64, u64)]) -> NodeProfile {
    let mut map = BTreeMap::new();
    for (kind, count, total_ms) in kinds {
        let mut s = KindStats::default();
        let each = Duration::from_millis(*total_ms) / (*count).max(1) as u32;
        for _ in 0..*count {
            // Built through the public fields: count, total and one bucket.
            s.count += 1;
            s.total += each;
        }
        s.buckets = vec![0; 32];
        s.buckets[10] = *count;
        map.insert(kind.to_string(), s);
    }
    NodeProfile { node: node.into(), elapsed: Duration::from_secs(10), kinds: map }
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
    assert!(said.contains("n2: 3072 MiB resident"), "{said}");
    assert!(said.contains("n2: 5000 messages queued and growing (was 2000)"), "{said}");
    // n3's queue is long but shrinking: not a bottleneck.
    assert!(!said.contains("n3: 5000"), "{said}");
    assert!(said.contains("uneven load: n1"), "{said}");
    let hot: Vec<(&str, &str)> =
        analysis.hotspots.iter().map(|h| (h.node.as_str(), h.kind.as_str())).collect();
    assert_eq!(hot, [("n1", "handle_payment"), ("n1", "handle_order"), ("n2", "handle_order")]);
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
