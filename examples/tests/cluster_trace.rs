//! Cluster traces across node processes: started from one node, every node samples while it
//! runs (and not before), the report has every node's spans with their parents, and when the
//! node running the trace's coordinator is killed the coordinator moves to a survivor, which
//! stops the trace and names the lost node.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use foundation_cluster::testkit::{NodeProcess, free_port_range};
use support::{hop_round_trip, json, seen, start_node, text, wait, wait_n};

fn report(node: &mut NodeProcess, command: &str) -> serde_json::Value {
    let pattern = json!({"event": "cluster_trace_report"});
    let before = seen(node, pattern.clone()).len();
    node.send_line(command).unwrap();
    let event = wait_n(node, pattern, before + 1).pop().unwrap();
    assert!(event["report"].is_object(), "{event}");
    event["report"].clone()
}

/// Accepts one HTTP request, answers 200 and returns it (head and body).
fn receive_one(listener: &std::net::TcpListener) -> String {
    use std::io::{Read, Write};
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).unwrap();
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .unwrap();
                return text;
            }
        }
        if n == 0 {
            return text;
        }
    }
}

/// (name, node) of each span of the trace `id` in a report.
fn spans_of(report: &serde_json::Value, id: &str) -> Vec<serde_json::Value> {
    report["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trace_id"] == id)
        .map(|t| t["spans"].as_array().unwrap().clone())
        .unwrap_or_default()
}

#[test]
fn a_cluster_trace_records_every_node_and_survives_its_coordinators_node() {
    let base = free_port_range(3);
    // Nodes sample nothing on their own: only the cluster trace makes them record.
    let args = ["--trace-rate", "0"];
    let mut n1 = start_node("n1", base, &[], &args);
    // n2 sends the traces it stops to an OTLP collector (a one-request HTTP server here).
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let otlp = format!("http://{}", collector.local_addr().unwrap());
    let mut n2 = start_node("n2", base + 1, &[base], &["--trace-rate", "0", "--otlp", &otlp]);
    let n3 = start_node("n3", base + 2, &[base], &args);
    for n in [&n1, &n2, &n3] {
        wait_n(n, json!({"event": "member_up"}), 2);
    }
    let before = hop_round_trip(&mut n2, "n3,n1,n2");

    n2.send_line("trace-start").unwrap();
    let started = wait(&n2, json!({"event": "cluster_trace_started"}));
    let id = text(&started, "id").to_string();
    assert_eq!(id.len(), 16, "{started}");
    let during = hop_round_trip(&mut n2, "n3,n1,n2");

    // Running: the report so far (from any node) has the hop with every parent, on every node.
    let live = report(&mut n2, &format!("trace-report {id}"));
    assert_eq!(live["state"], "running", "{live}");
    assert_eq!(live["coordinator"], "n1", "the lowest-named node runs it: {live}");
    assert!(spans_of(&live, &before).is_empty(), "sampled before the trace began: {live}");
    let spans = spans_of(&live, &during);
    let path: Vec<String> = spans
        .iter()
        .map(|s| format!("{}@{}", s["name"].as_str().unwrap(), s["node"].as_str().unwrap()))
        .collect();
    assert_eq!(
        path,
        ["request@n2", "wire.receive@n3", "hop@n3", "wire.receive@n1", "hop@n1", "wire.receive@n2", "hop@n2"],
        "{live}"
    );
    for pair in spans.windows(2) {
        assert_eq!(pair[1]["parent_span_id"], pair[0]["span_id"], "{live}");
    }

    // The coordinator's node dies: a survivor takes the coordinator over, stops the trace, and
    // names n1 as missing while keeping what n2 and n3 recorded.
    n1.kill();
    let stopped = report(&mut n2, &format!("trace-stop {id}"));
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["coordinator"], "n2", "{stopped}");
    assert_eq!(stopped["missing_nodes"], json!(["n1"]), "{stopped}");
    let nodes: Vec<String> =
        spans_of(&stopped, &during).iter().map(|s| s["node"].as_str().unwrap().to_string()).collect();
    assert_eq!(nodes.len(), 5, "{stopped}");
    assert!(!nodes.iter().any(|n| n == "n1"), "{stopped}");

    // The collector got the stopped trace as OTLP/JSON, one resource per node that answered.
    let request = receive_one(&collector);
    assert!(request.starts_with("POST /v1/traces "), "{request}");
    let body: serde_json::Value = serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
    let services: Vec<&str> = body["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource"]["attributes"][0]["value"]["stringValue"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["n2", "n3"], "{body}");
    wait(&n2, json!({"event": "cluster_trace_exported"}));

    // Stopped: the nodes sample nothing again.
    let after = hop_round_trip(&mut n2, "n3,n2");
    let last = report(&mut n2, &format!("trace-report {id}"));
    assert!(spans_of(&last, &after).is_empty(), "{last}");
    assert_eq!(last["state"], "stopped", "{last}");
    // Unknown ids are refused with a clear message.
    n2.send_line("trace-report 0123456789abcdef").unwrap();
    let failed = wait(&n2, json!({"event": "cluster_trace_report_failed", "id": "0123456789abcdef"}));
    assert!(text(&failed, "error").contains("unknown cluster trace `0123456789abcdef`"), "{failed}");
    drop(n3);
}

#[test]
fn an_evaluation_failing_on_a_worker_node_shows_its_error_in_the_trace_collected_from_another() {
    let base = free_port_range(2);
    // n1 runs no evaluations; n2's workers serve a model `broken` at an endpoint nothing
    // answers at, so every evaluation of a run on that model fails on n2.
    let mut n1 = start_node("n1", base, &[], &["--trace-rate", "0", "--workers", "0"]);
    let n2 = start_node(
        "n2",
        base + 1,
        &[base],
        &["--trace-rate", "0", "--workers", "2", "--lm-url", "http://127.0.0.1:9/v1", "--lm-model", "broken"],
    );
    for n in [&n1, &n2] {
        wait(n, json!({"event": "member_up"}));
    }
    // A node hears of a cluster trace only if its participant is known when the trace starts
    // (process groups sync after a join): started again until n2 records too.
    let deadline = std::time::Instant::now() + support::WAIT;
    let id = loop {
        assert!(std::time::Instant::now() < deadline, "n2 never recorded a cluster trace started on n1");
        let before = seen(&n1, json!({"event": "cluster_trace_started"})).len();
        n1.send_line("trace-start").unwrap();
        let started = wait_n(&n1, json!({"event": "cluster_trace_started"}), before + 1).pop().unwrap();
        let id = text(&started, "id").to_string();
        if report(&mut n1, &format!("trace-report {id}"))["missing_nodes"] == json!([]) {
            break id;
        }
        report(&mut n1, &format!("trace-stop {id}"));
    };

    let dir = tempfile::tempdir().unwrap();
    let spec = support::spec_file(dir.path(), "failing", "broken", 7);
    let seeds = format!("127.0.0.1:{base}");
    let submitted = support::foundation("optimize", &["submit", "--spec", &spec, "--seeds", &seeds]);
    assert!(submitted.status.success(), "{submitted:?}");

    // Collected from n1 (where nothing failed): n2's failed evaluations, with node and span.
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    support::until(
        || {
            *last.borrow_mut() = report(&mut n1, &format!("trace-report {id}"));
            // An error, and the task it failed in finished too (a span is reported once closed).
            let last = last.borrow();
            let Some(error) = last["errors"].as_array().unwrap().first() else { return false };
            let spans = spans_of(&last, text(error, "trace_id"));
            let failed = spans.iter().find(|s| s["span_id"] == error["span_id"]);
            failed.is_some_and(|f| spans.iter().any(|s| s["span_id"] == f["parent_span_id"]))
        },
        || format!("no error in the cluster trace: {}", last.borrow()),
    );
    let last = last.into_inner();
    let error = &last["errors"][0];
    assert_eq!(
        (error["node"].as_str(), error["span"].as_str()),
        (Some("n2"), Some("dspex.evaluate")),
        "{last}"
    );
    assert!(text(error, "message").contains("provider `endpoint`"), "the cause is named: {last}");
    // The failing span is in its trace, under its task, with the event that says why.
    let spans = spans_of(&last, text(error, "trace_id"));
    let failed = spans.iter().find(|s| s["span_id"] == error["span_id"]).unwrap();
    assert_eq!(failed["error"], error["message"], "{last}");
    let task = spans.iter().find(|s| s["span_id"] == failed["parent_span_id"]).unwrap();
    assert_eq!(task["name"], "dspex.task", "{last}");
    assert!(
        failed["events"].as_array().unwrap().iter().any(|e| e["level"] == "INFO"
            && e["message"] == "the program failed"
            && e["fields"]["error"] == error["message"]),
        "{last}"
    );
    drop(n2);
}
