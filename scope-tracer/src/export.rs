//! Exports of a timeline: Chrome trace event JSON (opens in Perfetto and `chrome://tracing`),
//! one process per node and one track per span name, and JSON lines of spans.
//!
//! In the Chrome export a span's events are instant events (`ph: "i"`, thread scope) on the
//! span's track, named by their message, with `level`, `target` and their fields as arguments;
//! a span that ended in error has an `error` argument, and `otherData.errors` lists every such
//! span (node, span, message).

use std::collections::BTreeMap;

use crate::timeline::Timeline;

/// The timeline as Chrome trace event JSON: complete (`X`) events in microseconds from the
/// trace's first span, with `process_name` and `thread_name` metadata.
pub fn chrome_trace(timeline: &Timeline) -> serde_json::Value {
    let origin = timeline.spans.iter().map(|s| s.start_unix_ns).min().unwrap_or(0);
    let mut pids: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tids: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut events = Vec::new();
    for s in &timeline.spans {
        let next_pid = pids.len() + 1;
        let pid = *pids.entry(&s.node).or_insert(next_pid);
        let next_tid = tids.len() + 1;
        let tid = *tids.entry((&s.node, &s.name)).or_insert(next_tid);
        let mut args = serde_json::Map::new();
        args.insert("span_id".into(), s.span_id.clone().into());
        if let Some(p) = &s.parent_span_id {
            args.insert("parent_span_id".into(), p.clone().into());
        }
        for (k, v) in &s.fields {
            args.insert(k.clone(), v.clone().into());
        }
        if let Some(error) = &s.error {
            args.insert("error".into(), error.clone().into());
        }
        if s.events_dropped > 0 {
            args.insert("events_dropped".into(), s.events_dropped.into());
        }
        for e in &s.events {
            let mut event_args = serde_json::Map::new();
            event_args.insert("level".into(), e.level.clone().into());
            event_args.insert("target".into(), e.target.clone().into());
            event_args.insert("span_id".into(), s.span_id.clone().into());
            for (k, v) in &e.fields {
                event_args.insert(k.clone(), v.clone().into());
            }
            let name = if e.message.is_empty() { e.level.clone() } else { e.message.clone() };
            events.push(serde_json::json!({
                "name": name, "cat": e.target, "ph": "i", "s": "t",
                "ts": e.unix_ns.saturating_sub(origin) as f64 / 1000.0,
                "pid": pid, "tid": tid, "args": event_args,
            }));
        }
        events.push(serde_json::json!({
            "name": s.name, "cat": s.target, "ph": "X",
            "ts": (s.start_unix_ns - origin) as f64 / 1000.0,
            "dur": s.duration_ns as f64 / 1000.0,
            "pid": pid, "tid": tid, "args": args,
        }));
    }
    for (node, pid) in &pids {
        events
            .push(serde_json::json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": node}}));
    }
    for ((node, name), tid) in &tids {
        events.push(serde_json::json!({"name": "thread_name", "ph": "M", "pid": pids[node], "tid": tid, "args": {"name": name}}));
    }
    serde_json::json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "trace_id": timeline.trace_id,
            "missing_nodes": timeline.missing_nodes,
            "errors": timeline.errors,
        },
    })
}

/// The timeline's spans as JSON lines, in timeline order.
pub fn json_lines(timeline: &Timeline) -> String {
    timeline
        .spans
        .iter()
        .filter_map(|s| serde_json::to_string(s).ok())
        .map(|mut l| {
            l.push('\n');
            l
        })
        .collect()
}
