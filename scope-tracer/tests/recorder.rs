//! Trace context through spans, across (simulated) nodes, merged and exported.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeSet;

use scope_tracer::*;
use tracing_subscriber::layer::SubscriberExt;

/// A "node": its own subscriber and buffer.
fn node(name: &str, rate: f64, capacity: usize) -> (impl tracing::Subscriber + Send + Sync, TraceBuffer) {
    let buffer = TraceBuffer::new(capacity);
    (tracing_subscriber::registry().with(TraceLayer::new(name, Sampler::new(rate), buffer.clone())), buffer)
}

#[test]
fn a_trace_hops_to_another_node_and_back_and_merges_parents_first_despite_skew() {
    let (a, buf_a) = node("a", 1.0, 100);
    let (b, buf_b) = node("b", 1.0, 100);
    // On a: the request arrives and calls b.
    let (to_b, root_tp) = tracing::subscriber::with_default(a, || {
        let root = tracing::info_span!("request", trace_root = true, path = "/order");
        let _r = root.enter();
        let call = tracing::info_span!("call_b").entered();
        let tp = current_traceparent().unwrap();
        drop(call);
        (tp, current_traceparent().unwrap())
    });
    // On b: the message carries the traceparent; b works and answers.
    let back = tracing::subscriber::with_default(b, || {
        let handle = tracing::info_span!("handle", traceparent = %to_b).entered();
        let _db = tracing::info_span!("query", rows = 3).entered();
        let tp = current_traceparent().unwrap();
        drop(handle);
        tp
    });
    let trace = TraceContext::parse(&root_tp).unwrap();
    assert_eq!(TraceContext::parse(&back).unwrap().trace_id, trace.trace_id);
    let trace_id = trace.trace_hex();
    // b's clock runs a second behind a's.
    let mut b_spans = buf_b.trace(&trace_id);
    for s in &mut b_spans {
        s.start_unix_ns -= 1_000_000_000;
    }
    let mut all = buf_a.trace(&trace_id);
    all.extend(b_spans);
    let timeline = timeline::merge(&trace_id, all, BTreeSet::new());
    let names: Vec<&str> = timeline.spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["request", "call_b", "handle", "query"]);
    let by_name = |n: &str| timeline.spans.iter().find(|s| s.name == n).unwrap();
    assert_eq!(by_name("handle").parent_span_id.as_ref(), Some(&by_name("call_b").span_id));
    assert_eq!(by_name("query").parent_span_id.as_ref(), Some(&by_name("handle").span_id));
    assert_eq!(by_name("handle").node, "b");
    assert_eq!(by_name("query").fields["rows"], "3");
    assert_eq!(by_name("request").fields["path"], "/order");
    // No child before its parent, though b's clock said so.
    for s in &timeline.spans {
        if let Some(p) =
            s.parent_span_id.as_ref().and_then(|p| timeline.spans.iter().find(|x| &x.span_id == p))
        {
            assert!(s.start_unix_ns >= p.start_unix_ns, "{} before {}", s.name, p.name);
        }
    }
    assert!(timeline.skew_adjusted.contains_key(&by_name("handle").span_id));

    // Chrome trace JSON: one process per node, complete events, valid JSON text.
    let chrome = export::chrome_trace(&timeline);
    let text = serde_json::to_string(&chrome).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = parsed["traceEvents"].as_array().unwrap();
    assert_eq!(events.iter().filter(|e| e["ph"] == "X").count(), 4);
    let processes: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "process_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(processes, ["a", "b"]);
    assert_eq!(export::json_lines(&timeline).lines().count(), 4);
}

#[test]
fn unsampled_traces_carry_their_context_and_record_nothing() {
    let (a, buf_a) = node("a", 0.0, 100);
    let tp = tracing::subscriber::with_default(a, || {
        let _root = tracing::info_span!("request", trace_root = true).entered();
        let _inner = tracing::info_span!("inner").entered();
        current_traceparent().unwrap()
    });
    assert!(tp.ends_with("-00"), "{tp}");
    assert!(buf_a.is_empty());
    // The other node follows the flag, whatever its own rate.
    let (b, buf_b) = node("b", 1.0, 100);
    tracing::subscriber::with_default(b, || {
        let _h = tracing::info_span!("handle", traceparent = %tp).entered();
    });
    assert!(buf_b.is_empty());
    // Outside any trace there is no context; a garbled traceparent starts nothing.
    let (c, buf_c) = node("c", 1.0, 100);
    tracing::subscriber::with_default(c, || {
        assert_eq!(current_traceparent(), None);
        let _h = tracing::info_span!("handle", traceparent = "not-a-traceparent").entered();
        assert_eq!(current_traceparent(), None);
    });
    assert!(buf_c.is_empty());
}

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_and_a_missing_part_leaves_orphans() {
    let (a, buf) = node("a", 1.0, 3);
    let tp = tracing::subscriber::with_default(a, || {
        let _root = tracing::info_span!("root", trace_root = true).entered();
        for i in 0..5 {
            let _s = tracing::info_span!("step", i).entered();
        }
        current_traceparent().unwrap()
    });
    // Five steps and the root: six spans, three kept (the newest: steps 3, 4 and the root).
    assert_eq!((buf.len(), buf.dropped()), (3, 3));
    let trace_id = TraceContext::parse(&tp).unwrap().trace_hex();
    let kept: Vec<String> =
        buf.trace(&trace_id).iter().map(|s| s.fields.get("i").cloned().unwrap_or_default()).collect();
    assert_eq!(kept, ["3", "4", ""]);
    // Merged without the root's node: its children are orphans, and the node is named.
    let steps: Vec<SpanRecord> = buf.trace(&trace_id).into_iter().filter(|s| s.name == "step").collect();
    let timeline = timeline::merge(&trace_id, steps, ["a-root-node".to_string()].into());
    assert_eq!(timeline.orphans.len(), 2);
    assert!(timeline.missing_nodes.contains("a-root-node"));
}

#[test]
fn a_full_buffer_drops_the_oldest_spans_of_any_thread() {
    let buffer = TraceBuffer::new(4);
    let layer = TraceLayer::new("a", Sampler::always(), buffer.clone());
    let subscriber = std::sync::Arc::new(tracing_subscriber::registry().with(layer));
    let record = |thread: &'static str, n: usize| {
        let subscriber = subscriber.clone();
        std::thread::spawn(move || {
            tracing::subscriber::with_default(subscriber, || {
                for i in 0..n {
                    let _s = tracing::info_span!("step", trace_root = true, thread, i).entered();
                }
            })
        })
        .join()
        .unwrap();
    };
    // An early thread records two spans and goes idle; a later one records four.
    record("early", 2);
    record("late", 4);
    let kept: Vec<String> =
        buffer.all().iter().map(|s| format!("{}{}", s.fields["thread"], s.fields["i"])).collect();
    assert_eq!(kept, ["late0", "late1", "late2", "late3"]);
    assert_eq!(buffer.dropped(), 2);
}
