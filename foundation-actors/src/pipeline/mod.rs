//! Pipelines: named stages, each a supervised pool of worker actors with a bounded input, a
//! retry policy and a dead-letter sink.
//!
//! - **Backpressure reaches the source.** Every stage reads from a bounded channel; a slow stage
//!   fills its input, the stage before it waits to hand over, and so on back to
//!   [`PipelineInput::submit`], which waits ([`PipelineInput::try_submit`] refuses instead).
//! - **Retries** per stage: attempts and backoff with jitter from a
//!   [`RetryPolicy`](foundation_core::retry::RetryPolicy), and a predicate saying which errors are
//!   worth retrying. A panic in a stage fails the item without retry and without harming the
//!   worker.
//! - **Nothing accepted is lost.** Every submitted item ends either as an output or as a
//!   [`DeadLetter`] (carrying the item itself, the stage, the error and the attempts). The
//!   dead-letter sink is bounded too: when it is full, workers wait.
//! - **Metrics** (labels `pipeline`, `stage`): `foundation_pipeline_processed_total`,
//!   `foundation_pipeline_stage_seconds` (latency including retries),
//!   `foundation_pipeline_retries_total`, `foundation_pipeline_dead_letters_total`; the same
//!   counts in code through [`Pipeline::stats`].
//!
//! Closing: when every [`PipelineInput`] is dropped, the stages drain in order, then
//! [`Outputs::recv`] and [`DeadLetters::recv`] return `None`.
//!
//! ```
//! use foundation_actors::pipeline::{Pipeline, Stage};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let pipeline = Pipeline::builder::<String>("words")
//!     .stage(Stage::new("parse", |s: String| async move { s.parse::<u32>().map_err(|e| e.to_string()) }).workers(2))
//!     .stage(Stage::new("double", |n: u32| async move { Ok::<_, String>(n * 2) }))
//!     .build(16)
//!     .await?;
//! let (input, mut outputs, mut dead) = pipeline.split();
//! input.submit("21".to_string()).await?;
//! input.submit("x".to_string()).await?;
//! drop(input); // no more input: the pipeline drains and closes
//! assert_eq!(outputs.recv().await.map(|(_, v)| v), Some(42));
//! let letter = dead.recv().await.unwrap();
//! assert_eq!(letter.stage, "parse");
//! assert_eq!(letter.item::<String>().as_deref(), Some("x")); // the item itself is kept
//! # Ok::<(), foundation_actors::pipeline::PipelineError>(())
//! # }).unwrap();
//! ```

// Stage workers are ractor actors under our supervisor, but a stage is not a ractor `factory`:
// a factory's queue is bounded only by discarding jobs (DiscardSettings) and casts to it never
// wait, so backpressure could not reach the source and "nothing accepted is lost" could not hold.
// Here each stage reads from a bounded tokio channel and hands over with a waiting send.
mod worker;

use foundation_core::sync::MutexRecover;
use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use foundation_core::retry::RetryPolicy;
use foundation_core::trace_context;
use tokio::sync::{Mutex, mpsc};

use crate::supervision::{ChildSpec, Restart, Strategy, Supervisor, SupervisorHandle, SupervisorSpec};
use worker::{Counters, Item, PipelineShared, Retryable, StageFn, StageShared, StageWorker};

/// Default bound of a stage's input.
pub const DEFAULT_STAGE_CAPACITY: usize = 64;
/// Default bound of the dead-letter sink.
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 1024;

/// Errors of a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The pipeline no longer accepts input (its workers stopped).
    #[error("pipeline `{0}` is closed")]
    Closed(String),
    /// A stage's settings are invalid.
    #[error("pipeline `{pipeline}`, stage `{stage}`: {reason}")]
    Config {
        /// The pipeline.
        pipeline: String,
        /// The stage.
        stage: String,
        /// What is wrong.
        reason: String,
    },
    /// The workers could not start: the pipeline, and why (its supervisor's error).
    #[error("pipeline `{0}` could not start: {1}")]
    Start(String, #[source] crate::supervision::SupervisionError),
}

/// Why [`PipelineInput::try_submit`] did not accept an item; the item comes back.
#[derive(Debug)]
pub enum TrySubmitError<T> {
    /// The first stage's input is full.
    Full(T),
    /// The pipeline is closed.
    Closed(T),
}

/// An item that did not make it through a stage.
pub struct DeadLetter {
    /// The id it was given at submission.
    pub id: u64,
    /// The stage where it failed.
    pub stage: String,
    /// The last error (or panic message).
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    item: Box<dyn Any + Send>,
}

impl DeadLetter {
    /// The item as that stage received it (or as it produced it, if the output was closed).
    pub fn item<T: 'static>(self) -> Option<T> {
        self.item.downcast::<T>().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.id)
            .field("stage", &self.stage)
            .field("error", &self.error)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// One stage: a function from `I` to `Result<O, E>`, its workers, input bound and retries.
pub struct Stage<I, O, E> {
    name: String,
    workers: usize,
    capacity: usize,
    retry: RetryPolicy,
    retryable: Retryable<E>,
    f: StageFn<I, O, E>,
}

impl<I, O, E> Stage<I, O, E>
where
    I: Clone + Send + Sync + 'static,
    O: Send + Sync + 'static,
    E: std::fmt::Display + Send + Sync + 'static,
{
    /// A stage running `f` on each item: 1 worker, input bound [`DEFAULT_STAGE_CAPACITY`],
    /// the default [`RetryPolicy`] (3 attempts), every error retryable.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
    {
        Stage {
            name: name.into(),
            workers: 1,
            capacity: DEFAULT_STAGE_CAPACITY,
            retry: RetryPolicy::default(),
            retryable: Arc::new(|_| true),
            f: Arc::new(move |i| Box::pin(f(i))),
        }
    }

    /// Worker actors running this stage concurrently (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Bound of this stage's input (at least 1).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// Attempts and backoff.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Which errors are retried (others dead-letter at once).
    pub fn retry_if(mut self, retryable: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.retryable = Arc::new(retryable);
        self
    }
}

/// Connects the last stage so far to what follows it (the next stage's input, or the outputs),
/// adding its workers' child specs.
type Attach<T> = Box<dyn FnOnce(mpsc::Sender<Item<T>>, &mut Vec<ChildSpec>) + Send>;

/// Builds a pipeline stage by stage; `Cur` is the type the last stage produces.
pub struct PipelineBuilder<In, Cur> {
    name: String,
    source: Arc<OnceLock<mpsc::Sender<Item<In>>>>,
    attach: Attach<Cur>,
    children: Vec<ChildSpec>,
    counters: Vec<(String, Arc<Counters>)>,
    dead: mpsc::Receiver<DeadLetter>,
    shared: Arc<PipelineShared>,
    error: Option<PipelineError>,
    _types: PhantomData<fn() -> (In, Cur)>,
}

/// A running pipeline from `In` to `Out`.
pub struct Pipeline<In, Out> {
    input: PipelineInput<In>,
    outputs: Outputs<Out>,
    dead: DeadLetters,
    monitor: PipelineMonitor,
}

/// Reads a pipeline's per-stage counts, before or after [`Pipeline::split`]. Cheap to clone.
#[derive(Clone)]
pub struct PipelineMonitor {
    counters: Arc<Vec<(String, Arc<Counters>)>>,
}

impl PipelineMonitor {
    /// Counts per stage, in stage order.
    pub fn stats(&self) -> Vec<StageStats> {
        self.counters
            .iter()
            .map(|(stage, c)| StageStats {
                stage: stage.clone(),
                processed: c.processed.load(Ordering::Relaxed),
                retries: c.retries.load(Ordering::Relaxed),
                dead_letters: c.dead_letters.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Counts of one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageStats {
    /// The stage.
    pub stage: String,
    /// Items it passed on.
    pub processed: u64,
    /// Retries it made.
    pub retries: u64,
    /// Items it dead-lettered.
    pub dead_letters: u64,
}

impl Pipeline<(), ()> {
    /// Starts describing a pipeline that takes `In`.
    pub fn builder<In: Send + 'static>(name: impl Into<String>) -> PipelineBuilder<In, In> {
        let source = Arc::new(OnceLock::new());
        let slot = source.clone();
        let (dead_tx, dead_rx) = mpsc::channel(DEFAULT_DEAD_LETTER_CAPACITY);
        PipelineBuilder {
            name: name.into(),
            source,
            attach: Box::new(move |tx, _| {
                let _ = slot.set(tx);
            }),
            children: Vec::new(),
            counters: Vec::new(),
            dead: dead_rx,
            shared: Arc::new(PipelineShared {
                dead: std::sync::Mutex::new(Some(dead_tx)),
                live: AtomicUsize::new(0),
                supervisor: OnceLock::new(),
            }),
            error: None,
            _types: PhantomData,
        }
    }
}

impl<In: Send + 'static, Cur: Clone + Send + Sync + 'static> PipelineBuilder<In, Cur> {
    /// Adds a stage after the current last one.
    pub fn stage<Next, E>(mut self, stage: Stage<Cur, Next, E>) -> PipelineBuilder<In, Next>
    where
        Next: Send + Sync + 'static,
        E: std::fmt::Display + Send + Sync + 'static,
    {
        if self.error.is_none() && (stage.workers == 0 || stage.capacity == 0) {
            self.error = Some(PipelineError::Config {
                pipeline: self.name.clone(),
                stage: stage.name.clone(),
                reason: "workers and capacity must be at least 1".into(),
            });
        }
        let (tx, rx) = mpsc::channel::<Item<Cur>>(stage.capacity.max(1));
        (self.attach)(tx, &mut self.children);
        let counters = Arc::new(Counters::default());
        self.counters.push((stage.name.clone(), counters.clone()));
        let shared = Arc::new(StageShared {
            pipeline: self.name.clone(),
            name: stage.name.clone(),
            f: stage.f,
            retry: stage.retry,
            retryable: stage.retryable,
            counters,
            input: Arc::new(Mutex::new(rx)),
            output: std::sync::Mutex::new(None),
            stage_live: AtomicUsize::new(0),
            pipeline_shared: self.shared.clone(),
        });
        let workers = stage.workers.max(1);
        let attach = Box::new(move |output: mpsc::Sender<Item<Next>>, children: &mut Vec<ChildSpec>| {
            *shared.output.lock_or_recover() = Some(output);
            for i in 0..workers {
                let shared = shared.clone();
                let spec = ChildSpec::new(format!("{}-{i}", shared.name), move || {
                    (StageWorker::<Cur, Next, E>::new(), shared.clone())
                });
                // Transient: a worker that finished (input drained) stays stopped; a crashed one
                // is restarted.
                children.push(spec.restart(Restart::Transient));
            }
        });
        PipelineBuilder {
            name: self.name,
            source: self.source,
            attach,
            children: self.children,
            counters: self.counters,
            dead: self.dead,
            shared: self.shared,
            error: self.error,
            _types: PhantomData,
        }
    }

    /// Starts the workers under one supervisor; outputs are buffered up to `output_capacity`.
    pub async fn build(mut self, output_capacity: usize) -> Result<Pipeline<In, Cur>, PipelineError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (out_tx, out_rx) = mpsc::channel(output_capacity.max(1));
        (self.attach)(out_tx, &mut self.children);
        let mut spec = SupervisorSpec::new(Strategy::OneForOne);
        for child in self.children {
            spec = spec.child(child);
        }
        let supervisor: SupervisorHandle = Supervisor::start(format!("pipeline:{}", self.name), spec)
            .await
            .map_err(|e| PipelineError::Start(self.name.clone(), e))?;
        let _ = self.shared.supervisor.set(supervisor.cell());
        let source = self.source.get().cloned().ok_or_else(|| PipelineError::Config {
            pipeline: self.name.clone(),
            stage: String::new(),
            reason: "a pipeline needs at least one stage".into(),
        })?;
        let dead_rx = self.dead;
        Ok(Pipeline {
            input: PipelineInput { name: self.name, tx: source, next_id: Arc::default() },
            outputs: Outputs { rx: out_rx },
            dead: DeadLetters { rx: dead_rx },
            monitor: PipelineMonitor { counters: Arc::new(self.counters) },
        })
    }
}

impl<In, Out> Pipeline<In, Out> {
    /// A handle to submit input (clone it for several producers).
    pub fn input(&self) -> PipelineInput<In> {
        self.input.clone()
    }

    /// Counts per stage, in stage order.
    pub fn stats(&self) -> Vec<StageStats> {
        self.monitor.stats()
    }

    /// A handle that reads the counts, also after [`split`](Self::split).
    pub fn monitor(&self) -> PipelineMonitor {
        self.monitor.clone()
    }

    /// The input handle, the outputs and the dead letters, to use from different tasks.
    pub fn split(self) -> (PipelineInput<In>, Outputs<Out>, DeadLetters) {
        (self.input, self.outputs, self.dead)
    }
}

/// Submits items to a pipeline. When every clone is dropped, the pipeline drains and closes.
pub struct PipelineInput<In> {
    name: String,
    tx: mpsc::Sender<Item<In>>,
    next_id: Arc<AtomicU64>,
}

impl<In> Clone for PipelineInput<In> {
    fn clone(&self) -> Self {
        PipelineInput { name: self.name.clone(), tx: self.tx.clone(), next_id: self.next_id.clone() }
    }
}

impl<In: Send + 'static> PipelineInput<In> {
    /// Submits an item, waiting while the first stage's input is full (backpressure). Returns the
    /// item's id, which its output or dead letter carries.
    pub async fn submit(&self, value: In) -> Result<u64, PipelineError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Item { id, value, trace: trace_context::current_sampled() })
            .await
            .map_err(|_| PipelineError::Closed(self.name.clone()))?;
        Ok(id)
    }

    /// Submits an item if the first stage has room now.
    pub fn try_submit(&self, value: In) -> Result<u64, TrySubmitError<In>> {
        let permit = match self.tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return Err(TrySubmitError::Full(value)),
            Err(mpsc::error::TrySendError::Closed(())) => return Err(TrySubmitError::Closed(value)),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        permit.send(Item { id, value, trace: trace_context::current_sampled() });
        Ok(id)
    }
}

/// The pipeline's results, with the id of the item each came from.
pub struct Outputs<Out> {
    rx: mpsc::Receiver<Item<Out>>,
}

impl<Out> Outputs<Out> {
    /// The next result; `None` once the pipeline has drained after its input closed.
    pub async fn recv(&mut self) -> Option<(u64, Out)> {
        self.rx.recv().await.map(|i| (i.id, i.value))
    }
}

/// Items that exhausted their retries or failed for good.
pub struct DeadLetters {
    rx: mpsc::Receiver<DeadLetter>,
}

impl DeadLetters {
    /// The next dead letter; `None` once the pipeline has drained after its input closed.
    pub async fn recv(&mut self) -> Option<DeadLetter> {
        self.rx.recv().await
    }
}
