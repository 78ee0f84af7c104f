//! Pipeline: documents go through parse → enrich (a flaky remote call, retried) → index; every
//! document ends indexed or in the dead letters, with the reason.
//!
//! Run: `cargo run -p foundation-examples --example pipeline`

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
                // A remote call that fails now and then, transiently.
                let flaky = id.len() % 3 == 0 && rand_ish(&id) < 0.5;
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
fn rand_ish(text: &str) -> f64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let h = text.bytes().fold(u64::from(nanos), |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (h % 1000) as f64 / 1000.0
}
