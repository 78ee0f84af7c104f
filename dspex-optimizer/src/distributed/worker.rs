//! Evaluation workers: on every node, pull leased batches of tasks from the run's coordinator
//! (wherever it runs), do them and report each result. Pull gives load balancing by real
//! capacity: a slow node simply asks less often.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foundation_actors::providers::LanguageModel;
use foundation_actors::wire::Wire;
use ractor::ActorRef;
use tracing::Instrument;

use super::coordinator::{Completion, CoordMsg, LeaseReply, LeaseRequest, SCOPE};
use super::spec::{Outcome, RunSpec, Task, TaskKind};
use crate::evaluate::evaluate_one;

/// How long a worker waits for the coordinator's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause when there is no coordinator or no task.
const IDLE: Duration = Duration::from_millis(100);

/// The run's coordinator, if one is visible.
pub(crate) fn coordinator(run_id: &str) -> Option<ActorRef<CoordMsg>> {
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &run_id.to_string()).into_iter().next().map(Into::into)
}

/// The largest message to send to `coordinator`: none for one on this node (delivered without
/// a frame), the cluster's frame limit `max_bytes` otherwise.
fn limit_for(coordinator: &ActorRef<CoordMsg>, max_bytes: usize) -> usize {
    if coordinator.get_id().is_local() { usize::MAX } else { max_bytes }
}

async fn lease(run_id: &str, node: &str, max_bytes: usize) -> Option<LeaseReply> {
    let coordinator = coordinator(run_id)?;
    let request = LeaseRequest { node: node.to_string(), max: 1 };
    let request = match Wire::encode(&request, limit_for(&coordinator, max_bytes)) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(run = %run_id, error = %e, "lease request not sent");
            return None;
        }
    };
    match coordinator.call(|port| CoordMsg::Lease(request, port), Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(reply)) => reply.into_inner().ok(),
        _ => None,
    }
}

/// Runs one worker until the run is finished; `max_bytes` is the cluster's frame limit
/// (`cluster.max_frame_bytes`), for messages to a coordinator on another node.
pub(crate) async fn run(
    spec: Arc<RunSpec>,
    lm: Arc<dyn LanguageModel>,
    node: String,
    index: usize,
    active: Arc<AtomicUsize>,
    max_bytes: usize,
) {
    loop {
        if index >= active.load(Ordering::SeqCst) {
            // Parked: the node runs fewer workers now.
            tokio::time::sleep(IDLE).await;
            continue;
        }
        let Some(reply) = lease(&spec.run_id, &node, max_bytes).await else {
            tokio::time::sleep(IDLE).await;
            continue;
        };
        if reply.finished {
            return;
        }
        if reply.tasks.is_empty() {
            if let Some(why) = &reply.refused {
                tracing::debug!(run = %spec.run_id, %why, "no task leased");
            }
            tokio::time::sleep(IDLE).await;
            continue;
        }
        for task in reply.tasks {
            // Each task is a trace of its own, sampled at the node's rate (or a cluster
            // trace's): its evaluations here and its recording by the coordinator.
            let kind = if matches!(task.kind, TaskKind::Build { .. }) { "build" } else { "eval" };
            let span = tracing::info_span!("dspex.task", trace_root = true, run = %spec.run_id, task = task.id, kind);
            async {
                let started = std::time::Instant::now();
                let outcome = execute(&spec, lm.as_ref(), &task).await;
                report(&spec.run_id, &node, task, outcome, started.elapsed(), max_bytes).await;
            }
            .instrument(span)
            .await;
        }
    }
}

async fn execute(spec: &RunSpec, lm: &dyn LanguageModel, task: &Task) -> Outcome {
    match &task.kind {
        TaskKind::Build { seed } => {
            let candidate = spec
                .search()
                .candidate(*seed, &spec.student, &spec.trainset, lm, &spec.metric, spec.seed)
                .await;
            Outcome::Built(candidate.program)
        }
        TaskKind::Eval { program, examples, .. } => {
            let mut scores = Vec::with_capacity(examples.len());
            for index in examples {
                let Some(example) = spec.valset.get(*index) else { continue };
                let result = evaluate_one(program, example, *index, lm, &spec.metric)
                    .instrument(tracing::info_span!("dspex.evaluate", example = *index))
                    .await;
                scores.push((*index, result.score, result.error.is_some()));
            }
            Outcome::Scores(scores)
        }
    }
}

/// Reports a result until a coordinator takes it (the one that leased it, or its successor
/// after failover: results are recorded once per task id, so repeating is harmless). A result
/// too large for a message to a coordinator on another node is not sent (logged): its lease
/// times out and the task goes back to the queue.
async fn report(run_id: &str, node: &str, task: Task, outcome: Outcome, work: Duration, max_bytes: usize) {
    let id = task.id;
    let completion = Completion { node: node.to_string(), task, outcome, work };
    loop {
        if let Some(coordinator) = coordinator(run_id) {
            match Wire::encode(&completion, limit_for(&coordinator, max_bytes)) {
                Ok(wire) => {
                    if let Ok(ractor::rpc::CallResult::Success(_)) =
                        coordinator.call(|port| CoordMsg::Complete(wire, port), Some(CALL_TIMEOUT)).await
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        run = %run_id, task = id, error = %e,
                        "a task's result is too large to send to the coordinator; not reported (its lease will time out)"
                    );
                    return;
                }
            }
        }
        tokio::time::sleep(IDLE).await;
    }
}
