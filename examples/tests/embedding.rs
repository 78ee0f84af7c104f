//! The embedding example as a real process next to a `foundation node` peer: its route calls
//! the actor, its own Prometheus recorder holds its metrics and Foundation's, and on SIGTERM it
//! finishes the request in flight, drains the actor and leaves: the peer records a leave, not a
//! failure. (`cargo test --test embedding` alone does not rebuild the example: build it with
//! `cargo build -p foundation-examples --examples`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use std::time::Duration;

use foundation_cluster::testkit::{NodeProcess, free_port};
use support::{WAIT, json, request, seen, start_node, until, wait};

fn example_binary(name: &str) -> std::path::PathBuf {
    // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples").join(name)
}

#[test]
fn an_embedded_node_serves_then_drains_and_leaves_gracefully_on_sigterm() {
    let (peer_port, svc_port, http_port) = (free_port(), free_port(), free_port());
    let peer = start_node("peer", peer_port, &[], &[]);
    let http = format!("127.0.0.1:{http_port}");
    let args = [
        "--name".to_string(),
        "svc".into(),
        "--listen".into(),
        format!("127.0.0.1:{svc_port}"),
        "--seeds".into(),
        format!("127.0.0.1:{peer_port}"),
        "--http".into(),
        http.clone(),
        "--work-ms".into(),
        "1500".into(),
    ];
    let mut svc = NodeProcess::spawn("svc", example_binary("embedded_service"), &args)
        .unwrap_or_else(|e| panic!("{e} (build it: cargo build -p foundation-examples --examples)"));
    svc.wait_for("serving on", WAIT).unwrap();
    wait(&peer, json!({"event": "member_up", "name": "svc"}));

    let (status, body) = request(&http, "POST", "/summarize", "one two three four five six seven");
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["summary"], "one two three four five");
    assert_eq!((summary["words"].as_u64(), summary["node"].as_str()), (Some(7), Some("svc")));

    // A second request, still in flight (1.5 s of work) when SIGTERM arrives.
    let in_flight = {
        let http = http.clone();
        std::thread::spawn(move || request(&http, "POST", "/summarize", "the last request before shutdown"))
    };
    until(
        || request(&http, "GET", "/metrics", "").1.contains("service_requests_total 2"),
        || "the second request never reached the service".into(),
    );
    // The service's own recorder also holds what Foundation emitted through the facade.
    let metrics = request(&http, "GET", "/metrics", "").1;
    assert!(metrics.contains("service_summaries_total "), "{metrics}");
    assert!(metrics.contains("foundation_"), "no Foundation metric in the service's recorder:\n{metrics}");

    assert!(
        svc.terminate(Duration::from_secs(30)),
        "the service did not exit cleanly:\n{}",
        svc.output().join("\n")
    );
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "the in-flight request was cut: {body}");
    assert!(body.contains("the last request before"), "{body}");
    let out = svc.output().join("\n");
    for step in
        ["SIGTERM: no new requests", "in-flight requests finished", "actor drained", "left the cluster"]
    {
        assert!(out.contains(step), "missing `{step}`:\n{out}");
    }
    wait(&peer, json!({"event": "member_left", "name": "svc"}));
    let peer_out = peer.output().join("\n");
    assert!(
        seen(&peer, json!({"event": "member_down", "name": "svc"})).is_empty(),
        "the peer saw a failure, not a leave:\n{peer_out}"
    );
}
