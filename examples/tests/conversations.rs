//! Durable conversations on real node processes: a chat agent's conversation, kept by the
//! cluster's replicated log, survives the agent's crash (its supervisor restarts it and it
//! resumes), the kill -9 of its node and of the keeper's (started again on another node, it
//! resumes), a second writer (refused, then reloaded), and every node killed and restarted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use foundation_cluster::testkit::{NodeProcess, free_port_range};
use support::{json, number, seen, start_node, text, wait, wait_n};

/// Node `i` (0-based) of three at `base..base + 3`: n1 seeds none, the others the nodes before
/// them; a restarted node seeds the other two.
fn node(base: u16, i: u16, restarted: bool, extra: &[&str]) -> NodeProcess {
    let seeds: Vec<u16> = if restarted {
        (0..3).filter(|j| *j != i).map(|j| base + j).collect()
    } else {
        (0..i).map(|j| base + j).collect()
    };
    start_node(&format!("n{}", i + 1), base + i, &seeds, extra)
}

/// Asks the node's chat agent; the memory size it answers with, or its error. Asked again
/// while the step did not run (the agent between a crash and its restart; its conversation not
/// loadable while the keeper moves): nothing was appended then.
fn chat(node: &mut NodeProcess, text_: &str) -> Result<u64, String> {
    for _ in 0..10 {
        match chat_once(node, text_) {
            Err(e) if e.contains("is not running") || e.contains("could not be loaded") => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
    panic!("the chat agent never ran `chat {text_}`");
}

fn chat_once(node: &mut NodeProcess, text_: &str) -> Result<u64, String> {
    let answered = seen(node, json!({"event": "chat_answer"})).len();
    let failed = seen(node, json!({"event": "chat_failed"})).len();
    node.send_line(&format!("chat {text_}")).unwrap();
    support::until(
        || {
            seen(node, json!({"event": "chat_answer"})).len() > answered
                || seen(node, json!({"event": "chat_failed"})).len() > failed
        },
        || format!("no answer to `chat {text_}`"),
    );
    if let Some(answer) = seen(node, json!({"event": "chat_answer"})).get(answered) {
        return Ok(number(answer, "memory"));
    }
    Err(text(&seen(node, json!({"event": "chat_failed"}))[failed], "error").to_string())
}

/// The conversation as the cluster keeps it, read on `node`: its version and messages. Read
/// again while no keeper answers (after every node restarted, the coordinators first wait out
/// the longest lease they may have granted before: about 10 s).
fn conversation(node: &mut NodeProcess, id: &str) -> (u64, Vec<String>) {
    for _ in 0..6 {
        let shown = seen(node, json!({"event": "conversation", "id": id})).len();
        let failed = seen(node, json!({"event": "conversation_failed", "id": id})).len();
        node.send_line(&format!("conversation {id}")).unwrap();
        support::until(
            || {
                seen(node, json!({"event": "conversation", "id": id})).len() > shown
                    || seen(node, json!({"event": "conversation_failed", "id": id})).len() > failed
            },
            || format!("no answer to `conversation {id}`"),
        );
        if let Some(c) = seen(node, json!({"event": "conversation", "id": id})).get(shown) {
            return (number(c, "version"), serde_json::from_value(c["messages"].clone()).unwrap());
        }
        let error = seen(node, json!({"event": "conversation_failed", "id": id}))[failed].clone();
        assert!(text(&error, "error").contains("no conversation keeper"), "{error}");
    }
    panic!("no keeper answered for conversation {id}");
}

#[test]
fn a_conversation_survives_crashes_kill_9_a_second_writer_and_every_node_restarted() {
    let base = free_port_range(3);
    let mut nodes = vec![node(base, 0, false, &["--chat-agent", "helper"])];
    for i in 1..3 {
        nodes.push(node(base, i, false, &["--conversations"]));
    }
    // Every node known to every other before the first change (the log's majority is of them).
    for n in &nodes {
        wait_n(n, json!({"event": "member_up"}), 2);
    }
    assert_eq!(chat(&mut nodes[0], "my name is Ada"), Ok(2));
    assert_eq!(chat(&mut nodes[0], "I live in Lisbon"), Ok(4));

    // A step that panics: the asker is told, the supervisor restarts the agent, which resumes.
    let crashed = chat(&mut nodes[0], "crash").unwrap_err();
    assert!(crashed.contains("stopped before answering"), "{crashed}");
    assert_eq!(chat(&mut nodes[0], "what is my name"), Ok(6), "resumed with the 4 messages kept");
    let (version, messages) = conversation(&mut nodes[2], "helper");
    assert_eq!(messages.len(), 6, "{messages:?}");
    assert_eq!(messages[0], "user: my name is Ada", "{messages:?}");
    assert_eq!(messages[4], "user: what is my name", "the crashed step left nothing: {messages:?}");

    // kill -9 of the agent's node, which also holds the keeper (the lowest name): the agent is
    // started again on n2 and resumes once a new keeper has replayed the log.
    nodes[0].kill();
    nodes[1].send_line("chat-agent helper").unwrap();
    wait(&nodes[1], json!({"event": "chat_agent_started", "agent": "helper"}));
    assert_eq!(chat(&mut nodes[1], "where do I live"), Ok(8));

    // A second instance of the conversation (on n3) loads it and appends; the first one's next
    // append is then stale: refused, not interleaved; it reloads and goes on after the other's.
    nodes[2].send_line("chat-agent helper").unwrap();
    wait(&nodes[2], json!({"event": "chat_agent_started", "agent": "helper"}));
    assert_eq!(chat(&mut nodes[2], "I am on n3 now"), Ok(10));
    let stale = chat(&mut nodes[1], "and on n2").unwrap_err();
    assert!(stale.contains("another writer appended first"), "{stale}");
    assert_eq!(chat(&mut nodes[1], "and on n2 again"), Ok(12));
    let (last_version, messages) = conversation(&mut nodes[2], "helper");
    assert!(last_version > version, "every change makes the version larger");
    assert_eq!(messages.len(), 12, "{messages:?}");
    assert!(!messages.iter().any(|m| m == "user: and on n2"), "the refused step is not kept: {messages:?}");

    // Every node killed, then restarted from its state directory: nothing acknowledged is lost.
    nodes[1].kill();
    nodes[2].kill();
    nodes.clear();
    for i in 0..3 {
        nodes.push(node(base, i, true, &["--conversations"]));
    }
    for n in &nodes {
        wait_n(n, json!({"event": "member_up"}), 2);
    }
    let (version, messages) = conversation(&mut nodes[0], "helper");
    assert_eq!((version, messages.len()), (last_version, 12), "{messages:?}");
    assert_eq!(messages[0], "user: my name is Ada", "{messages:?}");
    assert_eq!(messages[10], "user: and on n2 again", "{messages:?}");
}
