//! Distributed tracing across node processes: a request enters on n1, hops through actors on n2
//! and n3 and back; the collected trace has every span with its parent, exports as Chrome trace
//! JSON, and a node that does not answer the collection is named while the rest is kept.

mod support;

use foundation_cluster::testkit::{NodeProcess, free_port_range};
use support::{WAIT, start_node, until};

fn collect(node: &mut NodeProcess, trace_id: &str) -> serde_json::Value {
    let before = node.output().iter().filter(|l| l.starts_with("trace collected")).count();
    node.send_line(&format!("trace-collect {trace_id}")).unwrap();
    let lines = node.wait_for_count("trace collected", before + 1, WAIT).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(lines.last().unwrap().trim_start_matches("trace collected ")).unwrap()
}

#[test]
fn a_trace_crosses_three_nodes_and_is_collected_with_every_parent() {
    let base = free_port_range(3);
    let args = ["--trace-rate", "1.0"];
    let mut n1 = start_node("n1", base, &[], &args);
    let n2 = start_node("n2", base + 1, &[base], &args);
    let n3 = start_node("n3", base + 2, &[base], &args);
    for n in [&n1, &n2, &n3] {
        n.wait_for_count("member up", 2, WAIT).unwrap_or_else(|e| panic!("{e}"));
    }
    // Hop actors become visible to every node as pg syncs: retry until a round trip completes.
    let mut sent = 0;
    until(
        || {
            if n1.output().iter().any(|l| l.starts_with("trace hop done")) {
                return true;
            }
            let tries = n1.output().iter().filter(|l| l.starts_with("trace hop failed")).count();
            if tries >= sent {
                n1.send_line("trace-hop n2,n3,n1").unwrap();
                sent += 1;
            }
            false
        },
        || "a hop round trip n1 → n2 → n3 → n1".to_string(),
    );
    let done = n1.output().into_iter().find(|l| l.starts_with("trace hop done")).unwrap();
    let trace_id = done.trim_start_matches("trace hop done ").trim().to_string();
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
    let line = n1.wait_for("profile {", WAIT).unwrap_or_else(|e| panic!("{e}"));
    let profile: serde_json::Value = serde_json::from_str(line.trim_start_matches("profile ")).unwrap();
    assert_eq!(profile["nodes"], serde_json::json!(["n1", "n2", "n3"]), "{profile}");
    for node in ["n1", "n2", "n3"] {
        assert!(profile["runs"][node]["hop"].as_u64() >= Some(1), "{profile}");
    }
    assert!(!profile["analysis"]["hotspots"].as_array().unwrap().is_empty(), "{profile}");

    // n3 frozen: it cannot answer; the collection names it and keeps the rest.
    n3.freeze();
    let report = collect(&mut n1, &trace_id);
    n3.thaw();
    assert_eq!(report["timeline"]["missing_nodes"], serde_json::json!(["n3"]), "{report}");
    let nodes: Vec<&str> =
        report["timeline"]["spans"].as_array().unwrap().iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 5, "{report}");
    assert!(!nodes.contains(&"n3"));
    drop(n2);
}
