//! Human approval on a real node process: the operator agent's `delete_file` calls wait for a
//! decision given on the node's standard input (`approve`, `deny`), or time out; the decision
//! is recorded with the call and the tool runs only when approved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use foundation_cluster::testkit::{NodeProcess, free_port};
use support::{json, number, seen, start_node, text, wait, wait_n};

/// Asks the operator and returns the id of the approval its run waits for.
fn ask(node: &mut NodeProcess, prompt: &str) -> u64 {
    let before = seen(node, json!({"event": "approval_requested"})).len();
    node.send_line(&format!("agent-ask {prompt}")).unwrap();
    let requested = wait_n(node, json!({"event": "approval_requested"}), before + 1).swap_remove(before);
    assert_eq!(text(&requested, "tool"), "delete_file", "{requested}");
    number(&requested, "id")
}

fn answer(node: &NodeProcess, n: usize) -> serde_json::Value {
    wait_n(node, json!({"event": "agent_answer"}), n).swap_remove(n - 1)
}

fn files(answer: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(answer["files"].clone()).unwrap()
}

#[test]
fn a_call_waits_for_approval_runs_when_approved_and_not_when_denied() {
    let mut node = start_node("ops", free_port(), &[], &["--operator-agent"]);
    let first = ask(&mut node, "delete the file path: /tmp/notes.txt");
    let id = first;
    // It waits: listed as pending, nothing deleted yet.
    node.send_line("approvals").unwrap();
    let listed = wait(&node, json!({"event": "approvals"}));
    assert_eq!(listed["pending"][0]["id"], id, "{listed}");
    assert_eq!(listed["pending"][0]["arguments"], r#"{"path":"/tmp/notes.txt"}"#, "{listed}");
    assert!(seen(&node, json!({"event": "agent_answer"})).is_empty());

    node.send_line(&format!("approve {id}")).unwrap();
    wait(&node, json!({"event": "decided", "id": id, "decision": "approved"}));
    let done = answer(&node, 1);
    let call = &done["calls"][0];
    assert_eq!(call["tool"], "delete_file", "{done}");
    assert_eq!(call["outcome"], r#"done: "deleted /tmp/notes.txt""#, "{done}");
    assert_eq!(call["decision"], "approved by an operator at the node's console", "{done}");
    assert!(!files(&done).contains(&"/tmp/notes.txt".to_string()), "{done}");

    // Denied: the tool does not run, the model reads the reason.
    let id = ask(&mut node, "delete the file path: /tmp/report.pdf");
    node.send_line(&format!("deny {id} keep the quarterly report")).unwrap();
    let done = answer(&node, 2);
    let call = &done["calls"][0];
    assert!(call["outcome"].as_str().unwrap().starts_with("denied:"), "{done}");
    assert!(call["outcome"].as_str().unwrap().contains("keep the quarterly report"), "{done}");
    assert!(files(&done).contains(&"/tmp/report.pdf".to_string()), "{done}");
    assert!(
        done["answer"].as_str().unwrap().contains("keep the quarterly report"),
        "the model read it: {done}"
    );

    // A decision for nothing pending is refused and changes nothing.
    node.send_line(&format!("approve {id}")).unwrap();
    let refused = wait(&node, json!({"event": "error"}));
    assert!(text(&refused, "error").contains(&format!("no approval {id} is pending")), "{refused}");
    node.send_line("approve many").unwrap();
    wait_n(&node, json!({"event": "error"}), 2);
    node.send_line("approvals").unwrap();
    let listed = wait_n(&node, json!({"event": "approvals"}), 2).swap_remove(1);
    assert_eq!(listed["pending"], json!([]), "{listed}");
    assert_eq!(listed["decided"], json!([[first, "approved"], [id, "denied"]]), "{listed}");
    assert!(id > first && first > 1_000_000_000_000, "ids from the desk's start time: {first}, {id}");
}

#[test]
fn a_call_nobody_decides_times_out_and_does_not_run() {
    let mut node = start_node("ops", free_port(), &[], &["--operator-agent", "--approval-timeout-ms", "300"]);
    ask(&mut node, "delete the file path: /tmp/old.log");
    let done = answer(&node, 1);
    assert_eq!(done["calls"][0]["decision"], "timed out", "{done}");
    assert!(done["calls"][0]["outcome"].as_str().unwrap().contains("nobody approved this call"), "{done}");
    assert!(files(&done).contains(&"/tmp/old.log".to_string()), "{done}");
}
