//! Pipelines: every accepted item ends as output or dead letter, backpressure reaches the
//! source, retries and their predicate, panics, and draining on close.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foundation_actors::pipeline::{Pipeline, Stage, TrySubmitError};
use foundation_core::retry::{Jitter, RetryPolicy};
use tokio::sync::Semaphore;

/// Deterministic "random" per item and attempt.
fn roll(id: u64, attempt: usize) -> u64 {
    let mut z = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (attempt as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 29)) % 100
}

#[derive(Debug)]
enum Flaky {
    Transient,
    Permanent,
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[tokio::test(start_paused = true)]
async fn a_randomly_failing_stage_loses_no_item() {
    const N: u64 = 2000;
    let attempts: Arc<dashmap_lite::Map> = Arc::default();
    let seen = attempts.clone();
    let pipeline = Pipeline::builder::<u64>("flaky")
        .stage(Stage::new("parse", |n: u64| async move { Ok::<_, String>(n) }).workers(2).capacity(8))
        .stage(
            Stage::new("flaky", move |n: u64| {
                let attempt = seen.bump(n);
                async move {
                    match roll(n, attempt) {
                        0 => panic!("stage bug on item {n}"),
                        1..=4 => Err(Flaky::Permanent),
                        5..=34 => Err(Flaky::Transient),
                        _ => Ok(n * 10),
                    }
                }
            })
            .workers(4)
            .capacity(8)
            .retry(
                RetryPolicy::new(3)
                    .backoff(Duration::from_millis(10), Duration::from_millis(50))
                    .jitter(Jitter::Full),
            )
            .retry_if(|e| matches!(e, Flaky::Transient)),
        )
        .stage(Stage::new("format", |n: u64| async move { Ok::<_, String>(format!("item-{n}")) }).workers(2))
        .build(16)
        .await
        .unwrap();
    let monitor = pipeline.monitor();
    let (input, mut outputs, mut dead) = pipeline.split();

    let producer = tokio::spawn(async move {
        for n in 0..N {
            input.submit(n).await.unwrap();
        }
        // input dropped here: the pipeline drains and closes.
    });
    let collect_out = tokio::spawn(async move {
        let mut ids = Vec::new();
        while let Some((id, value)) = outputs.recv().await {
            assert_eq!(value, format!("item-{}", id * 10));
            ids.push(id);
        }
        ids
    });
    let collect_dead = tokio::spawn(async move {
        let mut letters = Vec::new();
        while let Some(letter) = dead.recv().await {
            letters.push(letter);
        }
        letters
    });
    producer.await.unwrap();
    let out = collect_out.await.unwrap();
    let dead = collect_dead.await.unwrap();

    // Every item accounted for exactly once.
    let mut all: Vec<u64> = out.iter().copied().chain(dead.iter().map(|d| d.id)).collect();
    all.sort();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "{} outputs + {} dead letters", out.len(), dead.len());

    // The dead letters are the ones the failure rules predict, with the item inside.
    let (mut panics, mut permanent, mut exhausted) = (0, 0, 0);
    for letter in dead {
        assert_eq!(letter.stage, "flaky");
        if letter.error.starts_with("panicked: stage bug on item") {
            panics += 1;
        } else if letter.error == "Permanent" {
            permanent += 1;
        } else {
            assert_eq!((letter.error.as_str(), letter.attempts), ("Transient", 3), "{letter:?}");
            exhausted += 1;
        }
        let id = letter.id;
        assert_eq!(letter.item::<u64>(), Some(id), "the dead letter carries the item");
    }
    assert!(panics > 0 && permanent > 0 && exhausted > 0, "{panics} {permanent} {exhausted}");
    assert!(out.len() > 1000, "most items get through: {}", out.len());
    let stats = monitor.stats();
    assert_eq!(stats[0].processed, N);
    assert_eq!(stats[1].processed + stats[1].dead_letters, N);
    assert_eq!(stats[2].processed as usize, out.len());
    assert!(stats[1].retries > 0);
}

/// A tiny concurrent counter map for the test (attempt number per item).
mod dashmap_lite {
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Map(Mutex<HashMap<u64, usize>>);

    impl Map {
        pub fn bump(&self, key: u64) -> usize {
            let mut m = self.0.lock().unwrap();
            let n = m.entry(key).or_default();
            *n += 1;
            *n
        }
    }
}

#[tokio::test]
async fn backpressure_reaches_the_source_through_every_stage() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let pipeline = Pipeline::builder::<u32>("slow")
        .stage(Stage::new("fast", |n: u32| async move { Ok::<_, String>(n) }).capacity(2))
        .stage(
            Stage::new("blocked", move |n: u32| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    g.acquire().await.unwrap().forget();
                    Ok::<_, String>(n)
                }
            })
            .capacity(2),
        )
        .build(2)
        .await
        .unwrap();
    let (input, mut outputs, _dead) = pipeline.split();

    // Fill everything: blocked stage holds 1 in flight, its input 2, the fast stage 1 waiting
    // to hand over plus 2 in its input. Then the source must be refused.
    let mut accepted = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match input.try_submit(accepted) {
            Ok(_) => accepted += 1,
            Err(TrySubmitError::Full(_)) => {
                // Full for now; wait until the stages have settled to be sure it stays full.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if input.try_submit(accepted).is_err() {
                    break;
                }
                accepted += 1;
            }
            Err(TrySubmitError::Closed(_)) => panic!("closed"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the source was never pushed back");
    }
    assert!(accepted <= 6, "accepted {accepted}: more than the stages can hold");
    assert_eq!(started.load(Ordering::SeqCst), 1, "one item in flight in the blocked stage");
    // A waiting submit stays pending while the pipeline is full ...
    let pending = tokio::time::timeout(Duration::from_millis(50), input.submit(100)).await;
    assert!(pending.is_err(), "submit should wait while the pipeline is full");

    // ... and everything flows once the slow stage moves.
    gate.add_permits(1000);
    drop(input);
    let mut got = Vec::new();
    while let Some((_, v)) = outputs.recv().await {
        got.push(v);
    }
    got.sort();
    assert_eq!(got, (0..accepted).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_and_counts_them() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let pipeline = Pipeline::builder::<u8>("retry")
        .stage(
            Stage::new("third-time-lucky", move |n: u8| {
                let attempt = c.fetch_add(1, Ordering::SeqCst) + 1;
                async move { if attempt < 3 { Err(format!("attempt {attempt} failed")) } else { Ok(n) } }
            })
            .retry(
                RetryPolicy::new(3)
                    .backoff(Duration::from_millis(100), Duration::from_secs(1))
                    .jitter(Jitter::None),
            ),
        )
        .build(1)
        .await
        .unwrap();
    let monitor = pipeline.monitor();
    let (input, mut outputs, mut dead) = pipeline.split();
    input.submit(7).await.unwrap();
    drop(input);
    let started = tokio::time::Instant::now();
    assert_eq!(outputs.recv().await, Some((0, 7)));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "backoff 100 ms then 200 ms: {:?}",
        started.elapsed()
    );
    assert!(dead.recv().await.is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = &monitor.stats()[0];
    assert_eq!((stats.processed, stats.retries, stats.dead_letters), (1, 2, 0));
}

#[tokio::test]
async fn stats_count_processed_retried_and_dead_lettered_items() {
    let pipeline = Pipeline::builder::<i32>("stats")
        .stage(
            Stage::new("positive", |n: i32| async move { if n >= 0 { Ok(n) } else { Err("negative") } })
                .retry(RetryPolicy::new(2).backoff(Duration::from_millis(1), Duration::from_millis(1))),
        )
        .build(8)
        .await
        .unwrap();
    let monitor = pipeline.monitor();
    let (input, mut outputs, mut dead) = pipeline.split();
    for n in [1, -1, 2] {
        input.submit(n).await.unwrap();
    }
    drop(input);
    let mut seen = HashSet::new();
    while let Some((_, v)) = outputs.recv().await {
        seen.insert(v);
    }
    let letter = dead.recv().await.unwrap();
    assert_eq!((letter.error.as_str(), letter.attempts), ("negative", 2));
    assert!(dead.recv().await.is_none());
    assert_eq!(seen, HashSet::from([1, 2]));
    let stats = &monitor.stats()[0];
    assert_eq!(
        (stats.stage.as_str(), stats.processed, stats.retries, stats.dead_letters),
        ("positive", 2, 1, 1)
    );
}

#[tokio::test]
async fn invalid_stage_settings_are_refused() {
    let err = Pipeline::builder::<u8>("bad")
        .stage(Stage::new("zero", |n: u8| async move { Ok::<_, String>(n) }).workers(0))
        .build(1)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("pipeline `bad`, stage `zero`: workers and capacity must be at least 1"),
        "{err}"
    );
}
