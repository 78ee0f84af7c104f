//! Error context: step histories, nesting across awaits, cancellation, panics, bounds, spans.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io;
use std::time::Duration;

use foundation_core::config::ErrorContextConfig;
use foundation_core::error_context::{ErrorContext, Outcome, StepRecord};

fn names(steps: &[StepRecord]) -> Vec<&str> {
    steps.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn failure_in_third_step_carries_the_whole_history() {
    let err = ErrorContext::new("ingest")
        .run(|ctx| async move {
            ctx.step("read", |ctx| async move {
                ctx.record("bytes", &512);
                Ok::<_, io::Error>(())
            })
            .await?;
            ctx.step("parse", |_| async { Ok::<(), io::Error>(()) }).await?;
            ctx.step("store", |_| async { Err(io::Error::other("disk full")) }).await?;
            ctx.step("never", |_| async { Ok::<(), io::Error>(()) }).await
        })
        .await
        .unwrap_err();

    assert_eq!(err.error().to_string(), "disk full");
    let root = &err.history().root;
    assert_eq!(root.name, "ingest");
    assert_eq!(root.outcome, Outcome::Failed("disk full".into()));
    assert_eq!(names(&root.first_children), ["read", "parse", "store"]);
    assert_eq!(root.first_children[0].data[0].json, "512");
    assert_eq!(root.first_children[2].outcome, Outcome::Failed("disk full".into()));

    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "disk full");
    assert!(lines[1].starts_with("operation `ingest` failed after"), "{text}");
    assert!(lines[2].contains("ok") && lines[2].contains("read bytes=512"), "{text}");
    assert!(lines[3].contains("ok") && lines[3].contains("parse"), "{text}");
    assert!(lines[4].contains("FAILED") && lines[4].ends_with("store: disk full"), "{text}");
    assert_eq!(lines.len(), 5, "{text}");

    // The std error chain reaches the original error.
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "disk full");
}

#[tokio::test]
async fn nested_steps_across_await_points_and_tasks() {
    let ctx = ErrorContext::new("optimize");
    let result = ctx
        .step("evaluate", |ctx| async move {
            let a = tokio::spawn({
                let ctx = ctx.clone();
                async move {
                    ctx.step("batch-a", |_| async {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok::<_, String>(1)
                    })
                    .await
                }
            });
            let b = ctx.step("batch-b", |_| async { Ok::<_, String>(2) }).await?;
            Ok::<_, String>(a.await.map_err(|e| e.to_string())?? + b)
        })
        .await;
    assert_eq!(result, Ok(3));
    let history = ctx.history();
    let evaluate = history.root.find("evaluate").unwrap();
    assert_eq!(evaluate.outcome, Outcome::Ok);
    let mut children = names(&evaluate.first_children);
    children.sort();
    assert_eq!(children, ["batch-a", "batch-b"]);
    let a = evaluate.find("batch-a").unwrap();
    assert!(a.duration >= Duration::from_millis(5), "{:?}", a.duration);
    assert!(evaluate.duration >= a.duration);
    // The root is still running: the operation was not finished with `run`.
    assert_eq!(history.root.outcome, Outcome::Running);
}

#[tokio::test]
async fn a_dropped_step_is_recorded_as_cancelled() {
    let ctx = ErrorContext::new("call");
    let slow = ctx.step("wait_for_provider", |_| std::future::pending::<Result<(), String>>());
    assert!(tokio::time::timeout(Duration::from_millis(10), slow).await.is_err());
    let err = ctx.fail("timed out");
    let step = err.history().root.find("wait_for_provider").unwrap();
    assert_eq!(step.outcome, Outcome::Cancelled);
    assert_eq!(err.history().root.outcome, Outcome::Failed("timed out".into()));
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
fn a_panicking_step_is_recorded_as_panicked() {
    let ctx = ErrorContext::new("compute");
    let inner = ctx.clone();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        inner.step_sync("divide", |_| -> Result<(), String> { panic!("division by zero") })
    }));
    assert!(caught.is_err());
    assert_eq!(ctx.history().root.find("divide").unwrap().outcome, Outcome::Panicked);
}

#[test]
fn a_runaway_loop_keeps_first_and_last_steps_and_counts_the_rest() {
    let limits = ErrorContextConfig::default();
    let ctx = ErrorContext::with_limits("loop", limits.clone());
    let n = 100_000u64;
    let result = ctx.clone().run_sync(|ctx| {
        for i in 0..n {
            ctx.step_sync(format!("iteration-{i}"), |ctx| {
                ctx.step_sync("inner", |_| Ok::<_, String>(()))?;
                if i == n - 1 { Err(format!("failed at {i}")) } else { Ok(()) }
            })?;
        }
        Ok::<_, String>(())
    });
    let err = result.unwrap_err();
    let root = &err.history().root;
    assert_eq!(root.first_children.len(), limits.keep_first_children);
    assert_eq!(root.last_children.len(), limits.keep_last_children);
    assert_eq!(root.elided_children, n - (limits.keep_first_children + limits.keep_last_children) as u64);
    assert_eq!(root.first_children[0].name, "iteration-0");
    let last = root.last_children.last().unwrap();
    assert_eq!(last.name, format!("iteration-{}", n - 1));
    assert_eq!(last.outcome, Outcome::Failed(format!("failed at {}", n - 1)));
    assert_eq!(last.first_children[0].name, "inner");
    assert!(root.len() <= limits.max_steps, "kept {} steps", root.len());
    assert!(err.to_string().contains("steps elided"), "{err}");
}

#[test]
fn total_steps_and_depth_are_bounded_and_counted() {
    let limits = ErrorContextConfig { max_steps: 20, max_depth: 3, ..Default::default() };
    let ctx = ErrorContext::with_limits("wide", limits);
    // 10 parents x 5 children = 60 steps against a bound of 20 (root included).
    for p in 0..10 {
        let _ = ctx.step_sync(format!("p{p}"), |ctx| {
            for c in 0..5 {
                ctx.step_sync(format!("c{c}"), |_| Ok::<_, String>(()))?;
            }
            Ok::<_, String>(())
        });
    }
    let h = ctx.history();
    assert_eq!(h.root.len(), 20);
    assert_eq!(h.unrecorded_steps, 60 - 19);

    // Depth: a chain of 6 nested steps under a bound of 3 keeps 3 levels.
    fn nest(ctx: &ErrorContext, level: usize) -> Result<(), String> {
        if level == 6 {
            return Ok(());
        }
        ctx.step_sync(format!("level-{level}"), |ctx| nest(ctx, level + 1))
    }
    let ctx = ErrorContext::with_limits("deep", ErrorContextConfig { max_depth: 3, ..Default::default() });
    nest(&ctx, 0).unwrap();
    let h = ctx.history();
    assert_eq!(h.root.len(), 4);
    assert_eq!(h.unrecorded_steps, 3);
}

#[test]
fn captured_data_is_size_bounded() {
    let limits = ErrorContextConfig { max_data_bytes: 64, ..Default::default() };
    let ctx = ErrorContext::with_limits("capture", limits);
    let big = "é".repeat(5_000); // multi-byte: the cut must respect char boundaries
    ctx.step_sync("s", |ctx| {
        ctx.record("big", &big);
        ctx.record("small", &serde_json::json!({"k": [1, 2]}));
        for i in 0..20 {
            ctx.record(format!("k{i}"), &i);
        }
        Ok::<_, String>(())
    })
    .unwrap();
    let h = ctx.history();
    let data = &h.root.find("s").unwrap().data;
    assert_eq!(data.len(), foundation_core::error_context::MAX_CAPTURES_PER_STEP);
    assert!(data[0].json.len() <= 64);
    assert_eq!(data[0].truncated_from, Some(10_002));
    assert_eq!(data[1].json, r#"{"k":[1,2]}"#);
    assert_eq!(data[1].truncated_from, None);
}

#[test]
fn history_serializes_for_storage_and_transport() {
    let ctx = ErrorContext::new("op");
    ctx.step_sync("a", |_| Ok::<_, String>(())).unwrap();
    let _ = ctx.step_sync("b", |_| Err::<(), _>("boom"));
    let h = ctx.history();
    let json = serde_json::to_string(&h).unwrap();
    assert!(json.contains(r#""status":"failed","error":"boom""#), "{json}");
    let back: foundation_core::error_context::StepHistory = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
}
