//! Error context with step-by-step tracing: an operation records what it did, step by step, and
//! an error it raises carries that history.
//!
//! ```
//! use foundation_core::error_context::ErrorContext;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let result = ErrorContext::new("answer_question")
//!     .run(|ctx| async move {
//!         let docs = ctx.step("retrieve", |ctx| async move {
//!             ctx.record("query", &"capital of France");
//!             Ok::<_, String>(vec!["Paris is the capital of France."])
//!         }).await?;
//!         ctx.step("generate", |_| async move {
//!             Err::<String, _>(format!("model timed out after reading {} docs", docs.len()))
//!         }).await
//!     })
//!     .await;
//! let err = result.unwrap_err();
//! assert_eq!(err.history().root.find("generate").unwrap().outcome,
//!            foundation_core::error_context::Outcome::Failed("model timed out after reading 1 docs".into()));
//! println!("{err}");
//! # });
//! ```
//!
//! Each step is also a `tracing` span named `step` (fields `operation`, `step`, `outcome`), so
//! steps show up in logs and traces. Contexts are bounded by
//! [`ErrorContextConfig`](crate::config::ErrorContextConfig): a loop that runs a million steps keeps
//! its first and last few, counts the rest, and never grows without limit.

mod error;
mod history;
mod tree;

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::Instrument;

pub use error::ContextError;
pub use history::{Captured, Outcome, StepHistory, StepRecord};
pub use tree::MAX_CAPTURES_PER_STEP;

use crate::config::ErrorContextConfig;
use tree::{Slot, StepId, Tree};

/// The context an operation carries: a cheap handle (clone it freely, send it across tasks)
/// onto the operation's bounded step tree, positioned at one step.
#[derive(Clone)]
pub struct ErrorContext {
    shared: Arc<Shared>,
    slot: Slot,
}

struct Shared {
    tree: Mutex<Tree>,
    root: StepId,
    operation: Cow<'static, str>,
    started: Instant,
    started_at_unix_ms: u64,
}

impl ErrorContext {
    /// A context for a new operation, with the default bounds.
    pub fn new(operation: impl Into<Cow<'static, str>>) -> Self {
        Self::with_limits(operation, ErrorContextConfig::default())
    }

    /// A context for a new operation, with the given bounds (normally `config.error_context`).
    pub fn with_limits(operation: impl Into<Cow<'static, str>>, limits: ErrorContextConfig) -> Self {
        let operation = operation.into();
        let (tree, root) = Tree::new(operation.clone(), limits);
        let started_at_unix_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let shared =
            Shared { tree: Mutex::new(tree), root, operation, started: Instant::now(), started_at_unix_ms };
        ErrorContext { shared: Arc::new(shared), slot: Slot::Recorded(root) }
    }

    /// The operation's name.
    pub fn operation(&self) -> &str {
        &self.shared.operation
    }

    /// Runs the whole operation: its outcome is recorded on the root, and an error comes back as
    /// a [`ContextError`] carrying the history.
    pub async fn run<T, E, F, Fut>(self, f: F) -> Result<T, ContextError<E>>
    where
        F: FnOnce(ErrorContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        let span = tracing::info_span!("operation", operation = %self.shared.operation);
        let result = f(self.clone()).instrument(span).await;
        self.finish_root(result)
    }

    /// Synchronous [`run`](Self::run).
    pub fn run_sync<T, E: Display>(
        self,
        f: impl FnOnce(&ErrorContext) -> Result<T, E>,
    ) -> Result<T, ContextError<E>> {
        let span = tracing::info_span!("operation", operation = %self.shared.operation);
        let result = span.in_scope(|| f(&self));
        self.finish_root(result)
    }

    /// Runs one named step of the operation. The closure gets a context positioned at the new
    /// step, for sub-steps and captured data. The result passes through unchanged; its outcome
    /// (and the error's message) is recorded.
    pub async fn step<T, E, F, Fut>(&self, name: impl Into<Cow<'static, str>>, f: F) -> Result<T, E>
    where
        F: FnOnce(ErrorContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        let step = self.begin(name);
        let result = f(step.context()).instrument(step.span.clone()).await;
        step.finish(&result);
        result
    }

    /// Synchronous [`step`](Self::step).
    pub fn step_sync<T, E: Display>(
        &self,
        name: impl Into<Cow<'static, str>>,
        f: impl FnOnce(&ErrorContext) -> Result<T, E>,
    ) -> Result<T, E> {
        let step = self.begin(name);
        let result = {
            let _entered = step.span.enter();
            f(&step.context())
        };
        step.finish(&result);
        result
    }

    /// Opens a step by hand, for control flow that does not fit a closure. Close it with
    /// [`Step::finish`]; dropped unfinished, it is recorded as cancelled (or panicked).
    pub fn begin(&self, name: impl Into<Cow<'static, str>>) -> Step {
        let name = name.into();
        let span = tracing::info_span!(
            "step",
            operation = %self.shared.operation,
            step = %name,
            outcome = tracing::field::Empty
        );
        let start = self.shared.started.elapsed();
        let slot = self.tree().begin(self.slot, name, start);
        Step { ctx: ErrorContext { shared: self.shared.clone(), slot }, span, done: false }
    }

    /// Captures an intermediate value on the current step, as JSON bounded by
    /// `max_data_bytes` (a larger value keeps a prefix and its full size). Recording a key again
    /// replaces it; at most [`MAX_CAPTURES_PER_STEP`] keys per step.
    pub fn record(&self, key: impl Into<String>, value: &impl Serialize) {
        let Slot::Recorded(id) = self.slot else { return };
        let json = serde_json::to_string(value).unwrap_or_else(|e| format!("\"<not serializable: {e}>\""));
        let mut tree = self.tree();
        let (json, truncated_from) = bounded(json, tree.limits.max_data_bytes);
        tree.capture(id, Captured { key: key.into(), json, truncated_from });
    }

    /// The history so far; running steps show their duration up to now.
    pub fn history(&self) -> StepHistory {
        let now = self.shared.started.elapsed();
        let tree = self.tree();
        let root =
            tree.record(self.shared.root, now).unwrap_or_else(|| unreachable_root(&self.shared.operation));
        StepHistory {
            root,
            started_at_unix_ms: self.shared.started_at_unix_ms,
            unrecorded_steps: tree.unrecorded,
        }
    }

    /// Wraps an error with the history so far, the operation marked as failed by it.
    pub fn fail<E: Display>(&self, error: E) -> ContextError<E> {
        let mut history = self.history();
        if history.root.outcome == Outcome::Running {
            let limit = self.tree().limits.max_data_bytes;
            history.root.outcome = Outcome::Failed(bounded(error.to_string(), limit).0);
        }
        ContextError::new(error, history)
    }

    fn finish_root<T, E: Display>(&self, result: Result<T, E>) -> Result<T, ContextError<E>> {
        let outcome = self.outcome_of(&result);
        let now = self.shared.started.elapsed();
        self.tree().end(self.shared.root, outcome, now);
        result.map_err(|e| ContextError::new(e, self.history()))
    }

    fn outcome_of<T, E: Display>(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(bounded(e.to_string(), self.tree().limits.max_data_bytes).0),
        }
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // No user code runs under this lock, so a poisoned lock only means a panic in our own
        // bookkeeping, after which the tree is still consistent enough to report.
        self.shared.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ErrorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorContext").field("operation", &self.shared.operation).finish_non_exhaustive()
    }
}

/// A step opened with [`ErrorContext::begin`].
#[must_use = "a step records its outcome when finished; dropped unfinished it is recorded as cancelled"]
pub struct Step {
    ctx: ErrorContext,
    span: tracing::Span,
    done: bool,
}

impl Step {
    /// A context positioned at this step (for sub-steps and captured data).
    pub fn context(&self) -> ErrorContext {
        self.ctx.clone()
    }

    /// The step's `tracing` span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the step's outcome from its result.
    pub fn finish<T, E: Display>(mut self, result: &Result<T, E>) {
        let outcome = self.ctx.outcome_of(result);
        self.close(outcome);
    }

    fn close(&mut self, outcome: Outcome) {
        self.done = true;
        self.span.record("outcome", outcome_label(&outcome));
        if let Slot::Recorded(id) = self.ctx.slot {
            let now = self.ctx.shared.started.elapsed();
            self.ctx.tree().end(id, outcome, now);
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.done {
            let outcome = if std::thread::panicking() { Outcome::Panicked } else { Outcome::Cancelled };
            self.close(outcome);
        }
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Running => "running",
        Outcome::Ok => "ok",
        Outcome::Failed(_) => "failed",
        Outcome::Cancelled => "cancelled",
        Outcome::Panicked => "panicked",
    }
}

/// Cuts `text` to at most `limit` bytes on a char boundary; returns the full size if cut.
fn bounded(mut text: String, limit: usize) -> (String, Option<usize>) {
    if text.len() <= limit {
        return (text, None);
    }
    let full = text.len();
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    (text, Some(full))
}

#[cold]
fn unreachable_root(operation: &str) -> StepRecord {
    // The root is never evicted (eviction only removes children), so this is not reached; a
    // placeholder beats a panic in error-reporting code.
    StepRecord {
        name: operation.to_string(),
        start: std::time::Duration::ZERO,
        duration: std::time::Duration::ZERO,
        outcome: Outcome::Running,
        data: Vec::new(),
        first_children: Vec::new(),
        elided_children: 0,
        last_children: Vec::new(),
    }
}
