//! Distributed optimization on real node processes, each with a state directory of its own (as
//! on separate hosts; the run's state is in the replicated log): the same result as one process
//! with the same seed, with a worker node killed, the scheduler's node killed and then the next
//! scheduler's, every node killed and restarted, and a run stopped, restarted and resumed; a
//! halving run whose scheduler is killed mid-run takes the decisions its own state machine
//! takes on one node.
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

fn args(run: &str) -> [&str; 10] {
    ["--optimize", run, "--seed", "7", "--candidates", "5", "--workers", "3", "--latency-ms", "40"]
}

/// Node `i` (0-based) of a three-node cluster at ports `base..base + 3`: n1 seeds none, the
/// others the nodes before them (a restarted n1 seeds the others, which are up).
fn node(run: &str, base: u16, i: u16, restarted: bool) -> NodeProcess {
    let seeds: Vec<u16> = if restarted {
        (0..3).filter(|j| *j != i).map(|j| base + j).collect()
    } else {
        (0..i).map(|j| base + j).collect()
    };
    start_node(&format!("n{}", i + 1), base + i, &seeds, &args(run))
}

fn cluster(run: &str) -> (u16, Vec<NodeProcess>) {
    let base = free_port_range(3);
    (base, (0..3u16).map(|i| node(run, base, i, false)).collect())
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
    let (_, nodes) = cluster("fault-free");
    let result = result(&nodes[1]);
    assert_same_as_single_node(&result, &local);
    // The work was shared.
    let by_node: std::collections::BTreeMap<String, usize> =
        serde_json::from_value(result["tasks_by_node"].clone()).unwrap();
    assert_eq!(by_node.len(), 3, "{by_node:?}");
    // Progress went out on the telemetry channel to every node, from the scheduler's node.
    wait(&nodes[2], json!({"event": "telemetry", "kind": "optimization_progress", "source": "fault-free"}));
}

/// Where node `name` (port `port`) keeps its replicas of logs.
fn log_dir(name: &str, port: u16) -> std::path::PathBuf {
    foundation_cluster::testkit::state_home()
        .join("foundation")
        .join("nodes")
        .join(format!("{name}-{port}"))
        .join("logs")
}

/// Every task of `run` recorded exactly once in the log, as node `name` (port `port`, stopped)
/// keeps it in its own state directory.
fn assert_each_task_logged_once(run: &str, name: &str, port: u16) {
    let expected = (CANDIDATES + 3) * (1 + dspex_optimizer::distributed::QUESTIONS_VAL.div_ceil(5));
    assert_tasks_logged_once(run, name, port, expected);
}

/// `expected` tasks of `run` recorded, each exactly once, in node `name`'s replica.
fn assert_tasks_logged_once(run: &str, name: &str, port: u16, expected: usize) {
    let dir = log_dir(name, port);
    let entries = foundation_cluster::replicated_log::ReplicatedLog::read_replica(
        &dir,
        dspex_optimizer::distributed::LOG,
    )
    .unwrap();
    let mut tasks: Vec<u64> = dspex_optimizer::distributed::scheduler::logged_results(&entries)
        .into_iter()
        .filter(|(r, _)| r == run)
        .map(|(_, task)| task)
        .collect();
    let logged = tasks.len();
    tasks.sort_unstable();
    tasks.dedup();
    assert_eq!((logged, tasks.len()), (expected, expected), "results in {name}'s log of {run}");
}

/// The node whose scheduler answers for `run`, asked through the node at `port`.
fn scheduler_node(run: &str, port: u16) -> String {
    let seeds = format!("127.0.0.1:{port}");
    let status = client(&["status", run, "--seeds", &seeds, "--json"]);
    assert!(status.status.success(), "{status:?}");
    let answer: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    answer["status"]["scheduler"].as_str().unwrap().to_string()
}

#[test]
fn killing_the_schedulers_node_and_then_the_next_ones_loses_and_doubles_nothing() {
    let local = single_node();
    let (base, mut nodes) = cluster("scheduler-killed");
    // n1 (the lowest name) holds the scheduler: kill it once a fifth of the work is done.
    support::until(|| evaluations_done(&nodes[1]) >= 160, || format!("progress: {:?}", nodes[1].output()));
    assert!(!finished(&nodes[1]), "killed mid-run");
    assert_eq!(scheduler_node("scheduler-killed", base + 1), "n1");
    nodes[0].kill();
    // The scheduler starts again on n2 or n3 from the log (on their disks, not n1's), and goes on.
    support::until(|| evaluations_done(&nodes[1]) >= 400, || format!("progress: {:?}", nodes[1].output()));
    assert!(!finished(&nodes[1]), "killed mid-run");
    let second = scheduler_node("scheduler-killed", base + 1);
    assert_ne!(second, "n1");
    // n1 comes back (on its own directory: its replica catches up); then the second
    // scheduler's node is killed.
    nodes[0] = node("scheduler-killed", base, 0, true);
    wait(&nodes[0], json!({"event": "member_up", "name": "n3"}));
    let (killed, survivor) = if second == "n2" { (1, 2) } else { (2, 1) };
    nodes[killed].kill();
    let result = result(&nodes[survivor]);
    assert_same_as_single_node(&result, &local);
    // The last scheduler started from the log, with the first two schedulers' nodes' work in it.
    assert!(result["resumed"].as_u64().unwrap() > 0, "{result}");
    assert!(result["tasks_by_node"]["n1"].as_u64().unwrap() > 0, "{result}");
    assert!(result["tasks_by_node"][second.as_str()].as_u64().unwrap() > 0, "{result}");
    drop(nodes);
    assert_each_task_logged_once("scheduler-killed", &format!("n{}", survivor + 1), base + survivor as u16);
}

#[test]
fn every_node_killed_and_restarted_resumes_the_run_from_their_replicas() {
    let local = single_node();
    let (base, mut nodes) = cluster("all-restarted");
    support::until(|| evaluations_done(&nodes[0]) >= 240, || format!("progress: {:?}", nodes[0].output()));
    assert!(!finished(&nodes[0]), "killed mid-run");
    for node in &mut nodes {
        node.kill();
    }
    drop(nodes);
    // And n2's replica damaged meanwhile (a flipped bit a third of the way in): it is cut back,
    // left out of the new scheduler's majority, and repaired from the others.
    let file = log_dir("n2", base + 1).join(format!("{}.log", dspex_optimizer::distributed::LOG));
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let nodes: Vec<NodeProcess> = (0..3u16).map(|i| node("all-restarted", base, i, false)).collect();
    let result = result(&nodes[0]);
    assert_same_as_single_node(&result, &local);
    // n2's copy is whole again (the commits needed n1 and n3 only: give it a moment to catch
    // up): every task once.
    std::thread::sleep(Duration::from_secs(2));
    drop(nodes);
    assert_each_task_logged_once("all-restarted", "n2", base + 1);
    assert!(result["resumed"].as_u64().unwrap() >= 20, "what was committed before came back: {result}");
}

#[test]
fn killing_a_worker_node_mid_run_returns_its_leases() {
    let local = single_node();
    let (_, mut nodes) = cluster("worker-killed");
    support::until(|| evaluations_done(&nodes[0]) >= 160, || format!("progress: {:?}", nodes[0].output()));
    assert!(!finished(&nodes[0]), "killed mid-run");
    nodes[2].kill();
    let result = result(&nodes[0]);
    assert_same_as_single_node(&result, &local);
    assert!(result["requeued"].as_u64().unwrap() >= 1, "n3's leases went back to the queue: {result}");
}

#[test]
fn a_stopped_run_stays_stopped_across_a_restart_and_resumes_when_asked() {
    let local = single_node();
    let port = free_port_range(1);
    let args =
        ["--optimize", "stopped", "--seed", "7", "--candidates", "5", "--workers", "4", "--latency-ms", "40"];
    let mut node = start_node("solo", port, &[], &args);
    support::until(|| evaluations_done(&node) >= 100, || format!("progress: {:?}", node.output()));
    node.send_line("stop-run").unwrap();
    wait(&node, json!({"event": "run_stopped"}));
    // Stopped: nothing more is recorded (what was in flight aside), and no result comes.
    let seeds = format!("127.0.0.1:{port}");
    let evaluations = || {
        let status = client(&["status", "stopped", "--seeds", &seeds, "--json"]);
        let answer: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        answer["status"]["evaluations"][1].as_u64().unwrap()
    };
    std::thread::sleep(Duration::from_millis(1_000));
    let stopped_at = evaluations();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(evaluations(), stopped_at, "a stopped run records nothing more");
    assert!(!finished(&node));
    node.kill();
    // Started again on its directory: the stop is in the log, and submitting the same run
    // again does not resume it.
    let node = start_node("solo", port, &[], &args);
    std::thread::sleep(Duration::from_millis(3_000));
    assert!(!finished(&node));
    let status = client(&["status", "stopped", "--seeds", &seeds, "--json"]);
    assert!(status.status.success(), "{status:?}");
    let answer: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(answer["status"]["stopped"], true, "{answer}");
    assert!(client(&["resume", "stopped", "--seeds", &seeds]).status.success());
    let result = result(&node);
    assert_same_as_single_node(&result, &local);
    assert!(result["resumed"].as_u64().unwrap() >= 20, "{result}");
}

/// `foundation optimize ARGS...`.
fn client(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .arg("optimize")
        .args(args)
        .env("XDG_STATE_HOME", foundation_cluster::testkit::state_home())
        .output()
        .unwrap()
}

/// What halving must decide for the bundled run, worked out in this process: every candidate
/// built and scored on one node, the per-example scores fed to the run's own state machine
/// (`Done`, in task order). (best key, best score, keys stopped early, evaluations, tasks).
fn halving_oracle() -> (i64, f64, Vec<i64>, usize, usize) {
    use dspex_optimizer::distributed::{Done, Outcome, Recorded, Task, TaskKind};
    let mut spec = RunSpec::questions("halving", SEED, CANDIDATES);
    spec.evaluation = dspex_optimizer::distributed::EvaluationPlan::halving();
    let plan = spec.plan();
    let lm: Arc<dyn LanguageModel> = Arc::new(SimulatedModel::new(SimulatedConfig {
        seed: SEED,
        latency: Duration::ZERO,
        ..Default::default()
    }));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut programs = std::collections::BTreeMap::new();
    let mut scores = std::collections::BTreeMap::new();
    for seed in plan.builds() {
        let program = runtime.block_on(spec.build(*seed, lm.as_ref()));
        let evaluation = runtime.block_on(dspex_optimizer::evaluate::evaluate(
            &program,
            &spec.valset,
            lm.clone(),
            &spec.metric,
            8,
        ));
        let by_index: Vec<(f64, bool)> =
            evaluation.results.iter().map(|r| (r.score, r.error.is_some())).collect();
        scores.insert(*seed, by_index);
        programs.insert(*seed, program);
    }
    let mut done = Done::new(&plan);
    loop {
        let mut applied = false;
        for id in 0..plan.max_tasks() as u64 {
            let Some(task) = plan.task(id, |s| programs.get(&s)) else { continue };
            let outcome = match &task.kind {
                TaskKind::Build { seed } => Outcome::Built(programs[seed].clone()),
                TaskKind::Eval { candidate, examples, .. } => Outcome::Scores(
                    examples.iter().map(|i| (*i, scores[candidate][*i].0, scores[candidate][*i].1)).collect(),
                ),
            };
            let task = Task { id, kind: task.kind };
            applied |= done.apply(&plan, Recorded::new(&task, "here", outcome, 0));
        }
        if !applied {
            break;
        }
    }
    assert!(done.finished(&plan));
    let means: Vec<(i64, f64)> =
        plan.candidates().iter().filter_map(|c| done.mean(c.key).map(|m| (c.key, m))).collect();
    let best = means.iter().fold(None, |best: Option<(i64, f64)>, (k, m)| match best {
        Some((_, b)) if b >= *m => best,
        _ => Some((*k, *m)),
    });
    let (best_key, best_score) = best.unwrap();
    let stopped = (0..plan.candidates().len())
        .filter(|p| done.stopped(*p).is_some())
        .map(|p| plan.candidates()[p].key)
        .collect();
    (best_key, best_score, stopped, done.evaluations(), done.tasks_done())
}

#[test]
fn halving_decides_the_same_with_its_scheduler_killed_mid_run() {
    let (best, best_score, stopped, evaluations, tasks) = halving_oracle();
    assert!(!stopped.is_empty(), "the oracle stops some candidates");
    let base = free_port_range(3);
    let mut nodes: Vec<NodeProcess> = (0..3u16)
        .map(|i| {
            let seeds: Vec<u16> = (0..i).map(|j| base + j).collect();
            let mut args = args("halving").to_vec();
            args.push("--halving");
            start_node(&format!("n{}", i + 1), base + i, &seeds, &args)
        })
        .collect();
    // The scheduler (n1, the lowest name) killed once rounds are under way: its successor
    // replays the log and must take the same decisions.
    support::until(|| evaluations_done(&nodes[1]) >= 300, || format!("progress: {:?}", nodes[1].output()));
    assert!(!finished(&nodes[1]), "killed mid-run");
    nodes[0].kill();
    let result = result(&nodes[1]);
    assert_eq!(result["best_seed"], best, "{result}");
    assert_eq!(result["best_score"].as_f64().unwrap(), best_score);
    let stopped_early: Vec<(i64, usize, f64)> =
        serde_json::from_value(result["stopped_early"].clone()).unwrap();
    let keys: Vec<i64> = stopped_early.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(keys, stopped, "{result}");
    assert_eq!(result["evaluations"], evaluations, "{result}");
    // The last scheduler started from the log, with the killed one's decisions' inputs in it.
    assert!(result["resumed"].as_u64().unwrap() > 0, "{result}");
    drop(nodes);
    assert_tasks_logged_once("halving", "n2", base + 1, tasks);
}
