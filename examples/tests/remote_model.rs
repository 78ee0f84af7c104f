//! A model's stream forwarded between real node processes: node `m` serves a model
//! (`--serve-model sim`), node `c` streams from it over the cluster. The pieces arrive in order
//! and add up to the whole answer; a reader that drops its stream cancels the server's; a reader
//! whose node is killed (kill -9: the cancel never comes) has its stream dropped by the server
//! once idle; a server whose node is killed fails the reader's stream with an error naming it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use foundation_cluster::testkit::{NodeProcess, free_port};
use support::{json, number, seen, start_node, text, until, wait, wait_n};

fn server_stats(node: &mut NodeProcess) -> serde_json::Value {
    let asked = seen(node, json!({"event": "model_server"})).len();
    node.send_line("model-server").unwrap();
    wait_n(node, json!({"event": "model_server"}), asked + 1).swap_remove(asked)
}

/// Streams from `model` on `caller` until it answers (the server is visible a moment after the
/// nodes meet); the first answer's event.
fn stream_until_served(caller: &mut NodeProcess, command: &str, answer: &str) -> serde_json::Value {
    let mut result = None;
    until(
        || {
            let (done, failed) = (
                seen(caller, json!({"event": answer})).len(),
                seen(caller, json!({"event": "model_error"})).len(),
            );
            caller.send_line(command).unwrap();
            let deadline = std::time::Instant::now() + support::WAIT;
            loop {
                assert!(std::time::Instant::now() < deadline, "`{command}` answered nothing");
                if let Some(event) = seen(caller, json!({"event": answer})).get(done) {
                    result = Some(event.clone());
                    return true;
                }
                if seen(caller, json!({"event": "model_error"})).len() > failed {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    return false;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        },
        || format!("`{command}` never answered `{answer}`"),
    );
    result.unwrap()
}

#[test]
fn a_stream_is_forwarded_between_nodes_and_ends_with_either_one() {
    let (pm, pc) = (free_port(), free_port());
    let mut m = start_node(
        "m",
        pm,
        &[],
        &[
            "--serve-model",
            "sim",
            "--model-idle-ms",
            "1500",
            "--model-tokens",
            "200",
            "--model-interval-ms",
            "20",
        ],
    );
    let mut c = start_node("c", pc, &[pm], &[]);
    wait(&c, json!({"event": "member_up", "name": "m"}));

    // Whole: every piece, in order, adding up to the answer.
    let done = stream_until_served(&mut c, "model-stream sim 0 Tell me about lighthouses", "model_done");
    let pieces: Vec<String> =
        seen(&c, json!({"event": "model_piece"})).iter().map(|p| text(p, "text").to_string()).collect();
    let n = number(&done, "pieces") as usize;
    assert!(n >= 20, "{done}");
    let last: String = pieces[pieces.len() - n..].concat();
    assert_eq!(last, text(&done, "content"));
    assert_eq!(number(&done, "completion_tokens"), 200);

    // Dropped by its reader after 3 pieces: the server's stream is cancelled.
    c.send_line("model-stream sim 3 Tell me about rivers").unwrap();
    wait(&c, json!({"event": "model_dropped", "pieces": 3}));
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    until(
        || {
            *last.borrow_mut() = server_stats(&mut m);
            number(&last.borrow(), "cancelled") == 1
        },
        || last.borrow().to_string(),
    );

    // The reader's node killed mid-stream: no cancel comes, the server drops it once idle.
    c.send_line("model-hold sim Tell me about mountains").unwrap();
    wait(&c, json!({"event": "model_held"}));
    c.kill();
    until(
        || {
            *last.borrow_mut() = server_stats(&mut m);
            let s = last.borrow();
            number(&s, "expired") == 1 && number(&s, "open") == 0
        },
        || last.borrow().to_string(),
    );

    // The server's node killed mid-stream: the reader's stream fails, naming the server.
    let pc2 = free_port();
    let mut c2 = start_node("c2", pc2, &[pm], &[]);
    wait(&c2, json!({"event": "member_up", "name": "m"}));
    drop(c);
    let _ = stream_until_served(&mut c2, "model-stream sim 1 warm up", "model_dropped");
    // Errors of the warm-up (the model not yet known here) are not the one this waits for.
    let errors = seen(&c2, json!({"event": "model_error"})).len();
    c2.send_line("model-stream sim 0 Tell me a very long story").unwrap();
    wait(&c2, json!({"event": "model_piece", "n": 2}));
    m.kill();
    let failed = wait_n(&c2, json!({"event": "model_error"}), errors + 1).swap_remove(errors);
    assert!(
        text(&failed, "error").contains("unreachable: ") && text(&failed, "error").contains("models on node"),
        "{failed}"
    );
    assert!(number(&failed, "pieces") >= 2, "{failed}");
}
