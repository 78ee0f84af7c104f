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

#[test]
fn events_inside_sampled_spans_are_kept_bounded_and_errors_mark_their_span() {
    let (a, buf) = node("a", 1.0, 100);
    let tp = tracing::subscriber::with_default(a, || {
        let root = tracing::info_span!("request", trace_root = true);
        let _r = root.enter();
        tracing::info!(rows = 3, "query done");
        tracing::debug!("not kept at the default level");
        {
            let _step = tracing::info_span!("step").entered();
            for i in 0..40 {
                tracing::info!(i, "tick");
            }
            // Past the bound, an error still marks the span.
            tracing::error!(error = "disk full", "write failed");
            tracing::error!("a second error does not replace the first");
        }
        {
            // A span declared with an `error` field recorded later ended in error too.
            let recorded = tracing::info_span!("recorded", error = tracing::field::Empty);
            recorded.record("error", "the model did not answer");
            let _in = recorded.enter();
            tracing::info!(long = "é".repeat(2000).as_str(), "{}", "x".repeat(5000));
        }
        {
            let _huge = tracing::info_span!("huge", error = "e".repeat(100_000).as_str()).entered();
        }
        current_traceparent().unwrap()
    });
    let trace_id = TraceContext::parse(&tp).unwrap().trace_hex();
    let spans = buf.trace(&trace_id);
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap().clone();

    let request = by_name("request");
    assert_eq!(request.error, None, "a child's error is its own");
    assert_eq!(request.events.len(), 1, "{:?}", request.events);
    let event = &request.events[0];
    assert_eq!((event.level.as_str(), event.message.as_str()), ("INFO", "query done"));
    assert_eq!(event.fields["rows"], "3");
    assert_eq!(event.target, module_path!());
    assert!(
        event.unix_ns >= request.start_unix_ns
            && event.unix_ns <= request.start_unix_ns + request.duration_ns
    );

    let step = by_name("step");
    assert_eq!(step.events.len(), recorder::MAX_EVENTS_PER_SPAN);
    assert_eq!(step.events_dropped, 42 - recorder::MAX_EVENTS_PER_SPAN as u32);
    assert_eq!(step.events.last().unwrap().fields["i"], (recorder::MAX_EVENTS_PER_SPAN - 1).to_string());
    assert_eq!(step.error.as_deref(), Some("write failed: disk full"));

    let recorded = by_name("recorded");
    assert_eq!(recorded.error.as_deref(), Some("the model did not answer"));
    assert!(by_name("huge").fields["error"].len() <= recorder::MAX_TEXT_BYTES, "span fields are bounded too");
    assert!(by_name("huge").error.as_ref().unwrap().ends_with('…'));
    let long = &recorded.events[0];
    assert!(
        long.message.len() <= recorder::MAX_TEXT_BYTES && long.message.ends_with('…'),
        "{}",
        long.message.len()
    );
    assert!(long.fields["long"].len() <= recorder::MAX_TEXT_BYTES && long.fields["long"].ends_with('…'));

    // The timeline lists the errors with node and span, in timeline order; the Chrome export
    // carries events as instant events and errors as arguments.
    let timeline = timeline::merge(&trace_id, spans.clone(), BTreeSet::new());
    let errors: Vec<(&str, &str, &str)> =
        timeline.errors.iter().map(|e| (e.span.as_str(), e.node.as_str(), e.message.as_str())).collect();
    assert_eq!(
        errors[..2],
        [("step", "a", "write failed: disk full"), ("recorded", "a", "the model did not answer")]
    );
    assert_eq!(errors.len(), 3);
    let chrome = export::chrome_trace(&timeline);
    let events = chrome["traceEvents"].as_array().unwrap();
    let instants = events.iter().filter(|e| e["ph"] == "i").count();
    assert_eq!(instants, 1 + recorder::MAX_EVENTS_PER_SPAN + 1);
    assert!(events.iter().any(|e| e["ph"] == "X" && e["args"]["error"] == "write failed: disk full"));
    assert_eq!(chrome["otherData"]["errors"].as_array().unwrap().len(), 3);
}

#[test]
fn events_of_unsampled_traces_or_below_the_level_are_not_kept_and_the_level_is_a_setting() {
    let buffer = TraceBuffer::new(100);
    let layer =
        TraceLayer::new("a", Sampler::always(), buffer.clone()).with_event_level(tracing::Level::DEBUG);
    let tp = tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _root = tracing::info_span!("request", trace_root = true).entered();
        tracing::debug!("kept at DEBUG");
        tracing::trace!("not kept");
        current_traceparent().unwrap()
    });
    let trace_id = TraceContext::parse(&tp).unwrap().trace_hex();
    let levels: Vec<String> = buffer.trace(&trace_id)[0].events.iter().map(|e| e.level.clone()).collect();
    assert_eq!(levels, ["DEBUG"]);

    // At ERROR only: an INFO event is not kept, an ERROR one is and marks the span; an event
    // with an explicit parent goes to that span, one outside every span to none.
    let buffer = TraceBuffer::new(100);
    let layer =
        TraceLayer::new("a", Sampler::always(), buffer.clone()).with_event_level(tracing::Level::ERROR);
    let tp = tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::error!("outside every span");
        let root = tracing::info_span!("request", trace_root = true);
        let other = tracing::info_span!(parent: &root, "other");
        let _in = root.enter();
        tracing::info!("below the level");
        tracing::error!(parent: &other, "to the other span");
        drop(other);
        current_traceparent().unwrap()
    });
    let trace_id = TraceContext::parse(&tp).unwrap().trace_hex();
    let spans = buffer.trace(&trace_id);
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    assert!(by_name("request").events.is_empty() && by_name("request").error.is_none());
    let messages: Vec<&str> = by_name("other").events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["to the other span"]);
    assert_eq!(by_name("other").error.as_deref(), Some("to the other span"));
}

#[test]
fn instrument_err_marks_its_span_and_a_spans_events_are_bounded_in_bytes() {
    #[tracing::instrument(err)]
    fn charge(amount: u64) -> Result<(), String> {
        if amount > 10 { Err(format!("{amount} is over the limit")) } else { Ok(()) }
    }
    let (a, buf) = node("a", 1.0, 100);
    let tp = tracing::subscriber::with_default(a, || {
        let _root = tracing::info_span!("request", trace_root = true).entered();
        let _ = charge(5);
        let _ = charge(50);
        {
            // 20 events of 1 KiB each: 16 KiB of events kept, the rest counted as dropped.
            let _big = tracing::info_span!("big").entered();
            for _ in 0..20 {
                tracing::info!(body = "b".repeat(1000).as_str(), "x");
            }
        }
        current_traceparent().unwrap()
    });
    let trace_id = TraceContext::parse(&tp).unwrap().trace_hex();
    let spans = buf.trace(&trace_id);
    let errors: Vec<Option<&str>> =
        spans.iter().filter(|s| s.name == "charge").map(|s| s.error.as_deref()).collect();
    assert_eq!(errors, [None, Some("50 is over the limit")]);
    let big = spans.iter().find(|s| s.name == "big").unwrap();
    let bytes: usize = big
        .events
        .iter()
        .map(|e| e.message.len() + e.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())
        .sum();
    assert!(bytes <= recorder::MAX_EVENT_BYTES_PER_SPAN, "{bytes}");
    assert_eq!(big.events.len() + big.events_dropped as usize, 20);
    assert!(big.events_dropped > 0);
}

#[test]
fn skew_correction_moves_a_spans_events_with_it() {
    let (b, buf) = node("b", 1.0, 100);
    let tp = tracing::subscriber::with_default(b, || {
        let _root = tracing::info_span!("root", trace_root = true).entered();
        let _child = tracing::info_span!("child").entered();
        tracing::info!("inside");
        current_traceparent().unwrap()
    });
    let trace_id = TraceContext::parse(&tp).unwrap().trace_hex();
    let mut spans = buf.trace(&trace_id);
    let child = spans.iter_mut().find(|s| s.name == "child").unwrap();
    // The child's node was a second behind.
    let offset = child.events[0].unix_ns - child.start_unix_ns;
    child.start_unix_ns -= 1_000_000_000;
    child.events[0].unix_ns -= 1_000_000_000;
    let timeline = timeline::merge(&trace_id, spans, BTreeSet::new());
    let child = timeline.spans.iter().find(|s| s.name == "child").unwrap();
    assert_eq!(child.events[0].unix_ns - child.start_unix_ns, offset);
}
