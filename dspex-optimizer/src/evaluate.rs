//! Evaluation: a program over a dataset, scored by a metric, with failures, latency, tokens and
//! cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use foundation_actors::providers::{LanguageModel, ModelRegistry, Usage};
use serde::{Deserialize, Serialize};

use crate::example::{Example, Prediction};
use crate::metric::Metric;
use crate::program::Program;

/// One example's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    /// Its position in the dataset.
    pub index: usize,
    /// Its score (0 for a failure).
    pub score: f64,
    /// The prediction, unless it failed.
    pub prediction: Option<Prediction>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub latency: Duration,
}

/// Latency percentiles of an evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean score over every example (failures count as 0).
    pub mean: f64,
    /// Per example, in dataset order.
    pub results: Vec<ExampleResult>,
    /// Examples that failed.
    pub failures: usize,
    /// Latency per example.
    pub latency: Latency,
    /// Tokens used.
    pub usage: Usage,
    /// Their cost in US dollars, at the model registry's price for the model (0 if unknown).
    pub cost_usd: f64,
}

/// Runs `program` on every example of `devset` with at most `concurrency` at once, and scores
/// the predictions with `metric`. A failure (model error, unparsable answer) scores 0 and is
/// reported in its result.
pub async fn evaluate(
    program: &Program,
    devset: &[Example],
    lm: Arc<dyn LanguageModel>,
    metric: &Metric,
    concurrency: usize,
) -> Evaluation {
    let program = Arc::new(program.clone());
    let devset: Arc<Vec<Example>> = Arc::new(devset.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, devset.len().max(1)) {
        let (program, devset, next, lm, metric) =
            (program.clone(), devset.clone(), next.clone(), lm.clone(), metric.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(example) = devset.get(index) else { return done };
                done.push(evaluate_one(&program, example, index, lm.as_ref(), &metric).await);
            }
        });
    }
    let mut results = Vec::with_capacity(devset.len());
    while let Some(done) = workers.join_next().await {
        // A worker only panics if the metric or model panics: that is a bug to surface.
        results.extend(done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    results.sort_by_key(|r| r.index);
    summarize(results, lm.model())
}

/// Runs and scores one example. A failure (of the program or of the metric) scores 0, is
/// returned in [`ExampleResult::error`] and is logged at INFO in the current span (a trace keeps
/// it with the span).
pub async fn evaluate_one(
    program: &Program,
    example: &Example,
    index: usize,
    lm: &dyn LanguageModel,
    metric: &Metric,
) -> ExampleResult {
    let started = Instant::now();
    match program.run(lm, &example.inputs).await {
        Ok((prediction, _)) => {
            let (score, error) = match metric.score_with(example, &prediction, lm).await {
                Ok(score) => (score, None),
                Err(e) => {
                    tracing::info!(example = index, error = %e, "the metric failed");
                    (0.0, Some(e.to_string()))
                }
            };
            ExampleResult { index, score, prediction: Some(prediction), error, latency: started.elapsed() }
        }
        Err(e) => {
            tracing::info!(example = index, error = %e, "the program failed");
            ExampleResult {
                index,
                score: 0.0,
                prediction: None,
                error: Some(e.to_string()),
                latency: started.elapsed(),
            }
        }
    }
}

/// The evaluation of these results (in dataset order), priced for `model`.
pub fn summarize(results: Vec<ExampleResult>, model: &str) -> Evaluation {
    let n = results.len().max(1) as f64;
    let mean = results.iter().map(|r| r.score).sum::<f64>() / n;
    let failures = results.iter().filter(|r| r.error.is_some()).count();
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.latency).collect();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let latency = Latency {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    };
    let usage =
        results.iter().filter_map(|r| r.prediction.as_ref()).fold(Usage::default(), |u, p| u + p.usage);
    let cost_usd = ModelRegistry::with_defaults().get("", model).map_or(0.0, |m| m.cost(usage));
    Evaluation { mean, results, failures, latency, usage, cost_usd }
}
