//! Distributed optimization on real node processes: the same result as one process with the
//! same seed, with and without a node killed in the middle of the run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use dspex_optimizer::distributed::RunSpec;
use dspex_optimizer::optimizers::SearchReport;
use foundation_actors::providers::{LanguageModel, SimulatedConfig, SimulatedModel};
use foundation_cluster::testkit::{NodeProcess, free_port_range};
use support::{json, number, seen, start_node, wait};

const SEED: u64 = 7;
const CANDIDATES: usize = 5;

/// The same search in this process, on one node, with no coordinator.
fn single_node() -> SearchReport {
    let spec = RunSpec::questions("local", SEED, CANDIDATES);
    let lm: Arc<dyn LanguageModel> = Arc::new(SimulatedModel::new(SimulatedConfig {
        seed: SEED,
        latency: Duration::ZERO,
        ..Default::default()
    }));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(spec.search().compile(
        &spec.student,
        &spec.trainset,
        &spec.valset,
        lm,
        &spec.metric,
        SEED,
    ))
}

fn cluster(run: &str, state: &std::path::Path) -> Vec<NodeProcess> {
    let base = free_port_range(3);
    let state = state.display().to_string();
    let args = [
        "--optimize",
        run,
        "--seed",
        "7",
        "--candidates",
        "5",
        "--workers",
        "3",
        "--latency-ms",
        "40",
        "--run-state",
        &state,
    ];
    (0..3u16)
        .map(|i| {
            let seeds: Vec<u16> = (0..i).map(|j| base + j).collect();
            start_node(&format!("n{}", i + 1), base + i, &seeds, &args)
        })
        .collect()
}

fn evaluations_done(node: &NodeProcess) -> u64 {
    seen(node, json!({"event": "optimization_progress"})).iter().map(|e| number(e, "done")).max().unwrap_or(0)
}

fn finished(node: &NodeProcess) -> bool {
    !seen(node, json!({"event": "optimization_finished"})).is_empty()
}

fn result(node: &NodeProcess) -> serde_json::Value {
    node.wait_for_event(&json!({"event": "optimization_finished"}), Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_same_as_single_node(result: &serde_json::Value, local: &SearchReport) {
    assert_eq!(result["best_seed"], local.best.seed, "{result}");
    assert_eq!(result["best_score"].as_f64().unwrap(), local.best_evaluation.mean);
    let scores: Vec<(i64, f64)> = serde_json::from_value(result["scores"].clone()).unwrap();
    assert_eq!(scores, local.scores);
    let program: dspex_optimizer::Program = serde_json::from_value(result["best_program"].clone()).unwrap();
    assert_eq!(program, local.best.program);
    // Every candidate × validation example, each recorded once.
    assert_eq!(result["evaluations"], (CANDIDATES + 3) * dspex_optimizer::distributed::QUESTIONS_VAL);
}

#[test]
fn three_nodes_find_the_same_best_program_as_one() {
    let local = single_node();
    let state = tempfile::tempdir().unwrap();
    let nodes = cluster("fault-free", state.path());
    let result = result(&nodes[1]);
    assert_same_as_single_node(&result, &local);
    // The work was shared.
    let by_node: std::collections::BTreeMap<String, usize> =
        serde_json::from_value(result["tasks_by_node"].clone()).unwrap();
    assert_eq!(by_node.len(), 3, "{by_node:?}");
    // Progress went out on the telemetry channel to every node, from the coordinator's node.
    wait(&nodes[2], json!({"event": "telemetry", "kind": "optimization_progress", "source": "fault-free"}));
}

#[test]
fn killing_the_coordinators_node_mid_run_loses_and_doubles_nothing() {
    let local = single_node();
    let state = tempfile::tempdir().unwrap();
    let mut nodes = cluster("coordinator-killed", state.path());
    // n1 (the lowest name) holds the coordinator: kill it once a fifth of the work is done.
    support::until(|| evaluations_done(&nodes[1]) >= 160, || format!("progress: {:?}", nodes[1].output()));
    assert!(!finished(&nodes[1]), "killed mid-run");
    nodes[0].kill();
    // The coordinator restarts on n2 from the persisted state; n1's leases are redone.
    let result = result(&nodes[1]);
    assert_same_as_single_node(&result, &local);
    // The new coordinator started from what the old one had persisted, n1's work included.
    assert!(result["resumed"].as_u64().unwrap() > 0, "{result}");
    assert!(result["tasks_by_node"]["n1"].as_u64().unwrap() > 0, "{result}");
}

#[test]
fn killing_a_worker_node_mid_run_returns_its_leases() {
    let local = single_node();
    let state = tempfile::tempdir().unwrap();
    let mut nodes = cluster("worker-killed", state.path());
    support::until(|| evaluations_done(&nodes[0]) >= 160, || format!("progress: {:?}", nodes[0].output()));
    assert!(!finished(&nodes[0]), "killed mid-run");
    nodes[2].kill();
    let result = result(&nodes[0]);
    assert_same_as_single_node(&result, &local);
    assert!(result["requeued"].as_u64().unwrap() >= 1, "n3's leases went back to the queue: {result}");
}

#[test]
fn a_stopped_run_resumes_from_its_persisted_state_when_started_again() {
    let local = single_node();
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    let port = free_port_range(1);
    let args = [
        "--optimize",
        "stopped",
        "--seed",
        "7",
        "--candidates",
        "5",
        "--workers",
        "4",
        "--latency-ms",
        "40",
        "--run-state",
        &state_arg,
    ];
    let mut node = start_node("solo", port, &[], &args);
    support::until(|| evaluations_done(&node) >= 100, || format!("progress: {:?}", node.output()));
    node.send_line("stop-run").unwrap();
    wait(&node, json!({"event": "run_stopped"}));
    // Stopped: nothing more is handed out, and no result comes.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(!finished(&node));
    node.kill();
    // Started again on the same state: it picks up where it stopped and ends with the same result.
    let node = start_node("solo", port, &[], &args);
    let result = result(&node);
    assert_same_as_single_node(&result, &local);
    assert!(result["resumed"].as_u64().unwrap() >= 20, "{result}");
}
