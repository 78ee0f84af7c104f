//! A stage worker: an actor that pulls one item at a time from its stage's bounded input,
//! runs the stage function with retries, and passes the result on (or to the dead letters).

use foundation_core::sync::MutexRecover;
use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use foundation_core::retry::RetryPolicy;
use foundation_core::trace_context::{self, TraceParent};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::DeadLetter;

/// An item on its way through the pipeline, with the id it was given at submission.
pub(crate) struct Item<T> {
    pub(crate) id: u64,
    pub(crate) value: T,
    /// The trace context of the submitter, then of the previous stage's span.
    pub(crate) trace: Option<TraceParent>,
}

pub(crate) type StageFn<I, O, E> =
    Arc<dyn Fn(I) -> Pin<Box<dyn Future<Output = Result<O, E>> + Send>> + Send + Sync>;
pub(crate) type Retryable<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;

/// Counters of one stage, readable in code ([`StageStats`](super::StageStats) is the snapshot).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) processed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
}

/// What every worker of a stage shares.
pub(crate) struct StageShared<I, O, E> {
    pub(crate) pipeline: String,
    pub(crate) name: String,
    pub(crate) f: StageFn<I, O, E>,
    pub(crate) retry: RetryPolicy,
    pub(crate) retryable: Retryable<E>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) input: Arc<Mutex<mpsc::Receiver<Item<I>>>>,
    /// The next stage's input. Kept here (not in the restartable child specs) so that it can be
    /// dropped once this stage has drained, which closes the next stage's input in turn.
    pub(crate) output: std::sync::Mutex<Option<mpsc::Sender<Item<O>>>>,
    /// This stage's running workers.
    pub(crate) stage_live: AtomicUsize,
    pub(crate) pipeline_shared: Arc<PipelineShared>,
}

/// What every worker of a pipeline shares.
pub(crate) struct PipelineShared {
    pub(crate) dead: std::sync::Mutex<Option<mpsc::Sender<DeadLetter>>>,
    /// Workers of the whole pipeline still running; the last one closes the dead letters and
    /// stops the supervisor.
    pub(crate) live: AtomicUsize,
    pub(crate) supervisor: OnceLock<ActorCell>,
}

/// A worker's own handles, taken from the shared slots when it (re)starts.
pub(crate) struct WorkerState<I, O, E> {
    shared: Arc<StageShared<I, O, E>>,
    output: Option<mpsc::Sender<Item<O>>>,
    dead: Option<mpsc::Sender<DeadLetter>>,
    drained: bool,
}

/// The worker actor of a stage from `I` to `O` with error `E` (it holds no data itself).
pub(crate) struct StageWorker<I, O, E>(PhantomData<Types<I, O, E>>);

type Types<I, O, E> = fn() -> (I, O, E);

impl<I, O, E> StageWorker<I, O, E> {
    pub(crate) fn new() -> Self {
        StageWorker(PhantomData)
    }
}

pub(crate) enum WorkerMsg {
    Pull,
}

// Local-only: explicit because ractor's `cluster` feature removes the blanket impl.
impl ractor::Message for WorkerMsg {}

impl<I, O, E> Actor for StageWorker<I, O, E>
where
    I: Clone + Send + Sync + 'static,
    O: Send + Sync + 'static,
    E: std::fmt::Display + Send + Sync + 'static,
{
    type Msg = WorkerMsg;
    type State = WorkerState<I, O, E>;
    type Arguments = Arc<StageShared<I, O, E>>;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        shared: Arc<StageShared<I, O, E>>,
    ) -> Result<WorkerState<I, O, E>, ActorProcessingErr> {
        shared.stage_live.fetch_add(1, Ordering::SeqCst);
        shared.pipeline_shared.live.fetch_add(1, Ordering::SeqCst);
        let output = shared.output.lock_or_recover().clone();
        let dead = shared.pipeline_shared.dead.lock_or_recover().clone();
        myself.send_message(WorkerMsg::Pull)?;
        Ok(WorkerState { shared, output, dead, drained: false })
    }

    async fn post_stop(
        &self,
        _: ActorRef<WorkerMsg>,
        state: &mut WorkerState<I, O, E>,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &state.shared;
        if shared.stage_live.fetch_sub(1, Ordering::SeqCst) == 1 && state.drained {
            // This stage has drained: let the next stage's input close once our clones are gone.
            shared.output.lock_or_recover().take();
        }
        state.output = None;
        state.dead = None;
        let pipeline = &shared.pipeline_shared;
        if pipeline.live.fetch_sub(1, Ordering::SeqCst) == 1 && state.drained {
            pipeline.dead.lock_or_recover().take();
            if let Some(supervisor) = pipeline.supervisor.get() {
                // The pipeline has drained: nothing is left for its supervisor to do.
                supervisor.stop(None);
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        _: WorkerMsg,
        state: &mut WorkerState<I, O, E>,
    ) -> Result<(), ActorProcessingErr> {
        let next = state.shared.input.lock().await.recv().await;
        match next {
            // The input is closed and drained: this worker's part is done.
            None => {
                state.drained = true;
                myself.stop(None);
            }
            Some(item) => {
                process(state, item).await;
                myself.send_message(WorkerMsg::Pull)?;
            }
        }
        Ok(())
    }
}

/// Runs the stage on one item until it succeeds, fails for good, or runs out of attempts.
async fn process<I, O, E>(state: &WorkerState<I, O, E>, item: Item<I>)
where
    I: Clone + Send + Sync + 'static,
    O: Send + Sync + 'static,
    E: std::fmt::Display + Send + Sync + 'static,
{
    let shared = &state.shared;
    let labels = [("pipeline", shared.pipeline.clone()), ("stage", shared.name.clone())];
    let started = Instant::now();
    // Each stage is a span of the item's trace, a child of the previous stage's span.
    let span = trace_context::continue_trace!(
        item.trace,
        "pipeline.stage",
        pipeline = %shared.pipeline,
        stage = %shared.name,
        item = item.id
    );
    // (A disabled span is not entered: the worker's own surroundings are no parent of the item.)
    let trace = if span.is_disabled() { item.trace } else { span.in_scope(trace_context::current_sampled) };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let f = shared.f.clone();
        let input = item.value.clone();
        // Its own task, so that a panic in user code fails this attempt, not the worker.
        let outcome = tokio::spawn(async move { f(input).await }.instrument(span.clone())).await;
        let error = match outcome {
            Ok(Ok(value)) => {
                metrics::histogram!("foundation_pipeline_stage_seconds", &labels)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("foundation_pipeline_processed_total", &labels).increment(1);
                shared.counters.processed.fetch_add(1, Ordering::Relaxed);
                let sent = match &state.output {
                    Some(output) => output.send(Item { id: item.id, value, trace }).await.map_err(|e| e.0),
                    None => Err(Item { id: item.id, value, trace }),
                };
                if let Err(lost) = sent {
                    // Whoever reads the output is gone: keep the result as a dead letter.
                    dead_letter(
                        state,
                        lost.id,
                        Box::new(lost.value),
                        "the pipeline's output was closed".into(),
                        attempt,
                    )
                    .await;
                }
                return;
            }
            Ok(Err(e)) => {
                if shared.retry.allows_another(attempt) && (shared.retryable)(&e) {
                    metrics::counter!("foundation_pipeline_retries_total", &labels).increment(1);
                    shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(shared.retry.delay_after(attempt)).await;
                    continue;
                }
                e.to_string()
            }
            Err(join) => format!("panicked: {}", panic_message(join)),
        };
        dead_letter(state, item.id, Box::new(item.value), error, attempt).await;
        return;
    }
}

async fn dead_letter<I, O, E>(
    state: &WorkerState<I, O, E>,
    id: u64,
    item: Box<dyn Any + Send>,
    error: String,
    attempts: u32,
) {
    let shared = &state.shared;
    metrics::counter!("foundation_pipeline_dead_letters_total", "pipeline" => shared.pipeline.clone(), "stage" => shared.name.clone())
        .increment(1);
    shared.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(pipeline = %shared.pipeline, stage = %shared.name, id, attempts, %error, "item dead-lettered");
    let letter = DeadLetter { id, stage: shared.name.clone(), error, attempts, item };
    // Bounded: a full dead-letter sink holds the worker back (backpressure), it never drops.
    let delivered = match &state.dead {
        Some(dead) => dead.send(letter).await.is_ok(),
        None => false,
    };
    if !delivered {
        tracing::error!(pipeline = %shared.pipeline, stage = %shared.name, id, "dead-letter sink closed; item dropped");
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic".to_string()),
        Err(e) => e.to_string(),
    }
}
