//! Optimization distributed across a cluster.
//!
//! [`start_run`] on every node that takes part (with the same [`RunSpec`]) declares the run's
//! coordinator as a cluster singleton and starts evaluation workers on the node:
//!
//! - the **coordinator** cuts the run into tasks: one `Build` task per candidate program
//!   (bootstrapping), then, as each candidate is built, `Eval` tasks of `batch_size` validation
//!   examples. Task ids are fixed by the spec, so every coordinator of a run numbers them alike;
//! - **workers** pull leased tasks, do them and report; a result is recorded **once per task
//!   id** (a late or repeated one is counted as a duplicate and ignored);
//! - a **lost node's leases** go back to the queue as soon as the coordinator sees the node
//!   down (its failure detection), a hung worker's after [`LEASE_TIMEOUT`];
//! - what is done is **persisted** after every result (`STATE_DIR/RUN.json`, written
//!   atomically), so a coordinator restarted on another node after its node was lost resumes
//!   where the last one stopped (on one machine the nodes share the directory; across hosts it
//!   must be shared storage);
//! - the result is the same as [`RandomSearch::compile`](crate::optimizers::RandomSearch::compile)
//!   without `stop_at_score` on one node with the same seed: candidates are deterministic per
//!   seed and scores are summed in example order.

mod coordinator;
mod spec;
mod state;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::providers::LanguageModel;
use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, SingletonHandle};

pub use coordinator::{LEASE_TIMEOUT, RunResult, SCOPE, Status};
pub use spec::{Outcome, QUESTIONS_TRAIN, QUESTIONS_VAL, RunSpec, Task, TaskKind};
pub use state::Done;

use coordinator::{CoordMsg, Coordinator};

/// A run on this node: its workers and its share in the coordinator singleton.
pub struct RunHandle {
    run_id: String,
    _coordinator: SingletonHandle,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Why a run could not be asked something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// No coordinator is visible (none started yet, or failing over).
    #[error("run `{0}`: no coordinator is reachable")]
    NoCoordinator(String),
    /// It did not answer in time.
    #[error("run `{0}`: the coordinator did not answer")]
    NoAnswer(String),
    /// Not finished in time.
    #[error("run `{run}` not finished after {waited:?}")]
    Timeout {
        /// The run.
        run: String,
        /// How long was waited.
        waited: Duration,
    },
}

/// Takes part in the run `spec` on this node: declares its coordinator (a singleton, run on one
/// node) and starts `workers` evaluation workers here, which call `lm`. `state_dir` holds the
/// run's persisted state.
pub fn start_run(
    cluster: &Cluster,
    spec: RunSpec,
    lm: Arc<dyn LanguageModel>,
    workers: usize,
    state_dir: PathBuf,
) -> RunHandle {
    let spec = Arc::new(spec);
    let name = format!("dspex:{}", spec.run_id);
    let (s, c, d) = (spec.clone(), cluster.clone(), state_dir);
    let coordinator = cluster.start_singleton(
        &name,
        ChildSpec::new(name.clone(), move || {
            (Coordinator { spec: s.clone(), cluster: c.clone(), state_dir: d.clone() }, ())
        }),
    );
    let node = cluster.name().to_string();
    let workers =
        (0..workers).map(|_| tokio::spawn(worker::run(spec.clone(), lm.clone(), node.clone()))).collect();
    RunHandle { run_id: spec.run_id.clone(), _coordinator: coordinator, workers }
}

impl RunHandle {
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

    /// Stops the run: no more tasks are handed out (the state is kept).
    pub async fn stop(&self) -> Result<(), RunError> {
        let coordinator =
            worker::coordinator(&self.run_id).ok_or_else(|| RunError::NoCoordinator(self.run_id.clone()))?;
        match coordinator.call(CoordMsg::Stop, Some(Duration::from_secs(5))).await {
            Ok(ractor::rpc::CallResult::Success(_)) => Ok(()),
            _ => Err(RunError::NoAnswer(self.run_id.clone())),
        }
    }

    /// Workers on this node still running.
    pub fn active_workers(&self) -> usize {
        self.workers.iter().filter(|w| !w.is_finished()).count()
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
        Ok(ractor::rpc::CallResult::Success(wire)) => {
            wire.into_inner().map_err(|_| RunError::NoAnswer(run_id.into()))
        }
        _ => Err(RunError::NoAnswer(run_id.to_string())),
    }
}
