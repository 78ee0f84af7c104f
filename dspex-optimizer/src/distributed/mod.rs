//! Optimization as a service of the cluster: runs submitted from any node, done by the workers
//! of every serving node, their state in a replicated log (no shared disk).
//!
//! - **Serving** ([`Optimizations::start`], `foundation node --workers N`): a node keeps a
//!   replica of the service's log (`STATE_DIR/logs/dspex.optimizations.log`), declares the
//!   [scheduler](self::scheduler) singleton and runs up to `max_workers` workers, which take
//!   tasks of **any** run: no node needs to know a run in advance. Workers call the model the
//!   run names among the node's [`LanguageModels`], under the node's provider budget if it has
//!   one (so runs share it).
//! - **Submitting and following** ([`Optimizations::submit`], from any node of the cluster,
//!   serving or not, e.g. an observer): the spec (program, data, metric, model, seed, priority)
//!   travels whole and is recorded in the log; [`Run`] has `status`, `watch`, `stop`,
//!   `resume`, `result`. A spec (with its data) must fit one entry of the log: the cluster's
//!   frame limit (`cluster.max_frame_bytes`, 8 MiB by default) less 4 KiB.
//! - **Tasks**: one `Build` per candidate program (bootstrapping), then, as each candidate is
//!   built, `Eval` tasks of `batch_size` validation examples. Task ids are fixed by the spec.
//!   A result is recorded **once per task id** and **counts once it is committed** (on a
//!   majority of the known nodes' disks); a late or repeated one is ignored and counted.
//! - **Sharing**: runs with work get leases in proportion to their priorities (stride
//!   scheduling, [`scheduler`]).
//! - **Failures**: a lost node's leases go back to the queue as soon as the scheduler sees the
//!   node down (or back with a new session between two of its ticks: what the node sent on the
//!   old one may be lost), a hung worker's after [`LEASE_TIMEOUT`] (a little more for the later tasks of a
//!   lease); a lost scheduler is replaced on another serving node (the singleton's lease, about
//!   3 s) and replays the log; a whole cluster
//!   restarted replays it too. A run survives the loss of any minority of the nodes.
//! - the result is the same as [`RandomSearch::compile`](crate::optimizers::RandomSearch::compile)
//!   without `stop_at_score` on one node with the same seed: candidates are deterministic per
//!   seed and scores are summed in example order.

mod capacity;
mod entries;
mod plan;
pub mod scheduler;
mod spec;
pub mod spec_file;
mod state;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foundation_actors::channels::Channels;
use foundation_actors::wire::Wire;
use foundation_cluster::replicated_log::{LogConfig, LogError, ReplicatedLog};
use foundation_core::Cause;
use foundation_core::rate_limit::RateLimiter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::LanguageModels;
use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, SingletonHandle};

pub use capacity::{LEASE_SECS, MAX_LEASE};
pub use plan::{Plan, Planned, TaskAt};
pub use scheduler::{LEASE_TIMEOUT, LOG, PROGRESS_EVENT, PUBLISH_EVERY, RunResult, SCHEDULER, SCOPE, Status};
pub use spec::{
    EvaluationPlan, LocalResult, MAX_CANDIDATES, MAX_INSTRUCTIONS, MAX_PRIORITY, MAX_TASKS, Optimizer,
    Outcome, QUESTIONS_TRAIN, QUESTIONS_VAL, RunSpec, Task, TaskKind,
};
pub use spec_file::SpecFileError;
pub use state::{Calls, Done, Recorded, Stopped, TaskSet, Verdict};
pub use worker::SPECS_KEPT;

use scheduler::{Control, SchedMsg, Scheduler};

/// How long a client waits for the scheduler's answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the service could not start or answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// The spec names a model this node has not registered (the models' error).
    #[error("{0}")]
    Model(#[source] Cause),
    /// The service's log could not start on this node.
    #[error("{0}")]
    Log(#[source] LogError),
    /// No scheduler is visible (no serving node reached yet, or failing over).
    #[error(
        "no optimization scheduler is reachable (is a node serving with --workers, and is it reachable?)"
    )]
    NoScheduler,
    /// It did not answer in time.
    #[error("the optimization scheduler did not answer within {0:?}")]
    NoAnswer(Duration),
    /// It answered no, and why (no such run, a run of that name with another spec, ...).
    #[error("{0}")]
    Refused(String),
    /// The question or answer could not be sent (larger than `cluster.max_frame_bytes`).
    #[error("cannot send to the scheduler: {0}")]
    Unsendable(#[source] Cause),
    /// Not finished in time.
    #[error("run `{run}` not finished after {waited:?}")]
    Timeout {
        /// The run.
        run: String,
        /// How long was waited.
        waited: Duration,
    },
}

/// How a node serves.
#[derive(Clone)]
pub struct RunOptions {
    /// Fewest evaluation workers kept active on this node. Default 1.
    pub min_workers: usize,
    /// Most evaluation workers on this node (0: none; the node still keeps a replica of the
    /// log and may hold the scheduler). Default 4.
    pub max_workers: usize,
    /// Where this node's replica of the service's log lives. Default: `logs` in the node's
    /// state directory (`cluster.state_dir`). Never shared by two nodes (a lock refuses it).
    pub state_dir: Option<PathBuf>,
    /// `fsync` the log before a result counts (default). Off: a result survives the death of
    /// every process, not of every machine.
    pub fsync: bool,
    /// Channels to publish progress on (the built-in `telemetry` topic, event
    /// `optimization_progress`, about once a second per running run), from the scheduler's node.
    pub channels: Option<Channels>,
    /// The provider budget the models' calls wait on, if any: workers beyond what it lets
    /// through are parked rather than queued on it.
    pub budget: Option<RateLimiter>,
    /// Workers wanted over the whole cluster (`None`: no cluster-wide target): this node runs
    /// at most its share of them by speed (see [`Demand::share`]), within `max_workers`. Give
    /// the same on every node.
    pub cluster_workers: Option<usize>,
}

impl RunOptions {
    /// Up to `max_workers` workers, the log in the node's state directory, no channels, no budget.
    pub fn new(max_workers: usize) -> Self {
        RunOptions {
            min_workers: 1,
            max_workers,
            state_dir: None,
            fsync: true,
            channels: None,
            budget: None,
            cluster_workers: None,
        }
    }
}

/// How often a node re-sizes its active workers.
pub const SCALE_EVERY: Duration = Duration::from_millis(250);

/// What a node sizes its active workers by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Tasks queued or leased over every run.
    pub tasks: usize,
    /// This node's share of the cluster's speed (0 to 1): its evaluations per second per
    /// worker over every serving node's, as the scheduler measured them (`1 / nodes` before).
    pub share: f64,
    /// Callers waiting on the provider budget now.
    pub budget_waiting: usize,
    /// Workers active now.
    pub active: usize,
    /// This process uses every core (more workers would only wait for CPU).
    pub cpu_saturated: bool,
}

/// Active workers wanted on one node: its share (by speed) of the tasks queued or in flight;
/// fewer by the callers already waiting on the provider budget (more workers would only wait
/// too); no more than now while its CPU is saturated; within `min_workers..=max_workers`, and
/// within its share of [`RunOptions::cluster_workers`] if set.
pub fn workers_wanted(demand: &Demand, options: &RunOptions) -> usize {
    let share = if demand.share.is_finite() { demand.share.clamp(0.0, 1.0) } else { 0.0 };
    let mut max = options.max_workers.max(options.min_workers);
    if let Some(cluster) = options.cluster_workers {
        max = max.min(((cluster as f64 * share).ceil() as usize).max(options.min_workers));
    }
    let mut target = (demand.tasks as f64 * share).ceil() as usize;
    if demand.budget_waiting > 0 {
        target = target.min(demand.active.saturating_sub(demand.budget_waiting));
    }
    if demand.cpu_saturated {
        target = target.min(demand.active);
    }
    target.clamp(options.min_workers.min(max), max)
}

/// Whether this node's process uses (nearly) every core, by its latest health sample.
async fn cpu_saturated(cluster: &Cluster) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let health = cluster.health().await;
    health
        .nodes
        .iter()
        .find(|n| n.name == cluster.name())
        .and_then(|n| n.health.as_ref()?.cpu_percent)
        .is_some_and(|cpu| cpu >= 90.0 * cores)
}

/// Keeps the number of active workers in line with the queue, the node's speed, its CPU and the
/// budget.
async fn scale(cluster: Cluster, options: RunOptions, active: Arc<AtomicUsize>) {
    let mut ticks = 0u64;
    let mut saturated = false;
    loop {
        tokio::time::sleep(SCALE_EVERY).await;
        if ticks.is_multiple_of(4) {
            saturated = cpu_saturated(&cluster).await;
        }
        ticks += 1;
        let Ok(node) = question(&cluster.name().to_string(), cluster.max_frame_bytes()) else { continue };
        let Ok(load) = ask::<scheduler::Load>(|port| SchedMsg::Load(node, port)).await else { continue };
        let demand = Demand {
            tasks: load.queued + load.leased,
            share: load.share,
            budget_waiting: options.budget.as_ref().map_or(0, RateLimiter::waiting),
            active: active.load(Ordering::SeqCst),
            cpu_saturated: saturated,
        };
        let target = workers_wanted(&demand, &options);
        if active.swap(target, Ordering::SeqCst) != target {
            tracing::debug!(workers = target, share = load.share, "evaluation workers re-sized");
        }
    }
}

/// Asks the scheduler (its answers are bounded by the frame limit on its side).
async fn ask<T: Serialize + DeserializeOwned + Send + 'static>(
    message: impl FnOnce(ractor::RpcReplyPort<Wire<T>>) -> SchedMsg,
) -> Result<T, RunError> {
    let scheduler = worker::scheduler().ok_or(RunError::NoScheduler)?;
    match scheduler.call(message, Some(CLIENT_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(wire)) => {
            wire.into_inner().map_err(|e| RunError::Unsendable(Cause::new(e)))
        }
        _ => Err(RunError::NoAnswer(CLIENT_TIMEOUT)),
    }
}

/// Encodes a question for the scheduler within the frame limit.
fn question<T: Serialize + DeserializeOwned>(value: &T, max_bytes: usize) -> Result<Wire<T>, RunError> {
    let scheduler = worker::scheduler().ok_or(RunError::NoScheduler)?;
    Wire::encode(value, worker::limit_for(&scheduler, max_bytes))
        .map_err(|e| RunError::Unsendable(Cause::new(e)))
}

/// The optimization service on this node: its replica of the log, its part in the scheduler
/// singleton, its workers. Dropping it stops serving here.
pub struct Optimizations {
    _scheduler: SingletonHandle,
    _log: ReplicatedLog,
    workers: Vec<tokio::task::JoinHandle<()>>,
    active: Arc<AtomicUsize>,
}

impl Drop for Optimizations {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

/// This node's replica of the service's log, kept without serving (see
/// [`Optimizations::keep_replica`]). Dropping it stops the replica here.
#[derive(Debug)]
pub struct LogReplica {
    _log: ReplicatedLog,
}

impl Optimizations {
    /// Keeps this node's replica of the service's log without serving (no scheduler, no
    /// workers). The log's majority is of **all** the cluster's known nodes, so every node must
    /// keep a replica (serving or not), or the service loses its majority sooner: with `N`
    /// known nodes of which `R` keep replicas, it tolerates `R - (N / 2 + 1)` lost replicas.
    pub async fn keep_replica(cluster: &Cluster, options: &RunOptions) -> Result<LogReplica, RunError> {
        let mut config = LogConfig { fsync: options.fsync, ..LogConfig::new(LOG) };
        config.dir = options.state_dir.clone();
        Ok(LogReplica { _log: ReplicatedLog::start(cluster, config).await.map_err(RunError::Log)? })
    }

    /// Serves on this node: opens its replica of the service's log, declares the scheduler
    /// (a singleton on one serving node) and starts up to `options.max_workers` workers, which
    /// call models among `models` by the names runs give.
    ///
    /// Start it (or [`keep_replica`](Self::keep_replica)) on every node of the cluster: the log's
    /// majority is of all the known nodes.
    ///
    /// Workers scale with the queue: every [`SCALE_EVERY`] the node activates
    /// [`workers_wanted`] of them (its share by speed of the tasks queued or leased, fewer when
    /// the provider budget has callers waiting, within `min_workers..=max_workers`). A worker
    /// parked finishes the lease it holds first (about [`LEASE_SECS`] of work).
    pub async fn start(
        cluster: &Cluster,
        models: &LanguageModels,
        options: RunOptions,
    ) -> Result<Optimizations, RunError> {
        let mut config = LogConfig { fsync: options.fsync, ..LogConfig::new(LOG) };
        config.dir = options.state_dir.clone();
        let log = ReplicatedLog::start(cluster, config).await.map_err(RunError::Log)?;
        let (c, l, ch) = (cluster.clone(), log.clone(), options.channels.clone());
        let scheduler = SingletonHandle::start(
            cluster,
            SCHEDULER,
            ChildSpec::new(SCHEDULER, move || {
                (Scheduler { cluster: c.clone(), log: l.clone(), channels: ch.clone() }, ())
            }),
        );
        let max = if options.max_workers == 0 { 0 } else { options.max_workers.max(options.min_workers) };
        // Every worker active at first; the scaler parks those the queue does not need.
        let active = Arc::new(AtomicUsize::new(max));
        let shared = Arc::new(worker::Workers::new(
            cluster.name().to_string(),
            models.clone(),
            active.clone(),
            cluster.max_frame_bytes(),
        ));
        let mut workers: Vec<tokio::task::JoinHandle<()>> =
            (0..max).map(|i| tokio::spawn(worker::run(shared.clone(), i))).collect();
        if max > 0 {
            workers.push(tokio::spawn(scale(cluster.clone(), options, active.clone())));
        }
        Ok(Optimizations { _scheduler: scheduler, _log: log, workers, active })
    }

    /// Submits `spec` to the cluster's scheduler (from any node of the cluster); the [`Run`] to
    /// follow it. Submitting the same spec again is the same run; another spec under a name
    /// already used is refused. Errors: [`RunError::Refused`] (an invalid spec, a name taken, a
    /// spec too large for the log), [`RunError::NoScheduler`], [`RunError::NoAnswer`].
    pub async fn submit(cluster: &Cluster, spec: RunSpec) -> Result<Run, RunError> {
        spec.check().map_err(RunError::Refused)?;
        let max = cluster.max_frame_bytes();
        let wire = question(&spec, max)?;
        let id = ask(|port| SchedMsg::Submit(wire, port)).await?.map_err(RunError::Refused)?;
        Ok(Run { run_id: id, max_bytes: max })
    }

    /// [`submit`](Self::submit), trying again while no scheduler is reachable or it does not
    /// answer (a cluster that is starting, a scheduler failing over), until `timeout`.
    pub async fn submit_within(cluster: &Cluster, spec: RunSpec, timeout: Duration) -> Result<Run, RunError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match Self::submit(cluster, spec.clone()).await {
                Err(RunError::NoScheduler | RunError::NoAnswer(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    /// Every run the scheduler holds (results without their programs: ask the run for those).
    pub async fn list(cluster: &Cluster) -> Result<Vec<Status>, RunError> {
        let wire = question(&None::<String>, cluster.max_frame_bytes())?;
        ask(|port| SchedMsg::Status(wire, port)).await?.map_err(RunError::Refused)
    }

    /// The run `run_id` (whether it exists is known when it is asked something).
    pub fn run(cluster: &Cluster, run_id: &str) -> Run {
        Run { run_id: run_id.to_string(), max_bytes: cluster.max_frame_bytes() }
    }

    /// Workers active on this node now (the others are parked).
    pub fn active_workers(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

/// A submitted run, from a client's side: questions go to the scheduler, wherever it runs.
#[derive(Debug, Clone)]
pub struct Run {
    run_id: String,
    max_bytes: usize,
}

impl Run {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.run_id
    }

    /// Where it stands (with the best program once finished).
    pub async fn status(&self) -> Result<Status, RunError> {
        status(&self.run_id).await
    }

    /// Its status every `every` until it is finished or stopped (the last item is that status).
    pub fn watch(&self, every: Duration) -> RunWatch {
        RunWatch { run: self.clone(), every, over: false, first: true }
    }

    /// Stops it: no more tasks are handed out; what is recorded is kept (committed before this
    /// returns). Refused for a finished run.
    pub async fn stop(&self) -> Result<(), RunError> {
        self.control(Control::Stop).await
    }

    /// Resumes a stopped run where it stopped.
    pub async fn resume(&self) -> Result<(), RunError> {
        self.control(Control::Resume).await
    }

    async fn control(&self, control: Control) -> Result<(), RunError> {
        let wire = question(&(self.run_id.clone(), control), self.max_bytes)?;
        ask(|port| SchedMsg::Control(wire, port)).await?.map_err(RunError::Refused)
    }

    /// Its result: the best program and the scores, once finished (an error saying so before).
    pub async fn result(&self) -> Result<RunResult, RunError> {
        let status = self.status().await?;
        status.result.ok_or_else(|| {
            RunError::Refused(format!(
                "run `{}` is not finished ({} of {} evaluations{})",
                self.run_id,
                status.evaluations.1,
                status.evaluations.0,
                if status.stopped { ", stopped" } else { "" }
            ))
        })
    }

    /// Waits until it has a result (scheduler failovers included), at most `timeout`.
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
}

/// A run's status as it goes ([`Run::watch`]).
#[derive(Debug)]
pub struct RunWatch {
    run: Run,
    every: Duration,
    over: bool,
    first: bool,
}

impl RunWatch {
    /// The next status (after `every`; the first at once), `None` after the one that showed the
    /// run finished or stopped. A status that could not be had is an `Err` item (the scheduler
    /// failing over, say); the watch goes on.
    pub async fn next(&mut self) -> Option<Result<Status, RunError>> {
        if self.over {
            return None;
        }
        if !self.first {
            tokio::time::sleep(self.every).await;
        }
        self.first = false;
        let status = self.run.status().await;
        if let Ok(s) = &status {
            self.over = s.finished() || s.stopped;
        }
        Some(status)
    }
}

/// A run of the cluster on this node: the service ([`Optimizations::start`]) and the run
/// `spec`, submitted in the background until a scheduler takes it. What `foundation node
/// --optimize RUN` does.
pub struct RunHandle {
    service: Optimizations,
    run: Run,
    submitter: tokio::task::JoinHandle<()>,
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.submitter.abort();
    }
}

impl RunHandle {
    /// Serves on this node and submits `spec` (the same spec from every node is one run). The
    /// spec's model must be among `models` (an error before anything starts).
    pub async fn start(
        cluster: &Cluster,
        spec: RunSpec,
        models: &LanguageModels,
        options: RunOptions,
    ) -> Result<RunHandle, RunError> {
        models.get(&spec.lm).map_err(|e| RunError::Model(Cause::new(e)))?;
        spec.check().map_err(RunError::Refused)?;
        let service = Optimizations::start(cluster, models, options).await?;
        let run = Optimizations::run(cluster, &spec.run_id);
        let c = cluster.clone();
        let submitter = tokio::spawn(async move {
            loop {
                match Optimizations::submit_within(&c, spec.clone(), Duration::from_secs(3600)).await {
                    Ok(_) => return,
                    Err(e @ (RunError::Refused(_) | RunError::Unsendable(_))) => {
                        tracing::error!(run = %spec.run_id, error = %e, "the run cannot be submitted");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(run = %spec.run_id, error = %e, "the run could not be submitted yet");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(RunHandle { service, run, submitter })
    }

    /// The run.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Where the run stands.
    pub async fn status(&self) -> Result<Status, RunError> {
        self.run.status().await
    }

    /// Waits until the run has a result.
    pub async fn wait(&self, timeout: Duration) -> Result<RunResult, RunError> {
        self.run.wait(timeout).await
    }

    /// Stops the run (see [`Run::stop`]).
    pub async fn stop(&self) -> Result<(), RunError> {
        self.run.stop().await
    }

    /// Workers active on this node now.
    pub fn active_workers(&self) -> usize {
        self.service.active_workers()
    }
}

/// Where the run `run_id` stands (asked of the scheduler, wherever it runs; with the best
/// program once finished).
pub async fn status(run_id: &str) -> Result<Status, RunError> {
    let wire = question(&Some(run_id.to_string()), usize::MAX)?;
    let mut list = ask(|port| SchedMsg::Status(wire, port)).await?.map_err(RunError::Refused)?;
    list.pop().ok_or_else(|| RunError::Refused(format!("no run `{run_id}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_follow_the_queue_their_speed_and_give_way_to_the_budget() {
        let options = RunOptions { min_workers: 1, ..RunOptions::new(8) };
        let demand = |tasks, share, budget_waiting, cpu_saturated| Demand {
            tasks,
            share,
            budget_waiting,
            active: 8,
            cpu_saturated,
        };
        let third = 1.0 / 3.0;
        // Plenty of work on 3 equal nodes: all 8; a little: its share; none: the minimum.
        assert_eq!(workers_wanted(&demand(100, third, 0, false), &options), 8);
        assert_eq!(workers_wanted(&demand(10, third, 0, false), &options), 4);
        assert_eq!(workers_wanted(&demand(0, third, 0, false), &options), 1);
        // A node a quarter as fast as the rest takes a quarter of a short queue.
        assert_eq!(workers_wanted(&demand(12, 0.25, 0, false), &options), 3);
        assert_eq!(workers_wanted(&demand(12, 0.75, 0, false), &options), 8);
        // 5 callers already wait on the provider's budget: 3 workers do as much as 8.
        assert_eq!(workers_wanted(&demand(100, third, 5, false), &options), 3);
        assert_eq!(workers_wanted(&demand(100, third, 20, false), &options), 1);
        // A saturated CPU: no more than now.
        let busy = Demand { active: 2, ..demand(100, third, 0, true) };
        assert_eq!(workers_wanted(&busy, &options), 2);
        // A cluster-wide target of 12: this node's share of it.
        let capped = RunOptions { cluster_workers: Some(12), ..options.clone() };
        assert_eq!(workers_wanted(&demand(100, 0.25, 0, false), &capped), 3);
        assert_eq!(workers_wanted(&demand(100, 0.75, 0, false), &capped), 8);
        // The minimum holds, and never above the maximum; a share that is not a number is 0.
        let at_least_two = RunOptions { min_workers: 2, ..RunOptions::new(8) };
        assert_eq!(workers_wanted(&demand(0, 1.0, 0, false), &at_least_two), 2);
        let odd = RunOptions { min_workers: 5, ..RunOptions::new(3) };
        assert_eq!(workers_wanted(&Demand { active: 3, ..demand(100, 1.0, 0, false) }, &odd), 5);
        assert_eq!(workers_wanted(&demand(100, f64::NAN, 0, false), &options), 1);
    }
}
