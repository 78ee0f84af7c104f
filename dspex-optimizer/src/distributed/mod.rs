//! Optimization distributed across a cluster.
//!
//! [`RunHandle::start`] on every node that takes part (with the same [`RunSpec`]) declares the run's
//! coordinator as a cluster singleton and starts evaluation workers on the node:
//!
//! - the **coordinator** cuts the run into tasks: one `Build` task per candidate program
//!   (bootstrapping), then, as each candidate is built, `Eval` tasks of `batch_size` validation
//!   examples. Task ids are fixed by the spec, so every coordinator of a run numbers them alike;
//! - **workers** pull leased tasks, do them and report; a result is recorded **once per task
//!   id** (a late or repeated one is counted as a duplicate and ignored);
//! - a **lost node's leases** go back to the queue as soon as the coordinator sees the node
//!   down (its failure detection), a hung worker's after [`LEASE_TIMEOUT`];
//! - workers **scale** with the queue and the provider budget ([`RunHandle::start`]); the coordinator
//!   publishes **progress** on the `telemetry` channel;
//! - what is done is **persisted** after every result (`STATE_DIR/RUN.json`, written
//!   atomically), so a coordinator restarted on another node after its node was lost resumes
//!   where the last one stopped (on one machine the nodes share the directory; across hosts it
//!   must be shared storage);
//! - the result is the same as [`RandomSearch::compile`](crate::optimizers::RandomSearch::compile)
//!   without `stop_at_score` on one node with the same seed: candidates are deterministic per
//!   seed and scores are summed in example order.

mod coordinator;
mod spec;
pub mod spec_file;
mod state;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foundation_actors::channels::Channels;
use foundation_core::Cause;
use foundation_core::rate_limit::RateLimiter;

use crate::LanguageModels;
use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, SingletonHandle};

pub use coordinator::{LEASE_TIMEOUT, PROGRESS_EVENT, PUBLISH_EVERY, RunResult, SCOPE, Status};
pub use spec::{Outcome, QUESTIONS_TRAIN, QUESTIONS_VAL, RunSpec, Task, TaskKind};
pub use spec_file::SpecFileError;
pub use state::Done;

use coordinator::{CoordMsg, RunCoordinator};

/// A run on this node: its workers and its share in the coordinator singleton.
pub struct RunHandle {
    run_id: String,
    _coordinator: SingletonHandle,
    workers: Vec<tokio::task::JoinHandle<()>>,
    active: Arc<AtomicUsize>,
}

/// Why a run could not be asked something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The spec names a model this node has not registered (the models' error).
    #[error("{0}")]
    Model(#[source] Cause),
    /// No coordinator is visible (none started yet, or failing over).
    #[error("run `{0}`: no coordinator is reachable")]
    NoCoordinator(String),
    /// It did not answer in time.
    #[error("run `{0}`: the coordinator did not answer")]
    NoAnswer(String),
    /// Its answer could not be sent (larger than `cluster.max_frame_bytes`).
    #[error("run `{run}`: the coordinator's answer could not be sent: {source}")]
    Unsendable {
        /// The run.
        run: String,
        /// Why (the coordinator's error, as its message: it crossed from the coordinator's node).
        #[source]
        source: Cause,
    },
    /// Not finished in time.
    #[error("run `{run}` not finished after {waited:?}")]
    Timeout {
        /// The run.
        run: String,
        /// How long was waited.
        waited: Duration,
    },
}

/// How a node takes part in a run.
#[derive(Clone)]
pub struct RunOptions {
    /// Fewest evaluation workers kept active on this node. Default 1.
    pub min_workers: usize,
    /// Most evaluation workers on this node. Default 4.
    pub max_workers: usize,
    /// Where the run's state is persisted (shared by the nodes of one machine).
    pub state_dir: PathBuf,
    /// Channels to publish progress on (the built-in `telemetry` topic, event
    /// `optimization_progress`, about once a second), from the node that holds the coordinator.
    pub channels: Option<Channels>,
    /// The provider budget the model's calls wait on, if any: workers beyond what it lets
    /// through are parked rather than queued on it.
    pub budget: Option<RateLimiter>,
}

impl RunOptions {
    /// Up to `max_workers` workers, state in `state_dir`, no channels, no budget.
    pub fn new(max_workers: usize, state_dir: impl Into<PathBuf>) -> Self {
        RunOptions { min_workers: 1, max_workers, state_dir: state_dir.into(), channels: None, budget: None }
    }
}

/// How often a node re-sizes its active workers.
pub const SCALE_EVERY: Duration = Duration::from_millis(250);

/// Active workers wanted on one node: its share of the tasks queued or in flight, fewer by the
/// callers already waiting on the provider budget (more workers would only wait too), within
/// `min_workers..=max_workers`.
pub fn workers_wanted(
    tasks: usize,
    nodes: usize,
    budget_waiting: usize,
    active: usize,
    options: &RunOptions,
) -> usize {
    let max = options.max_workers.max(options.min_workers);
    let mut target = tasks.div_ceil(nodes.max(1));
    if budget_waiting > 0 {
        target = target.min(active.saturating_sub(budget_waiting));
    }
    target.clamp(options.min_workers.min(max), max)
}

/// Keeps the number of active workers in line with the queue and the budget.
async fn scale(run_id: String, cluster: Cluster, options: RunOptions, active: Arc<AtomicUsize>) {
    loop {
        tokio::time::sleep(SCALE_EVERY).await;
        let Ok(status) = status(&run_id).await else { continue };
        if status.result.is_some() || status.stopped {
            return;
        }
        let waiting = options.budget.as_ref().map_or(0, RateLimiter::waiting);
        let current = active.load(Ordering::SeqCst);
        let target =
            workers_wanted(status.queued + status.leased, cluster.up().len() + 1, waiting, current, &options);
        if active.swap(target, Ordering::SeqCst) != target {
            tracing::debug!(run = %run_id, workers = target, "evaluation workers re-sized");
        }
    }
}

impl RunHandle {
    /// Takes part in the run `spec` on this node: declares its coordinator (a singleton, run on one
    /// node) and starts evaluation workers here, which call the model `spec.lm` names among
    /// `models` (an unknown name is an error, before anything starts).
    ///
    /// Workers scale with the run: every [`SCALE_EVERY`] the node activates
    /// `clamp(queued tasks / nodes up, min_workers, max_workers)` of them, fewer when the provider
    /// budget has callers waiting (more workers would only wait on it too). A parked worker holds no
    /// lease.
    pub fn start(
        cluster: &Cluster,
        spec: RunSpec,
        models: &LanguageModels,
        options: RunOptions,
    ) -> Result<RunHandle, RunError> {
        let lm = models.get(&spec.lm).map_err(|e| RunError::Model(Cause::new(e)))?;
        let spec = Arc::new(spec);
        let name = format!("dspex:{}", spec.run_id);
        let (s, c, d, ch) =
            (spec.clone(), cluster.clone(), options.state_dir.clone(), options.channels.clone());
        let coordinator = SingletonHandle::start(
            cluster,
            &name,
            ChildSpec::new(name.clone(), move || {
                (
                    RunCoordinator {
                        spec: s.clone(),
                        cluster: c.clone(),
                        state_dir: d.clone(),
                        channels: ch.clone(),
                    },
                    (),
                )
            }),
        );
        let node = cluster.name().to_string();
        let max_bytes = cluster.max_frame_bytes();
        let max = options.max_workers.max(options.min_workers);
        // Every worker active at first; the scaler parks those the queue does not need.
        let active = Arc::new(AtomicUsize::new(max));
        let mut workers: Vec<tokio::task::JoinHandle<()>> = (0..max)
            .map(|i| {
                tokio::spawn(worker::run(
                    spec.clone(),
                    lm.clone(),
                    node.clone(),
                    i,
                    active.clone(),
                    max_bytes,
                ))
            })
            .collect();
        workers.push(tokio::spawn(scale(spec.run_id.clone(), cluster.clone(), options, active.clone())));
        Ok(RunHandle { run_id: spec.run_id.clone(), _coordinator: coordinator, workers, active })
    }

    /// Where the run stands (asked of its coordinator, wherever it runs).
    pub async fn status(&self) -> Result<Status, RunError> {
        status(&self.run_id).await
    }

    /// Waits until the run has a result.
    pub async fn wait(&self, timeout: Duration) -> Result<RunResult, RunError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Status { result: Some(result), .. }) = self.status().await {
                return Ok(result);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RunError::Timeout { run: self.run_id.clone(), waited: timeout });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the run: no more tasks are handed out (the state is kept; the next coordinator
    /// started for the run, e.g. when the nodes are started again, resumes it).
    pub async fn stop(&self) -> Result<(), RunError> {
        let coordinator =
            worker::coordinator(&self.run_id).ok_or_else(|| RunError::NoCoordinator(self.run_id.clone()))?;
        match coordinator.call(CoordMsg::Stop, Some(Duration::from_secs(5))).await {
            Ok(ractor::rpc::CallResult::Success(_)) => Ok(()),
            _ => Err(RunError::NoAnswer(self.run_id.clone())),
        }
    }

    /// Workers active on this node now (the others are parked, or the run is over).
    pub fn active_workers(&self) -> usize {
        if self.workers.iter().all(|w| w.is_finished()) { 0 } else { self.active.load(Ordering::SeqCst) }
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

/// Where the run `run_id` stands.
pub async fn status(run_id: &str) -> Result<Status, RunError> {
    let coordinator =
        worker::coordinator(run_id).ok_or_else(|| RunError::NoCoordinator(run_id.to_string()))?;
    match coordinator.call(CoordMsg::Status, Some(Duration::from_secs(5))).await {
        Ok(ractor::rpc::CallResult::Success(wire)) => match wire.into_inner() {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(RunError::Unsendable { run: run_id.to_string(), source: e.into() }),
            Err(_) => Err(RunError::NoAnswer(run_id.to_string())),
        },
        _ => Err(RunError::NoAnswer(run_id.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_follow_the_queue_and_give_way_to_the_budget() {
        let options = RunOptions { min_workers: 1, ..RunOptions::new(8, "/tmp") };
        // Plenty of work on 3 nodes: all 8; a little: its share; none: the minimum.
        assert_eq!(workers_wanted(100, 3, 0, 8, &options), 8);
        assert_eq!(workers_wanted(10, 3, 0, 8, &options), 4);
        assert_eq!(workers_wanted(0, 3, 0, 8, &options), 1);
        // 5 callers already wait on the provider's budget: 3 workers do as much as 8.
        assert_eq!(workers_wanted(100, 3, 5, 8, &options), 3);
        assert_eq!(workers_wanted(100, 3, 20, 8, &options), 1);
        // The minimum holds, and never above the maximum.
        let at_least_two = RunOptions { min_workers: 2, ..RunOptions::new(8, "/tmp") };
        assert_eq!(workers_wanted(0, 1, 0, 8, &at_least_two), 2);
        let odd = RunOptions { min_workers: 5, ..RunOptions::new(3, "/tmp") };
        assert_eq!(workers_wanted(100, 1, 0, 3, &odd), 5);
    }
}
