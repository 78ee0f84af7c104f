//! Distributed tracing across node processes: a request enters on n1, hops through actors on n2
//! and n3 and back; the collected trace has every span with its parent, exports as Chrome trace
//! JSON, and a node that does not answer the collection is named while the rest is kept.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use foundation_cluster::testkit::{NodeProcess, free_port_range};
use support::{hop_round_trip, json, seen, start_node, wait, wait_n};

fn collect(node: &mut NodeProcess, trace_id: &str) -> serde_json::Value {
    let pattern = json!({"event": "trace_collected"});
    let before = seen(node, pattern.clone()).len();
    node.send_line(&format!("trace-collect {trace_id}")).unwrap();
    wait_n(node, pattern, before + 1).pop().unwrap()
}

#[test]
fn a_trace_crosses_three_nodes_and_is_collected_with_every_parent() {
    let base = free_port_range(3);
    let args = ["--trace-rate", "1.0"];
    let mut n1 = start_node("n1", base, &[], &args);
    let n2 = start_node("n2", base + 1, &[base], &args);
    let n3 = start_node("n3", base + 2, &[base], &args);
    for n in [&n1, &n2, &n3] {
        wait_n(n, json!({"event": "member_up"}), 2);
    }
    // Hop actors become visible to every node as pg syncs: retry until a round trip
    // n1 → n2 → n3 → n1 completes.
    let trace_id = hop_round_trip(&mut n1, "n2,n3,n1");
    assert_eq!(trace_id.len(), 32);

    let report = collect(&mut n1, &trace_id);
    let spans = report["timeline"]["spans"].as_array().unwrap();
    let path: Vec<(String, String)> = spans
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["node"].as_str().unwrap().to_string()))
        .collect();
    let expected = [
        ("request", "n1"),
        ("wire.receive", "n2"),
        ("hop", "n2"),
        ("wire.receive", "n3"),
        ("hop", "n3"),
        ("wire.receive", "n1"),
        ("hop", "n1"),
    ];
    assert_eq!(path, expected.map(|(a, b)| (a.to_string(), b.to_string())), "{report}");
    // Each span's parent is the one before it, across processes.
    for pair in spans.windows(2) {
        assert_eq!(pair[1]["parent_span_id"], pair[0]["span_id"], "{report}");
        assert!(pair[1]["start_unix_ns"].as_u64() >= pair[0]["start_unix_ns"].as_u64());
    }
    assert_eq!(report["timeline"]["missing_nodes"].as_array().unwrap().len(), 0, "{report}");
    // The export is Chrome trace JSON: complete events and one process per node.
    let events = report["chrome"]["traceEvents"].as_array().unwrap();
    assert_eq!(events.iter().filter(|e| e["ph"] == "X").count(), 7);
    let mut processes: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "process_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    processes.sort();
    assert_eq!(processes, ["n1", "n2", "n3"]);

    // The profiler saw the hops on every node (among everything else that runs in spans).
    n1.send_line("profile").unwrap();
    let profile = wait(&n1, json!({"event": "profile"}));
    assert_eq!(profile["nodes"], json!(["n1", "n2", "n3"]), "{profile}");
    for node in ["n1", "n2", "n3"] {
        assert!(profile["runs"][node]["hop"].as_u64() >= Some(1), "{profile}");
    }
    assert!(!profile["analysis"]["hotspots"].as_array().unwrap().is_empty(), "{profile}");

    // n3 frozen: it cannot answer; the collection names it and keeps the rest.
    n3.freeze();
    let report = collect(&mut n1, &trace_id);
    n3.thaw();
    assert_eq!(report["timeline"]["missing_nodes"], json!(["n3"]), "{report}");
    let nodes: Vec<&str> =
        report["timeline"]["spans"].as_array().unwrap().iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 5, "{report}");
    assert!(!nodes.contains(&"n3"));
    drop(n2);
}

#[test]
fn a_profile_window_counts_what_ran_inside_it_on_every_node_and_merges_hotspots() {
    let base = free_port_range(3);
    // Nothing sampled: the profiler times every span all the same.
    let args = ["--trace-rate", "0"];
    let mut n1 = start_node("n1", base, &[], &args);
    let n2 = start_node("n2", base + 1, &[base], &args);
    let n3 = start_node("n3", base + 2, &[base], &args);
    for n in [&n1, &n2, &n3] {
        wait_n(n, json!({"event": "member_up"}), 2);
    }
    // Before the window: hop actors visible everywhere (a round trip done), then more hops.
    hop_round_trip(&mut n1, "n2,n3,n1");
    let round_trips = |n1: &mut NodeProcess, count: usize| {
        for _ in 0..count {
            let before = seen(n1, json!({"event": "trace_hop_done"})).len();
            n1.send_line("trace-hop n2,n3,n1").unwrap();
            wait_n(n1, json!({"event": "trace_hop_done"}), before + 1);
        }
    };
    round_trips(&mut n1, 3);

    n1.send_line("profile start").unwrap();
    let started = wait(&n1, json!({"event": "profile_window_started"}));
    assert_eq!(started["nodes"], json!(["n1", "n2", "n3"]), "{started}");
    round_trips(&mut n1, 5);
    n1.send_line("profile stop").unwrap();
    let stopped = wait(&n1, json!({"event": "profile_window_stopped"}));
    assert_eq!(
        (&stopped["id"], &stopped["nodes"]),
        (&started["id"], &json!(["n1", "n2", "n3"])),
        "{stopped}"
    );
    // After the window: not counted.
    round_trips(&mut n1, 2);

    n1.send_line("profile").unwrap();
    let profile = wait(&n1, json!({"event": "profile"}));
    let analysis = &profile["analysis"];
    assert_eq!(analysis["window"], started["id"], "{profile}");
    assert_eq!(analysis["window_running"], false, "{profile}");
    assert_eq!(analysis["outside_window"], json!([]), "{profile}");
    // Exactly the five round trips' hops, on each node, and merged: 15 with each node's share.
    for node in ["n1", "n2", "n3"] {
        assert_eq!(profile["runs"][node]["hop"], 5, "{profile}");
    }
    let hop = analysis["hotspots"].as_array().unwrap().iter().find(|h| h["kind"] == "hop").unwrap();
    assert_eq!(hop["count"], 15, "{hop}");
    let mut shares: Vec<(&str, u64)> = hop["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["count"].as_u64().unwrap()))
        .collect();
    shares.sort();
    assert_eq!(shares, [("n1", 5), ("n2", 5), ("n3", 5)], "{hop}");
    let ns =
        |d: &serde_json::Value| d["secs"].as_u64().unwrap() * 1_000_000_000 + d["nanos"].as_u64().unwrap();
    assert!(
        0 < ns(&hop["p50"]) && ns(&hop["p50"]) <= ns(&hop["p99"]) && ns(&hop["p99"]) <= ns(&hop["total"]),
        "{hop}"
    );

    // Stopping again: nothing records a window now.
    n1.send_line("profile stop").unwrap();
    let again = wait_n(&n1, json!({"event": "profile_window_stopped"}), 2).pop().unwrap();
    assert_eq!(again["nodes"], json!([]), "{again}");
    drop((n2, n3));
}
