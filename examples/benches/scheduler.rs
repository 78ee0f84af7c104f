//! The optimization service's scheduler: cost per recorded result, and memory, for runs of
//! 10 000 and 1 000 000 evaluations of synthetic data, with the run's state replicated (three
//! nodes, each its own directory, `fsync` on) against the same run without replication (one
//! node: its log is its own majority) and without `fsync`.
//!
//! Nodes run in this process; the model answers at once (a constant label), and programs have
//! no demonstrations, so the time is the service's: leasing, recording, appending to the log,
//! replicating and committing, and the workers' round trips. Ten candidates, evaluation tasks of
//! 10 examples (a result is 10 evaluations), 24 workers in all (8 per node on three). The clock starts once the
//! scheduler answers and the run is submitted. Memory is this process's resident set: the
//! growth while the spec is submitted (the data's copies: the client's, the scheduler's, the log
//! entry), then the growth during the run per evaluation (every node's workers, specs fetched,
//! the scheduler's state, the replicas' indexes, and what the allocator keeps).
//! `SCHEDULER_BENCH_CASE=repeat` runs the 1 M case twice in one process: the second run's growth
//! is what a run costs once the allocator has its high-water mark.
//!
//! Run: `cargo bench -p foundation-examples --bench scheduler` (about 2 minutes; figures in
//! docs/BENCHMARKS.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dspex_optimizer::distributed::{Optimizations, RunOptions, RunSpec};
use dspex_optimizer::{Example, LanguageModels, Metric, Predictor, Program, Signature};
use foundation_actors::providers::{BoxFuture, ChatRequest, Completion, LanguageModel, LmError, Usage};
use foundation_cluster::Cluster;
use foundation_core::config::ClusterConfig;

/// Answers every request at once with the same label.
struct Instant0;

impl LanguageModel for Instant0 {
    fn model(&self) -> &str {
        "instant"
    }

    fn complete<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(async {
            Ok(Completion::from_text(
                "Label: location",
                Usage { prompt_tokens: 1, completion_tokens: 1, cached_prompt_tokens: 0 },
                "instant",
                "bench",
            ))
        })
    }
}

/// Workers in all, spread over the nodes (the same on one node and on three).
const WORKERS: usize = 24;

const LABELS: [&str; 6] = ["abbreviation", "description", "entity", "person", "location", "number"];

fn spec(run: &str, evaluations: usize) -> RunSpec {
    let example = |i: usize| Example::new().input("question", format!("q{i}")).label("label", LABELS[i % 6]);
    let signature = Signature::parse("question -> label").unwrap();
    RunSpec {
        run_id: run.to_string(),
        student: Program::single("classify", Predictor::predict(signature)),
        trainset: (0..20).map(example).collect(),
        valset: (0..evaluations / 10).map(example).collect(),
        metric: Metric::ExactMatch("label".into()),
        lm: "instant".into(),
        max_bootstrapped_demos: 0,
        max_labeled_demos: 0,
        num_candidate_programs: 7,
        seed: 1,
        batch_size: 10,
        priority: 1,
        optimizer: Default::default(),
        evaluation: Default::default(),
    }
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

struct Measure {
    results: usize,
    elapsed: Duration,
    memory: u64,
    spec_memory: u64,
    log_bytes: u64,
}

async fn measure(evaluations: usize, nodes: usize, fsync: bool) -> Measure {
    let root = tempfile::tempdir().unwrap();
    let models = LanguageModels::new().register("instant", Arc::new(Instant0));
    let mut clusters = Vec::new();
    let mut services = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for i in 0..nodes {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let config = ClusterConfig { listen, seeds: seed.into_iter().collect(), ..Default::default() };
        seed.get_or_insert(listen);
        let cluster = Cluster::start(&format!("s{}", i + 1), &config, None).await.unwrap();
        let options = RunOptions {
            state_dir: Some(root.path().join(format!("s{}", i + 1))),
            fsync,
            ..RunOptions::new(WORKERS / nodes)
        };
        services.push(Optimizations::start(&cluster, &models, options).await.unwrap());
        clusters.push(cluster);
    }
    for cluster in &clusters {
        cluster.wait_for_members(nodes - 1, Duration::from_secs(10)).await.unwrap();
    }
    // The scheduler elected and its log recovered before the clock starts.
    let ready = Instant::now();
    while Optimizations::list(&clusters[0]).await.is_err() {
        assert!(ready.elapsed() < Duration::from_secs(60), "no scheduler");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spec = spec(&format!("bench-{evaluations}-{nodes}-{fsync}"), evaluations);
    let results = spec.total_tasks();
    let before = rss();
    let run = Optimizations::submit_within(&clusters[0], spec, Duration::from_secs(60)).await.unwrap();
    // The spec's copies (the scheduler's, the log entry) are counted apart from the run's growth.
    let submitted = rss();
    let started = Instant::now();
    let result = run.wait(Duration::from_secs(1800)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(result.evaluations, evaluations);
    let memory = rss().saturating_sub(submitted);
    let spec_memory = submitted.saturating_sub(before);
    let log_bytes =
        std::fs::metadata(root.path().join("s1").join("dspex.optimizations.log")).map_or(0, |m| m.len());
    drop(services);
    for cluster in &clusters {
        cluster.shutdown().await;
    }
    Measure { results, elapsed, memory, spec_memory, log_bytes }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "{:>11} {:>5} {:>6} {:>8} {:>9} {:>10} {:>10} {:>12} {:>14} {:>11}",
        "evaluations",
        "nodes",
        "fsync",
        "results",
        "elapsed",
        "µs/result",
        "results/s",
        "spec memory",
        "run Δ/eval",
        "log bytes"
    );
    let cases: Vec<(usize, usize, bool)> = match std::env::var("SCHEDULER_BENCH_CASE").ok().as_deref() {
        // One case, twice: does memory keep growing (a leak) or is it reused (the allocator's)?
        Some("repeat") => vec![(1_000_000, 1, true), (1_000_000, 1, true)],
        _ => vec![
            (10_000, 1, true),
            (10_000, 3, true),
            (10_000, 3, false),
            (1_000_000, 1, true),
            (1_000_000, 3, true),
            (1_000_000, 3, false),
        ],
    };
    for (evaluations, nodes, fsync) in cases {
        let m = runtime.block_on(measure(evaluations, nodes, fsync));
        println!(
            "{evaluations:>11} {nodes:>5} {fsync:>6} {:>8} {:>8.1}s {:>10.1} {:>10.0} {:>10.1}MB {:>13.1}B {:>11}",
            m.results,
            m.elapsed.as_secs_f64(),
            m.elapsed.as_secs_f64() * 1e6 / m.results as f64,
            m.results as f64 / m.elapsed.as_secs_f64(),
            m.spec_memory as f64 / 1e6,
            m.memory as f64 / evaluations as f64,
            m.log_bytes
        );
    }
}
