//! The optimization service's figures at scale, each measured in the same run as its
//! baseline:
//!
//! 1. **LM-bound throughput at scale**: 16, 64 and 256 workers on 1 and on 4 node processes
//!    (`foundation node --workers`), the simulated model at 50 ms (±20 %) a call, a synthetic
//!    random search (11 candidates × 80 validation examples per worker, tasks of 20) large
//!    enough for a steady state of about 35 s at the ideal rate. The baseline is the ideal:
//!    workers / 50 ms. *Steady* is the rate between 10 % and 90 % of the evaluations.
//! 2. **A slowed node**: two nodes of 8 workers, one model at 20 ms and one at 60 ms: the tasks
//!    each recorded against its share of the combined capacity (75 % / 25 %), and the time from
//!    the first evaluation to the result against the ideal for the combined capacity
//!    (evaluations / (8 / 20 ms + 8 / 60 ms)).
//! 3. **Model calls saved**: the bundled run (seed 7, 11 candidates × 100 questions) on three
//!    nodes, with a full evaluation and the call cache off (`FOUNDATION_LLM__CACHE=false`)
//!    against halving with the cache on, then the same halving run submitted again.
//!
//! Run: `cargo bench -p foundation-examples --bench optimize_scale` (about 10 minutes; figures
//! in docs/BENCHMARKS.md). `OPTIMIZE_SCALE_PART=1|2|3` runs one part.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use dspex_optimizer::distributed::{EvaluationPlan, Optimizations, RunResult, RunSpec};
use dspex_optimizer::{Example, Metric, Predictor, Program, Signature};
use foundation_cluster::testkit::{NodeProcess, free_port_range};
use support::start_node_with_env;

const LABELS: [&str; 6] = ["abbreviation", "description", "entity", "person", "location", "number"];

/// A synthetic classification run: `examples` validation examples, 11 candidates.
fn synthetic(run: &str, examples: usize) -> RunSpec {
    let example =
        |i: usize| Example::new().input("question", format!("question {i}")).label("label", LABELS[i % 6]);
    let mut spec = RunSpec::questions(run, 7, 8);
    spec.student =
        Program::single("classify", Predictor::predict(Signature::parse("question -> label").unwrap()));
    spec.trainset = (0..30).map(example).collect();
    spec.valset = (0..examples).map(example).collect();
    spec.metric = Metric::ExactMatch("label".into());
    spec.max_bootstrapped_demos = 1;
    spec.max_labeled_demos = 2;
    spec.batch_size = 20;
    spec
}

/// `nodes` serving processes with `workers` in all (spread evenly), each with `extra` options.
fn cluster(
    nodes: usize,
    workers: usize,
    extra: impl Fn(usize) -> Vec<String>,
    env: &[(&str, &str)],
) -> (u16, Vec<NodeProcess>) {
    let base = free_port_range(nodes as u16);
    let processes = (0..nodes)
        .map(|i| {
            let mine = workers / nodes + usize::from(i < workers % nodes);
            let seeds: Vec<u16> = (0..i as u16).map(|j| base + j).collect();
            let mut args = vec!["--workers".to_string(), mine.to_string()];
            args.extend(extra(i));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            start_node_with_env(&format!("s{}", i + 1), base + i as u16, &seeds, &args, env)
        })
        .collect();
    (base, processes)
}

/// Submits `spec` from an observer and follows it: (samples of (time, evaluations done, planned), result).
fn follow(base: u16, spec: RunSpec) -> (Vec<(Duration, usize, usize)>, RunResult) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let observer = support::observer(&format!("bench-{}", spec.run_id), base).await;
        let run = Optimizations::submit_within(&observer, spec, Duration::from_secs(120)).await.unwrap();
        let started = Instant::now();
        let mut samples = Vec::new();
        let result = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Ok(status) = run.status().await else { continue };
            samples.push((started.elapsed(), status.evaluations.1, status.evaluations.0));
            if let Some(result) = status.result {
                break result;
            }
            assert!(started.elapsed() < Duration::from_secs(900), "the run did not finish");
        };
        observer.shutdown().await;
        (samples, result)
    })
}

/// Rate between 10 % and 90 % of the evaluations, and the time from the first evaluation to
/// the last sample.
fn rates(samples: &[(Duration, usize, usize)]) -> (f64, Duration) {
    let total = samples.last().unwrap().2 as f64;
    let at = |share: f64| *samples.iter().find(|(_, done, _)| *done as f64 >= share * total).unwrap();
    let ((t10, d10, _), (t90, d90, _)) = (at(0.1), at(0.9));
    let first = samples.iter().find(|(_, done, _)| *done > 0).unwrap().0;
    let end = samples.last().unwrap().0;
    ((d90 - d10) as f64 / (t90 - t10).as_secs_f64().max(1e-3), end - first)
}

fn throughput() {
    println!("1. LM-bound throughput: simulated model at 50 ms, ideal = workers / 50 ms");
    println!(
        "{:>5} {:>7} {:>11} {:>14} {:>11} {:>9}",
        "nodes", "workers", "evaluations", "steady evals/s", "of ideal", "elapsed"
    );
    for nodes in [1, 4] {
        for workers in [16, 64, 256] {
            let (base, _nodes) = cluster(nodes, workers, |_| vec!["--latency-ms".into(), "50".into()], &[]);
            let spec = synthetic(&format!("scale-{nodes}-{workers}"), 80 * workers);
            let evaluations = spec.total_evaluations();
            let (samples, _) = follow(base, spec);
            let (steady, elapsed) = rates(&samples);
            let ideal = workers as f64 / 0.05;
            println!(
                "{nodes:>5} {workers:>7} {evaluations:>11} {steady:>14.0} {:>10.1}% {:>8.1}s",
                steady / ideal * 100.0,
                elapsed.as_secs_f64()
            );
        }
    }
}

fn slowed_node() {
    println!("\n2. Two nodes of 8 workers, models at 20 ms and 60 ms");
    let (base, _nodes) =
        cluster(2, 16, |i| vec!["--latency-ms".into(), if i == 0 { "20" } else { "60" }.into()], &[]);
    let spec = synthetic("slowed", 1600);
    let evaluations = spec.total_evaluations() as f64;
    let (samples, result) = follow(base, spec);
    let (_, elapsed) = rates(&samples);
    let ideal = evaluations / (8.0 / 0.02 + 8.0 / 0.06);
    let tasks = |n: &str| result.tasks_by_node.get(n).copied().unwrap_or(0) as f64;
    let (fast, slow) = (tasks("s1"), tasks("s2"));
    println!(
        "tasks: fast {fast} ({:.1} %, ideal 75 %), slow {slow} ({:.1} %, ideal 25 %); first evaluation to result {:.1} s, ideal {:.1} s: {:.1} % of the ideal",
        fast / (fast + slow) * 100.0,
        slow / (fast + slow) * 100.0,
        elapsed.as_secs_f64(),
        ideal,
        elapsed.as_secs_f64() / ideal * 100.0
    );
}

fn calls_saved() {
    println!("\n3. Model calls of the bundled run (seed 7, 11 candidates × 100 questions), 3 nodes");
    let latency = |_| vec!["--latency-ms".to_string(), "5".into()];
    let report = |what: &str, r: &RunResult| {
        println!(
            "{what:<40} provider calls {:>6} (of {:>6} calls, {:>5} from the cache), {:>6} evaluations, best {} at {:.3}",
            r.calls.made - r.calls.cached,
            r.calls.made,
            r.calls.cached,
            r.evaluations,
            r.best_seed,
            r.best_score
        );
        r.calls.made - r.calls.cached
    };
    let (base, nodes) = cluster(3, 12, latency, &[("FOUNDATION_LLM__CACHE", "false")]);
    let (_, full) = follow(base, RunSpec::questions("calls-full", 7, 8));
    let without = report("full evaluation, no cache", &full);
    drop(nodes);
    let (base, _nodes) = cluster(3, 12, latency, &[]);
    let mut halving = RunSpec::questions("calls-halving", 7, 8);
    halving.evaluation = EvaluationPlan::halving();
    let (_, first) = follow(base, halving.clone());
    let with = report("halving and the cache", &first);
    halving.run_id = "calls-halving-again".into();
    let (_, again) = follow(base, halving);
    report("the same again (another name)", &again);
    println!(
        "provider calls saved by halving and the cache: {:.1} %",
        (1.0 - with as f64 / without as f64) * 100.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let part = std::env::var("OPTIMIZE_SCALE_PART").ok();
    let want = |p: &str| part.as_deref().is_none_or(|x| x == p);
    if want("1") {
        throughput();
    }
    if want("2") {
        slowed_node();
    }
    if want("3") {
        calls_saved();
    }
}
