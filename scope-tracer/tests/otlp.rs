//! OTLP export over real HTTP on loopback: the request a collector receives, a refusal and an
//! unreachable collector reported with what went wrong.
#![cfg(feature = "otlp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use scope_tracer::otlp::{OtlpError, export};
use scope_tracer::timeline::merge;
use scope_tracer::{SpanEvent, SpanRecord};

fn span(node: &str, id: &str, parent: Option<&str>, start: u64) -> SpanRecord {
    SpanRecord {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: id.into(),
        parent_span_id: parent.map(str::to_string),
        name: format!("work-{node}"),
        target: "app".into(),
        node: node.into(),
        start_unix_ns: start,
        duration_ns: 500,
        fields: BTreeMap::from([("order".to_string(), "7".to_string())]),
        events: Vec::new(),
        events_dropped: 0,
        error: None,
    }
}

/// A collector on loopback that answers `status` and keeps what it was sent.
async fn collector(status: StatusCode) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let keep = keep.clone();
        async move {
            keep.lock().unwrap().push((uri.path().to_string(), body));
            (status, "collector says no")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

#[tokio::test]
async fn a_timeline_reaches_the_collector_as_otlp_json_one_resource_per_node() {
    let (endpoint, received) = collector(StatusCode::OK).await;
    let timeline = merge(
        "4bf92f3577b34da6a3ce929d0e0e4736",
        vec![
            span("n1", "00f067aa0ba902b7", None, 1_000),
            SpanRecord {
                events: vec![SpanEvent {
                    unix_ns: 1_300,
                    level: "ERROR".into(),
                    target: "app::db".into(),
                    message: "query failed".into(),
                    fields: BTreeMap::from([("error".to_string(), "disk full".to_string())]),
                }],
                events_dropped: 3,
                error: Some("query failed: disk full".into()),
                ..span("n2", "00f067aa0ba902b8", Some("00f067aa0ba902b7"), 1_200)
            },
        ],
        BTreeSet::new(),
    );
    export(&endpoint, &[timeline]).await.unwrap();
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, "/v1/traces");
    let request: serde_json::Value = serde_json::from_str(&received[0].1).unwrap();
    let resources = request["resourceSpans"].as_array().unwrap();
    let services: Vec<&str> = resources
        .iter()
        .map(|r| r["resource"]["attributes"][0]["value"]["stringValue"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["n1", "n2"]);
    let child = &resources[1]["scopeSpans"][0]["spans"][0];
    assert_eq!(child["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(child["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(
        (child["startTimeUnixNano"].as_str(), child["endTimeUnixNano"].as_str()),
        (Some("1200"), Some("1700"))
    );
    assert!(
        child["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "order" && a["value"]["stringValue"] == "7")
    );
    assert!(resources[0]["scopeSpans"][0]["spans"][0].get("parentSpanId").is_none());
    // The child's event is a span event; its error is the span's status.
    let event = &child["events"][0];
    assert_eq!(
        (event["name"].as_str(), event["timeUnixNano"].as_str()),
        (Some("query failed"), Some("1300"))
    );
    let attributes: Vec<(&str, &str)> = event["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap(), a["value"]["stringValue"].as_str().unwrap()))
        .collect();
    assert_eq!(attributes, [("level", "ERROR"), ("target", "app::db"), ("error", "disk full")]);
    assert_eq!(child["droppedEventsCount"], 3);
    assert_eq!(child["status"], serde_json::json!({"code": 2, "message": "query failed: disk full"}));
    let parent = &resources[0]["scopeSpans"][0]["spans"][0];
    assert!(parent.get("status").is_none() && parent.get("events").is_none(), "{parent}");
}

#[tokio::test]
async fn a_refusing_or_absent_collector_is_a_clear_error() {
    let (endpoint, _) = collector(StatusCode::BAD_REQUEST).await;
    let err = export(&format!("{endpoint}/v1/traces"), &[]).await.unwrap_err();
    assert!(matches!(err, OtlpError::Refused { status: 400, .. }), "{err}");
    assert!(err.to_string().contains("collector says no"), "{err}");
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = export(&format!("http://127.0.0.1:{port}"), &[]).await.unwrap_err();
    assert!(matches!(err, OtlpError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}/v1/traces")), "{err}");
}
