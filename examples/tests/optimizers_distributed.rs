//! Every optimizer distributed over three node processes gives what it gives on one node for
//! the same seed: labelled few-shot, bootstrap few-shot and the instruction search (the random
//! search's equality is `tests/optimize.rs`'s), and successive halving picks the same best
//! candidate as a full evaluation while making fewer evaluations; a run repeated is answered by
//! the model-call cache; a run judged by a model no node has is refused by every node.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use dspex_optimizer::distributed::{
    EvaluationPlan, LocalResult, Optimizations, Optimizer, RunResult, RunSpec,
};
use foundation_actors::providers::{LanguageModel, SimulatedConfig, SimulatedModel};
use foundation_cluster::testkit::free_port_range;
use support::start_node;

const SEED: u64 = 7;

fn lm() -> Arc<dyn LanguageModel> {
    Arc::new(SimulatedModel::new(SimulatedConfig {
        seed: SEED,
        latency: Duration::ZERO,
        ..Default::default()
    }))
}

fn spec(run: &str, optimizer: Optimizer, evaluation: EvaluationPlan, candidates: usize) -> RunSpec {
    let mut spec = RunSpec::questions(run, SEED, candidates);
    spec.optimizer = optimizer;
    spec.evaluation = evaluation;
    spec
}

/// What one node gets for `spec`.
async fn single_node(spec: &RunSpec) -> LocalResult {
    spec.run_here(lm(), 8).await
}

fn assert_same(run: &str, result: &RunResult, local: &LocalResult) {
    assert_eq!(result.best_seed, local.best_key, "{run}: best candidate");
    assert_eq!(result.best_score, local.best_score, "{run}: best score");
    assert_eq!(result.best_program, local.best_program, "{run}: best program");
    assert_eq!(result.scores, local.scores, "{run}: every candidate's score");
}

#[test]
fn every_optimizer_distributed_gives_the_single_node_result_and_halving_the_same_best_for_less() {
    let base = free_port_range(3);
    let _nodes: Vec<_> = (0..3u16)
        .map(|i| {
            let seeds: Vec<u16> = (0..i).map(|j| base + j).collect();
            let args = ["--workers", "2", "--latency-ms", "2", "--seed", "7"];
            start_node(&format!("n{}", i + 1), base + i, &seeds, &args)
        })
        .collect();
    let runs = [
        spec("labeled", Optimizer::LabeledFewShot, EvaluationPlan::Full, 0),
        spec("bootstrap", Optimizer::BootstrapFewShot, EvaluationPlan::Full, 0),
        spec(
            "instructions",
            Optimizer::InstructionSearch { num_instructions: 3, num_trials: 6 },
            EvaluationPlan::Full,
            2,
        ),
        spec("halving", Optimizer::RandomSearch, EvaluationPlan::halving(), 8),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let observer = support::observer("optimizers", base).await;
        let mut submitted = Vec::new();
        for spec in &runs {
            submitted.push(
                Optimizations::submit_within(&observer, spec.clone(), Duration::from_secs(60)).await.unwrap(),
            );
        }
        for (spec, run) in runs.iter().zip(&submitted) {
            let result = run.wait(Duration::from_secs(180)).await.unwrap();
            let id = spec.run_id.as_str();
            if spec.evaluation == EvaluationPlan::Full {
                assert_same(id, &result, &single_node(spec).await);
                assert_eq!(result.evaluations, spec.total_evaluations(), "{id}");
                // Each build once (an instruction search's: only the sets its trials use), each
                // batch once.
                let tasks: usize = result.tasks_by_node.values().sum();
                assert_eq!(tasks, spec.plan().max_tasks(), "{id}");
                continue;
            }
            // Halving against the full random search of the same seed: the same best, fewer
            // evaluations, and every candidate either scored on everything (with the full
            // evaluation's mean) or stopped with a mean below the best.
            let mut full = spec.clone();
            full.evaluation = EvaluationPlan::Full;
            let local = single_node(&full).await;
            assert_eq!(
                (result.best_seed, result.best_score),
                (local.best_key, local.best_score),
                "{id}: {result:?}"
            );
            assert_eq!(result.best_program, local.best_program);
            for (key, mean) in &result.scores {
                assert!(
                    local.scores.contains(&(*key, *mean)),
                    "{id}: {key} {mean} not in {:?}",
                    local.scores
                );
            }
            assert_eq!(result.scores.len() + result.stopped_early.len(), spec.candidates());
            assert!(!result.stopped_early.is_empty(), "{id}: halving stopped no candidate: {result:?}");
            for (key, examples, _) in &result.stopped_early {
                let full = local.scores.iter().find(|(k, _)| k == key).unwrap().1;
                assert!(*examples < spec.valset.len() && full < result.best_score, "{id}: {key} ({full})");
            }
            assert!(result.evaluations_saved > 0);
            assert_eq!(result.evaluations + result.evaluations_saved, spec.total_evaluations());
            eprintln!(
                "halving: {} evaluations of {} ({} saved), {} of {} candidates stopped early",
                result.evaluations,
                spec.total_evaluations(),
                result.evaluations_saved,
                result.stopped_early.len(),
                spec.candidates()
            );
        }
        // The same run again under another name: every model call answered by the call cache
        // (this node's or the cluster tier), the same result.
        let first = submitted[1].wait(Duration::from_secs(10)).await.unwrap();
        assert!(first.calls.made > 0 && first.calls.cached < first.calls.made, "{:?}", first.calls);
        let mut again = runs[1].clone();
        again.run_id = "bootstrap-again".into();
        let run = Optimizations::submit_within(&observer, again, Duration::from_secs(60)).await.unwrap();
        let second = run.wait(Duration::from_secs(180)).await.unwrap();
        assert_eq!((second.best_program, second.scores), (first.best_program, first.scores));
        assert_eq!(second.calls.made, first.calls.made);
        assert_eq!(second.calls.cached, second.calls.made, "{:?}", second.calls);
        assert!(second.calls.saved_tokens > 0);
        // A judge whose model no node has: every node refuses the run's tasks, none is done.
        let mut judged = RunSpec::questions("judged", SEED, 0);
        judged.metric = dspex_optimizer::Metric::Judge(dspex_optimizer::Judge::new(
            "label",
            "The type of answer, in one word.",
            Some("nope".into()),
        ));
        let run = Optimizations::submit_within(&observer, judged, Duration::from_secs(60)).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status = run.status().await.unwrap();
            if status.refused_by.len() == 3 {
                assert_eq!(status.tasks.1, 0, "{status:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not refused by every node: {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        observer.shutdown().await;
    });
}
