//! Evaluation workers: on every serving node, pull leased tasks of any run from the scheduler
//! (wherever it runs), do them with the model the run names (among this node's models) and
//! report each result until the scheduler takes it. Pull gives load balancing by real capacity:
//! a slow node simply asks less often. A run's spec is fetched once per node and kept (the
//! [`SPECS_KEPT`] most recent).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::providers::{BoxFuture, ChatRequest, Completion as Answer, LanguageModel, LmError};
use foundation_actors::wire::Wire;
use foundation_core::sync::MutexRecover;
use ractor::ActorRef;
use tracing::Instrument;

use super::scheduler::{Completion, LeaseReply, LeaseRequest, SCHEDULER, SCOPE, SchedMsg};
use super::spec::{Outcome, RunSpec, Task, TaskKind};
use super::state::Calls;
use crate::LanguageModels;
use crate::evaluate::evaluate_one;

/// How long a worker waits for the scheduler's answer.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause when there is no scheduler or no task.
const IDLE: Duration = Duration::from_millis(100);
/// Tries at a run's spec before a worker gives its task up (about a scheduler's failover).
const SPEC_ATTEMPTS: usize = 100;

/// A task aborted when this is dropped (a worker aborted takes its task's work with it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
/// Specs of runs a node keeps (fetched again when needed after that).
pub const SPECS_KEPT: usize = 16;

/// The scheduler, if one is visible.
pub(crate) fn scheduler() -> Option<ActorRef<SchedMsg>> {
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &SCHEDULER.to_string())
        .into_iter()
        .next()
        .map(Into::into)
}

/// The largest message to send to `scheduler`: none for one on this node (delivered without a
/// frame), the cluster's frame limit `max_bytes` otherwise.
pub(crate) fn limit_for(scheduler: &ActorRef<SchedMsg>, max_bytes: usize) -> usize {
    if scheduler.get_id().is_local() { usize::MAX } else { max_bytes }
}

/// What the workers of one node share.
pub(crate) struct Workers {
    pub(crate) node: String,
    pub(crate) models: LanguageModels,
    pub(crate) active: Arc<AtomicUsize>,
    pub(crate) max_bytes: usize,
    specs: Mutex<VecDeque<Arc<RunSpec>>>,
}

impl Workers {
    pub(crate) fn new(
        node: String,
        models: LanguageModels,
        active: Arc<AtomicUsize>,
        max_bytes: usize,
    ) -> Self {
        Workers { node, models, active, max_bytes, specs: Mutex::new(VecDeque::new()) }
    }

    async fn lease(&self) -> Option<LeaseReply> {
        let scheduler = scheduler()?;
        // The scheduler sizes the lease by this node's speed (see `capacity`).
        let request = LeaseRequest { node: self.node.clone(), max: super::capacity::MAX_LEASE };
        let request = Wire::encode(&request, limit_for(&scheduler, self.max_bytes)).ok()?;
        match scheduler.call(|port| SchedMsg::Lease(request, port), Some(CALL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(reply)) => reply.into_inner().ok(),
            _ => None,
        }
    }

    /// The spec of `run`: kept, or fetched from the scheduler.
    async fn spec(&self, run: &str) -> Option<Arc<RunSpec>> {
        if let Some(spec) = self.specs.lock_or_recover().iter().find(|s| s.run_id == run) {
            return Some(spec.clone());
        }
        let scheduler = scheduler()?;
        let request = Wire::encode(&run.to_string(), limit_for(&scheduler, self.max_bytes)).ok()?;
        let spec = match scheduler.call(|port| SchedMsg::Spec(request, port), Some(CALL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(reply)) => match reply.into_inner() {
                Ok(Ok(mut spec)) => {
                    // A judge's named model, from this node's (a node without it refuses).
                    if let Err(why) = spec.metric.bind_judge(&self.models) {
                        tracing::warn!(%run, %why, "this node cannot judge the run");
                    }
                    Arc::new(spec)
                }
                Ok(Err(why)) => {
                    tracing::warn!(%run, %why, "the run's spec could not be had");
                    return None;
                }
                Err(_) => return None,
            },
            _ => return None,
        };
        let mut specs = self.specs.lock_or_recover();
        if !specs.iter().any(|s| s.run_id == run) {
            if specs.len() >= SPECS_KEPT {
                specs.pop_front();
            }
            specs.push_back(spec.clone());
        }
        Some(spec)
    }
}

/// Runs worker `index` of this node for as long as the node serves.
pub(crate) async fn run(workers: Arc<Workers>, index: usize) {
    loop {
        if index >= workers.active.load(Ordering::SeqCst) {
            // Parked: the node runs fewer workers now.
            tokio::time::sleep(IDLE).await;
            continue;
        }
        let Some(reply) = workers.lease().await else {
            tokio::time::sleep(IDLE).await;
            continue;
        };
        if reply.tasks.is_empty() {
            if let Some(why) = &reply.refused {
                tracing::debug!(%why, "no task leased");
            }
            tokio::time::sleep(IDLE).await;
            continue;
        }
        for (run, task) in reply.tasks {
            // Each task is a trace of its own, sampled at the node's rate (or a cluster
            // trace's): its evaluations here and its recording by the scheduler.
            let kind = if matches!(task.kind, TaskKind::Build { .. }) { "build" } else { "eval" };
            let span = tracing::info_span!("dspex.task", trace_root = true, run = %run, task = task.id, kind);
            async {
                // The spec, fetched again for a while if the scheduler does not answer (failing
                // over): given up, the lease goes back when it times out.
                let mut spec = None;
                for _ in 0..SPEC_ATTEMPTS {
                    spec = workers.spec(&run).await;
                    if spec.is_some() {
                        break;
                    }
                    tokio::time::sleep(IDLE).await;
                }
                let Some(spec) = spec else { return };
                // The work's time, the spec's fetch left out (its node's speed is measured by it).
                let started = std::time::Instant::now();
                // In a task of its own (aborted with this one): a panic (in a metric of the
                // program's, say) is this node refusing the run, not a worker lost.
                let (models, job) = (workers.models.clone(), task.clone());
                // In the task's span (a spawned task starts outside any): its evaluations are
                // the task's children in its trace.
                let mut inner = AbortOnDrop(tokio::spawn(
                    async move { execute(&spec, &models, &job).await }.in_current_span(),
                ));
                let (outcome, calls) = match (&mut inner.0).await {
                    Ok(done) => done,
                    Err(e) if e.is_panic() => {
                        let panic = e.into_panic();
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        tracing::error!(%run, task = task.id, %why, "a task panicked: this node refuses the run");
                        (Outcome::Refused(format!("a task panicked: {why}")), Calls::default())
                    }
                    // Cancelled (the node stops serving): nothing to report.
                    Err(_) => return,
                };
                report(&workers, &run, task, outcome, calls, started.elapsed()).await;
            }
            .instrument(span)
            .await;
        }
    }
}

/// Counts the model calls of one task, and those the call cache answered.
struct CountCalls {
    inner: Arc<dyn LanguageModel>,
    made: AtomicU64,
    cached: AtomicU64,
    saved_tokens: AtomicU64,
}

impl LanguageModel for CountCalls {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Answer, LmError>> {
        Box::pin(async move {
            let answer = self.inner.complete(request).await;
            self.made.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = &answer
                && c.cached
            {
                self.cached.fetch_add(1, Ordering::Relaxed);
                self.saved_tokens.fetch_add(c.usage.total(), Ordering::Relaxed);
            }
            answer
        })
    }
}

async fn execute(spec: &RunSpec, models: &LanguageModels, task: &Task) -> (Outcome, Calls) {
    let lm = match models.get(&spec.lm) {
        Ok(lm) => lm,
        Err(e) => return (Outcome::Refused(e.to_string()), Calls::default()),
    };
    if !spec.metric.available() {
        let why = match &spec.metric {
            crate::Metric::Judge(judge) => {
                format!(
                    "the judge model `{}` is not registered on this node",
                    judge.model.as_deref().unwrap_or("")
                )
            }
            metric => format!("the metric `{}` is not registered on this node", metric.name()),
        };
        return (Outcome::Refused(why), Calls::default());
    }
    let counted = CountCalls {
        inner: lm,
        made: AtomicU64::new(0),
        cached: AtomicU64::new(0),
        saved_tokens: AtomicU64::new(0),
    };
    let outcome = match &task.kind {
        TaskKind::Build { seed } => Outcome::Built(spec.build(*seed, &counted).await),
        TaskKind::Eval { program, examples, .. } => {
            let mut scores = Vec::with_capacity(examples.len());
            for index in examples {
                let Some(example) = spec.valset.get(*index) else { continue };
                // A failed evaluation marks its span (the trace then lists it as an error).
                let span =
                    tracing::info_span!("dspex.evaluate", example = *index, error = tracing::field::Empty);
                let result = evaluate_one(program, example, *index, &counted, &spec.metric)
                    .instrument(span.clone())
                    .await;
                if let Some(error) = &result.error {
                    span.record("error", error.as_str());
                }
                let outcome = if result.error.is_some() { "error" } else { "ok" };
                metrics::counter!(
                    "foundation_optimization_evaluations_total",
                    "run" => foundation_core::telemetry::bounded_label("run", &spec.run_id),
                    "outcome" => outcome
                )
                .increment(1);
                scores.push((*index, result.score, result.error.is_some()));
            }
            Outcome::Scores(scores)
        }
    };
    let calls = Calls {
        made: counted.made.load(Ordering::Relaxed),
        cached: counted.cached.load(Ordering::Relaxed),
        saved_tokens: counted.saved_tokens.load(Ordering::Relaxed),
    };
    (outcome, calls)
}

/// Reports a result until a scheduler takes it (the one that leased it, or its successor after
/// failover: results are recorded once per task id, so repeating is harmless). A result too
/// large for a message to a scheduler on another node is not sent (logged): its lease times out
/// and the task goes back to the queue.
async fn report(workers: &Workers, run: &str, task: Task, outcome: Outcome, calls: Calls, work: Duration) {
    let id = task.id;
    let completion =
        Completion { run: run.to_string(), node: workers.node.clone(), task, outcome, work, calls };
    loop {
        if let Some(scheduler) = scheduler() {
            match Wire::encode(&completion, limit_for(&scheduler, workers.max_bytes)) {
                Ok(wire) => {
                    if let Ok(ractor::rpc::CallResult::Success(_)) =
                        scheduler.call(|port| SchedMsg::Complete(wire, port), Some(CALL_TIMEOUT)).await
                    {
                        return;
                    }
                }
                Err(e) => {
                    // Too large to send: said in a small report, and the run fails (the
                    // scheduler records why) rather than the task being redone forever.
                    tracing::warn!(%run, task = id, error = %e, "a task's result is too large to send to the scheduler");
                    let bytes = match &e {
                        foundation_actors::wire::WireError::TooLarge { size, .. } => *size,
                        _ => usize::MAX,
                    };
                    let small = Completion { outcome: Outcome::TooLarge(bytes), ..completion.clone() };
                    let Ok(wire) = Wire::encode(&small, limit_for(&scheduler, workers.max_bytes)) else {
                        return;
                    };
                    if let Ok(ractor::rpc::CallResult::Success(_)) =
                        scheduler.call(|port| SchedMsg::Complete(wire, port), Some(CALL_TIMEOUT)).await
                    {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(IDLE).await;
    }
}
