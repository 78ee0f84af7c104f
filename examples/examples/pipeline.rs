//! Pipeline: documents go through parse → enrich (a flaky remote call, retried) → index; every
//! document ends indexed or in the dead letters, with the reason.
//!
//! Run: `cargo run -p foundation-examples --example pipeline`

use foundation_core::sync::MutexRecover;
use std::time::Duration;

use foundation_actors::pipeline::{Pipeline, Stage};
use foundation_core::retry::RetryPolicy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pipeline = Pipeline::builder::<String>("ingest")
        .stage(
            Stage::new("parse", |doc: String| async move {
                doc.split_once(':')
                    .map(|(id, text)| (id.to_string(), text.to_string()))
                    .ok_or("no `id:` prefix")
            })
            .retry(RetryPolicy::none()), // a malformed document stays malformed
        )
        .stage(
            Stage::new("enrich", |(id, text): (String, String)| async move {
                // A remote call that fails transiently: some documents' first two attempts time out.
                let flaky = id.len() % 3 == 0 && attempt(&id) <= 2;
                if flaky { Err("enrichment service timed out") } else { Ok((id, text.to_uppercase())) }
            })
            .workers(4)
            .retry(RetryPolicy::new(4).backoff(Duration::from_millis(5), Duration::from_millis(50))),
        )
        .stage(Stage::new("index", |(id, text): (String, String)| async move {
            Ok::<_, String>(format!("{id} => {text}"))
        }))
        .build(64)
        .await?;
    let monitor = pipeline.monitor();
    let (input, mut outputs, mut dead) = pipeline.split();

    let docs =
        ["1:alpha", "22:beta", "333:gamma", "broken document", "4444:delta", "55555:epsilon", "666666:zeta"];
    for doc in docs {
        input.submit(doc.to_string()).await?;
    }
    drop(input);

    let mut indexed = 0;
    while let Some((id, line)) = outputs.recv().await {
        println!("indexed #{id}: {line}");
        indexed += 1;
    }
    let mut dead_letters = 0;
    while let Some(letter) = dead.recv().await {
        println!(
            "dead letter #{} at `{}` after {} attempt(s): {}",
            letter.id, letter.stage, letter.attempts, letter.error
        );
        dead_letters += 1;
    }
    println!("{} submitted = {indexed} indexed + {dead_letters} dead letters", docs.len());
    for s in monitor.stats() {
        println!(
            "stage {:<7} processed {:>2}  retries {:>2}  dead letters {}",
            s.stage, s.processed, s.retries, s.dead_letters
        );
    }
    Ok(())
}

/// A value in [0, 1) that depends on the text and the time, to make the flakiness vary.
/// Counts the attempts made for each document (so that the example's failures are repeatable;
/// a real service fails when it likes).
fn attempt(id: &str) -> u32 {
    static ATTEMPTS: std::sync::Mutex<Vec<(String, u32)>> = std::sync::Mutex::new(Vec::new());
    let mut attempts = ATTEMPTS.lock_or_recover();
    match attempts.iter_mut().find(|(d, _)| d == id) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            attempts.push((id.to_string(), 1));
            1
        }
    }
}
