//! OTLP export (cargo feature `otlp`): timelines sent to an OpenTelemetry collector (or Jaeger,
//! Tempo, Honeycomb…) over OTLP/HTTP with the JSON encoding, `POST {endpoint}/v1/traces`.
//!
//! One resource per node (`service.name` = the node's name, so each node is its own service in
//! the collector's view), one instrumentation scope `scope-tracer`, and each span with its W3C
//! ids, parent, start and end in Unix nanoseconds and its fields as string attributes; its
//! events as span events (named by their message, `level`, `target` and their fields as
//! attributes; `droppedEventsCount` for those past the bound), and a span that ended in error
//! with status `STATUS_CODE_ERROR` and the error as its message. Spans are sent as the
//! timeline holds them, after skew correction.
//!
//! Written by hand rather than with the `opentelemetry` crates: the tracer already has its own
//! ids, buffer and timeline, the JSON mapping is small and stable (OTLP 1.x), and the
//! `opentelemetry-otlp` tree (tonic/prost or its own HTTP stack) would more than double this
//! crate's build for one request. reqwest is already built for the provider clients.
//!
//! ```no_run
//! # async fn demo(timeline: scope_tracer::Timeline) -> Result<(), scope_tracer::otlp::OtlpError> {
//! scope_tracer::otlp::export("http://127.0.0.1:4318", &[timeline]).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::timeline::Timeline;

/// How long an export waits for the collector.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The collector could not be reached.
    #[error("cannot reach the OTLP collector at {endpoint}: {source}")]
    Unreachable {
        /// Where we sent it.
        endpoint: String,
        /// Why (the HTTP client's error).
        #[source]
        source: reqwest::Error,
    },
    /// The collector refused the export.
    #[error("the OTLP collector at {endpoint} answered {status}: {body}")]
    Refused {
        /// Where we sent it.
        endpoint: String,
        /// Its HTTP status.
        status: u16,
        /// What it said (the first 500 characters).
        body: String,
    },
}

fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The OTLP/JSON `ExportTraceServiceRequest` for `timelines`: `resourceSpans` per node.
pub fn request(timelines: &[Timeline]) -> Value {
    let mut by_node: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for span in timelines.iter().flat_map(|t| t.spans.iter()) {
        let mut attributes: Vec<Value> = span.fields.iter().map(|(k, v)| attribute(k, v)).collect();
        attributes.push(attribute("code.namespace", &span.target));
        let mut otlp = json!({
            "traceId": span.trace_id,
            "spanId": span.span_id,
            "name": span.name,
            // SPAN_KIND_INTERNAL
            "kind": 1,
            // 64-bit integers are strings in OTLP/JSON.
            "startTimeUnixNano": span.start_unix_ns.to_string(),
            "endTimeUnixNano": (span.start_unix_ns + span.duration_ns).to_string(),
            "attributes": attributes,
        });
        if let Some(parent) = &span.parent_span_id {
            otlp["parentSpanId"] = json!(parent);
        }
        if !span.events.is_empty() {
            let events: Vec<Value> = span
                .events
                .iter()
                .map(|e| {
                    let mut attributes = vec![attribute("level", &e.level), attribute("target", &e.target)];
                    attributes.extend(e.fields.iter().map(|(k, v)| attribute(k, v)));
                    let name = if e.message.is_empty() { e.level.as_str() } else { e.message.as_str() };
                    json!({"timeUnixNano": e.unix_ns.to_string(), "name": name, "attributes": attributes})
                })
                .collect();
            otlp["events"] = json!(events);
        }
        if span.events_dropped > 0 {
            otlp["droppedEventsCount"] = json!(span.events_dropped);
        }
        if let Some(error) = &span.error {
            // STATUS_CODE_ERROR
            otlp["status"] = json!({"code": 2, "message": error});
        }
        by_node.entry(&span.node).or_default().push(otlp);
    }
    let resource_spans: Vec<Value> = by_node
        .into_iter()
        .map(|(node, spans)| {
            json!({
                "resource": {"attributes": [attribute("service.name", node), attribute("host.name", node)]},
                "scopeSpans": [{
                    "scope": {"name": "scope-tracer", "version": env!("CARGO_PKG_VERSION")},
                    "spans": spans,
                }],
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

/// Sends `timelines` to the OTLP/HTTP collector at `endpoint` (e.g. `http://127.0.0.1:4318`;
/// `/v1/traces` is appended unless the endpoint already ends with it).
pub async fn export(endpoint: &str, timelines: &[Timeline]) -> Result<(), OtlpError> {
    let trimmed = endpoint.trim_end_matches('/');
    let url =
        if trimmed.ends_with("/v1/traces") { trimmed.to_string() } else { format!("{trimmed}/v1/traces") };
    let unreachable = |source: reqwest::Error| OtlpError::Unreachable { endpoint: url.clone(), source };
    let response = reqwest::Client::new()
        .post(&url)
        .timeout(TIMEOUT)
        .json(&request(timelines))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default().chars().take(500).collect();
    Err(OtlpError::Refused { endpoint: url, status: status.as_u16(), body })
}
