//! Agent building blocks: typed tools by name (JSON in and out, errors that name the tool and
//! the field) and the bounded conversation memory.

use foundation_actors::agents::{Memory, ToolError, Tools};
use foundation_actors::providers::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Search {
    query: String,
    limit: usize,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Hit {
    title: String,
    score: f64,
}

fn tools() -> Tools {
    let mut tools = Tools::new();
    tools
        .register("search", "finds documents by keyword", |s: Search| async move {
            if s.query.is_empty() {
                return Err("an empty query finds nothing".to_string());
            }
            Ok((0..s.limit)
                .map(|i| Hit { title: format!("{} #{i}", s.query), score: 1.0 / (i + 1) as f64 })
                .collect::<Vec<_>>())
        })
        .unwrap()
        .register("clock.now", "the time, as a fixed string in tests", |_: ()| async {
            Ok::<_, String>("12:00")
        })
        .unwrap();
    tools
}

#[tokio::test]
async fn tools_are_called_by_name_with_json_or_typed_arguments() {
    let tools = tools();
    assert_eq!(tools.names(), ["clock.now", "search"]);
    assert_eq!(
        tools.describe(),
        "clock.now: the time, as a fixed string in tests\nsearch: finds documents by keyword"
    );

    let hits = tools.call("search", json!({"query": "crdt", "limit": 2})).await.unwrap();
    assert_eq!(hits, json!([{"title": "crdt #0", "score": 1.0}, {"title": "crdt #1", "score": 0.5}]));
    let typed: Vec<Hit> =
        tools.call_typed("search", &Search { query: "raft".into(), limit: 1 }).await.unwrap();
    assert_eq!(typed, [Hit { title: "raft #0".into(), score: 1.0 }]);
    assert_eq!(tools.call("clock.now", json!(null)).await.unwrap(), "12:00");
    // A clone shares the tools.
    assert_eq!(tools.clone().call("clock.now", json!(null)).await.unwrap(), "12:00");
}

#[tokio::test]
async fn bad_calls_get_errors_that_name_the_tool_and_the_field() {
    let tools = tools();
    match tools.call("serach", json!({})).await {
        Err(ToolError::Unknown { name, known }) => {
            assert_eq!((name.as_str(), known), ("serach", vec!["clock.now".into(), "search".into()]))
        }
        other => panic!("expected an unknown tool, got {other:?}"),
    }
    let bad = tools.call("search", json!({"query": "x", "limit": "three"})).await.unwrap_err();
    assert!(matches!(&bad, ToolError::BadArguments { tool, .. } if tool == "search"), "{bad:?}");
    assert!(bad.to_string().contains("limit"), "the field is named: {bad}");
    let failed = tools.call("search", json!({"query": "", "limit": 1})).await.unwrap_err();
    assert_eq!(failed.to_string(), "tool `search` failed: an empty query finds nothing");
    let wrong_result: Result<u32, _> = tools.call_typed("clock.now", &()).await;
    assert!(matches!(wrong_result, Err(ToolError::BadResult { .. })));

    let mut more = tools.clone();
    for name in ["", "has space", &"x".repeat(65), "search"] {
        let refused = more.register(name, "", |_: ()| async { Ok::<_, String>(()) }).unwrap_err();
        assert!(matches!(refused, ToolError::Registration { .. }), "{name:?}: {refused:?}");
    }
}

#[test]
fn memory_keeps_the_system_prompt_and_a_bounded_window() {
    assert!(Memory::new(0).is_err());
    let mut memory = Memory::new(3).unwrap().with_system("You plan.");
    for i in 0..10 {
        memory.remember(ChatMessage::user(format!("u{i}")));
        memory.remember(ChatMessage::assistant(format!("a{i}")));
        assert!(memory.len() <= 3);
    }
    let messages = memory.messages();
    assert_eq!(messages[0].role, Role::System);
    let recent: Vec<_> = messages[1..].iter().map(|m| m.content.as_str()).collect();
    assert_eq!(recent, ["a8", "u9", "a9"]);
    assert_eq!(memory.forgotten(), 17);
}
