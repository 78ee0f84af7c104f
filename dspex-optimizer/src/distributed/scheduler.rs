//! The optimization service's scheduler: a cluster singleton (`dspex:scheduler`, run on one of
//! the nodes that serve) that holds every run, leases their tasks to the workers of every node
//! by priority, records each result once in the replicated log before it counts, and answers
//! clients (submit, status, list, stop, resume, result).
//!
//! **State.** Everything is in the log `dspex.optimizations` (see
//! [`replicated_log`](foundation_cluster::replicated_log)): submissions (the whole spec),
//! results, stops and resumes. A scheduler that starts (first, or after failover to another node)
//! leads the log under its singleton lease's fencing token, replays it and goes on: tasks are
//! numbered by the spec, so it knows which are left. A worker's result is acknowledged only once
//! its entry is committed (on a majority of the known nodes' disks); a result not acknowledged is
//! reported again, to this scheduler or the next.
//!
//! **Sharing** (stride scheduling): each run has a *pass*; a lease goes to the run with work
//! whose pass is lowest (ties: the first by name), whose pass then grows by the task's
//! evaluations (1 for a build, although bootstrapping calls the model several times) divided by
//! its priority, and shrinks back when the lease is returned unused. Runs with work thus get
//! evaluations in proportion to their priorities, whatever their sizes; a run that gets work
//! again (submitted, resumed, or its builds done) starts at the lowest pass of the others, so
//! it catches up on nothing.
//!
//! **Repeats** (a worker reporting again, a client submitting again after no answer) are
//! answered only once the first one's entry is committed. A result too large for a log entry
//! fails its run (recorded, shown in its status) rather than the scheduler.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::channels::{Channels, SystemEvent, telemetry};
use foundation_actors::wire::{Wire, WireError};
use foundation_cluster::Cluster;
use foundation_cluster::replicated_log::{ReplicatedLog, Writer};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::capacity::Capacity;
use super::entries::{Entry, decode, encode};
use super::plan::{Plan, TaskAt};
use super::spec::{Outcome, RunSpec, Task, TaskKind};
use super::state::{Calls, Done, Recorded, Verdict};
use crate::program::Program;

/// The pg scope of the scheduler (group [`SCHEDULER`]).
pub const SCOPE: &str = foundation_actors::pg_scopes::RUNS;
/// The scheduler singleton's name (and its pg group).
pub const SCHEDULER: &str = "dspex:scheduler";
/// The replicated log of the optimization service.
pub const LOG: &str = "dspex.optimizations";
/// A leased task not reported within this long goes back to the queue (a worker that hangs; a
/// lost node's leases go back as soon as the node is seen down, or seen back with a new
/// session). Long, because a task of a
/// real model under a rate limit can take minutes; a result that arrives after its task was
/// leased again still counts (the later one is a duplicate).
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the scheduler checks leases.
const TICK: Duration = Duration::from_millis(200);
/// How often progress goes out on the telemetry channel.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// The `kind` of progress events on the telemetry channel (their `data` is a [`Status`]).
pub const PROGRESS_EVENT: &str = "optimization_progress";

/// A worker's request for work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaseRequest {
    pub(crate) node: String,
    pub(crate) max: usize,
}

/// Work (each task with its run), or none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaseReply {
    pub(crate) tasks: Vec<(String, Task)>,
    /// Why no task was leased although some are waiting (the task does not fit a message to
    /// the asker's node: it is left for a worker on the scheduler's node).
    pub(crate) refused: Option<String>,
}

/// A finished task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Completion {
    pub(crate) run: String,
    pub(crate) node: String,
    pub(crate) task: Task,
    pub(crate) outcome: Outcome,
    /// How long the worker spent on it.
    pub(crate) work: Duration,
    /// The model calls it made.
    pub(crate) calls: Calls,
}

/// The work there is, and a node's share of the cluster's speed ([`Capacity`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Load {
    pub(crate) queued: usize,
    pub(crate) leased: usize,
    pub(crate) share: f64,
}

/// What a client asks of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Control {
    Stop,
    Resume,
}

/// The final result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The best candidate's key (the first of equals, in the optimizer's order; see
    /// [`Planned::key`](super::Planned::key)): DSPy's seed for a random search.
    pub best_seed: i64,
    /// Its mean score on the validation set.
    pub best_score: f64,
    /// The best program.
    pub best_program: Program,
    /// Every fully scored candidate's mean score, in candidate order.
    pub scores: Vec<(i64, f64)>,
    /// Candidates stopped early by halving: (key, examples scored, mean on them).
    pub stopped_early: Vec<(i64, usize, f64)>,
    /// Evaluations recorded (each once).
    pub evaluations: usize,
    /// Evaluations a full evaluation would have made and this run did not (halving).
    pub evaluations_saved: usize,
    /// Model calls the recorded tasks made, and how many of them the call cache answered.
    pub calls: Calls,
    /// Tasks completed per node.
    pub tasks_by_node: BTreeMap<String, usize>,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The run.
    pub run_id: String,
    /// Its priority.
    pub priority: u32,
    /// Tasks in all (as things stand: halving stops candidates), and done.
    pub tasks: (usize, usize),
    /// Evaluations in all (candidates × validation examples, less those of candidates halving
    /// stopped), and done.
    pub evaluations: (usize, usize),
    /// Best fully evaluated candidate so far: (seed, mean score).
    pub best: Option<(i64, f64)>,
    /// Evaluations per second since this scheduler started (or the run was resumed).
    pub evals_per_sec: f64,
    /// The same, per node whose workers recorded evaluations.
    pub evals_per_sec_by_node: BTreeMap<String, f64>,
    /// Estimated seconds left at that rate.
    pub eta_secs: Option<f64>,
    /// Results that arrived for tasks already recorded (ignored).
    pub duplicates: u64,
    /// Leases given back because their node was lost or they timed out.
    pub requeued: u64,
    /// Tasks waiting for a worker.
    pub queued: usize,
    /// Tasks leased to workers now.
    pub leased: usize,
    /// Tasks this scheduler found recorded in the log when it started.
    pub resumed: usize,
    /// Stopped before finishing.
    pub stopped: bool,
    /// Time workers spent on the recorded tasks, summed: what one worker would have taken.
    pub work_secs: f64,
    /// Model calls the recorded tasks made, and how many of them the call cache answered.
    pub calls: Calls,
    /// Nodes that cannot do this run's tasks (its model or metric is not registered there).
    pub refused_by: Vec<String>,
    /// Why the run failed (a result too large to record): it is stopped.
    pub failed: Option<String>,
    /// The node whose scheduler answered.
    pub scheduler: String,
    /// The result, once finished.
    pub result: Option<RunResult>,
}

impl Status {
    /// Finished (every task recorded).
    pub fn finished(&self) -> bool {
        self.result.is_some()
    }
}

/// The results a copy of the service's log holds, as (run, task id), in log order: what a
/// checker counts to see each task recorded once ([`ReplicatedLog::read_replica`] reads a
/// stopped node's copy). Entries that do not read are left out.
pub fn logged_results(entries: &[foundation_cluster::replicated_log::Entry]) -> Vec<(String, u64)> {
    entries
        .iter()
        .filter_map(|e| match decode(&e.data) {
            Ok(Entry::Result { run, record }) => Some((run, record.task)),
            _ => None,
        })
        .collect()
}

#[derive(RactorClusterMessage)]
pub(crate) enum SchedMsg {
    Tick,
    /// A commit failed: the scheduler stops (the next one replays the log).
    Failed(String),
    #[rpc]
    Lease(Wire<LeaseRequest>, RpcReplyPort<Wire<LeaseReply>>),
    #[rpc]
    Complete(Wire<Completion>, RpcReplyPort<Wire<bool>>),
    /// A run's spec, for workers.
    #[rpc]
    Spec(Wire<String>, RpcReplyPort<Wire<Result<RunSpec, String>>>),
    /// A new run: its id, or why not.
    #[rpc]
    Submit(Wire<RunSpec>, RpcReplyPort<Wire<Result<String, String>>>),
    #[rpc]
    Control(Wire<(String, Control)>, RpcReplyPort<Wire<Result<(), String>>>),
    /// One run's status, or every run's (with `None`; results without programs).
    #[rpc]
    Status(Wire<Option<String>>, RpcReplyPort<Wire<Result<Vec<Status>, String>>>),
    /// Tasks queued and leased, over every run, and the asking node's share of the speed (what
    /// nodes size their workers by).
    #[rpc]
    Load(Wire<String>, RpcReplyPort<Wire<Load>>),
}

pub(crate) struct Scheduler {
    pub(crate) cluster: Cluster,
    pub(crate) log: ReplicatedLog,
    pub(crate) channels: Option<Channels>,
}

struct Run {
    spec: Arc<RunSpec>,
    plan: Arc<Plan>,
    /// The log index of its submission (a repeated submit is answered once it is committed).
    submitted_at: u64,
    /// The log index of its last stop, resume or failure (a repeat is answered once committed).
    control_at: u64,
    /// The log index of its last entry: its result shows once the log is committed up to it.
    last_logged: u64,
    /// Its end (result or stop) was published on the telemetry channel: no more progress events.
    announced_end: bool,
    failed: Option<String>,
    /// Planned by another version (its tasks numbered otherwise): failed for good, and why.
    foreign: Option<String>,
    done: Done,
    /// Task ids waiting (made whole when leased).
    pending: VecDeque<u64>,
    leased: BTreeMap<u64, (Task, String, Instant)>,
    stopped: bool,
    pass: f64,
    /// When this scheduler started following it, and its evaluations then (for the rate).
    since: Instant,
    evals_since: usize,
    /// Its evaluations per node then.
    evals_since_by_node: BTreeMap<String, usize>,
    requeued: u64,
    resumed: usize,
    refused_by: BTreeSet<String>,
    oversized: BTreeSet<u64>,
    /// Tasks leased a second time as backups (the tail), to which node, until one result is in.
    backups: BTreeMap<u64, String>,
    /// Nodes that sent a result that was not their task's: none of their results counts.
    untrusted: BTreeSet<String>,
}

impl Run {
    fn new(spec: RunSpec, submitted_at: u64) -> Run {
        let plan = Plan::new(&spec);
        Run {
            done: Done::new(&plan),
            plan: Arc::new(plan),
            spec: Arc::new(spec),
            submitted_at,
            control_at: submitted_at,
            last_logged: submitted_at,
            announced_end: false,
            failed: None,
            foreign: None,
            pending: VecDeque::new(),
            leased: BTreeMap::new(),
            stopped: false,
            pass: 0.0,
            since: Instant::now(),
            evals_since: 0,
            evals_since_by_node: BTreeMap::new(),
            requeued: 0,
            resumed: 0,
            refused_by: BTreeSet::new(),
            oversized: BTreeSet::new(),
            backups: BTreeMap::new(),
            untrusted: BTreeSet::new(),
        }
    }

    fn finished(&self) -> bool {
        self.done.finished(&self.plan)
    }

    fn has_work(&self) -> bool {
        !self.stopped && !self.pending.is_empty()
    }

    /// A lease given back unused (refused, lost, timed out): its cost comes off the run's pass
    /// and the task goes to the front of the queue, unless it is recorded or the run stopped.
    fn give_back(&mut self, task: &Task) {
        if !self.done.has(task.id) && !self.stopped {
            self.pass -= cost(task) / f64::from(self.spec.priority.max(1));
            self.pending.push_front(task.id);
        }
    }

    /// Queues the batches of the candidate at `position` from batch `from` up to the round now
    /// that are not recorded (if it is built and still in).
    fn queue_candidate(&mut self, position: usize, from: usize) {
        let Some(&upto) = self.plan.rounds().get(self.done.round()) else { return };
        let candidate = &self.plan.candidates()[position];
        if self.done.stopped(position).is_some()
            || self.done.built(self.plan.builds()[candidate.build]).is_none()
        {
            return;
        }
        for id in self.plan.eval_ids(position, from.min(upto)..upto) {
            if !self.done.has(id) {
                self.pending.push_back(id);
            }
        }
    }

    /// The queue from what is recorded: builds not done, and the batches of the round now of
    /// built candidates still in.
    fn requeue_all(&mut self) {
        self.pending.clear();
        self.leased.clear();
        self.backups.clear();
        for i in 0..self.plan.builds().len() as u64 {
            if !self.done.has(i) {
                self.pending.push_back(i);
            }
        }
        for position in 0..self.plan.candidates().len() {
            self.queue_candidate(position, 0);
        }
    }

    fn means(&self) -> Vec<(i64, f64)> {
        self.plan.candidates().iter().filter_map(|c| self.done.mean(c.key).map(|m| (c.key, m))).collect()
    }

    /// Its status; its result only once it is finished and the log is committed up to its last
    /// entry (`committed`), so a result seen is a result kept.
    fn status(&self, with_program: bool, scheduler: &str, committed: u64) -> Status {
        let means = self.means();
        let best = means.iter().fold(None, |best: Option<(i64, f64)>, (seed, m)| match best {
            Some((_, b)) if b >= *m => best,
            _ => Some((*seed, *m)),
        });
        let evals_total = self.done.evaluations_planned(&self.plan);
        let evals_done = self.done.evaluations();
        let elapsed = self.since.elapsed().as_secs_f64();
        let rate = if self.stopped {
            0.0
        } else {
            (evals_done - self.evals_since.min(evals_done)) as f64 / elapsed.max(1e-3)
        };
        let eta = (rate > 0.0).then(|| (evals_total - evals_done) as f64 / rate);
        let result = (self.finished() && self.last_logged <= committed).then(|| {
            let (best_seed, best_score) = best.unwrap_or((0, 0.0));
            let mut best_program = self
                .plan
                .position(best_seed)
                .and_then(|p| {
                    let built = self.done.built(self.plan.builds()[self.plan.candidates()[p].build])?;
                    Some(self.plan.program_of(p, built))
                })
                .unwrap_or_else(|| self.spec.student.clone());
            if !with_program {
                best_program.predictors.clear();
            }
            RunResult {
                best_seed,
                best_score,
                best_program,
                scores: means.clone(),
                stopped_early: (0..self.plan.candidates().len())
                    .filter_map(|p| {
                        let s = self.done.stopped(p)?;
                        Some((self.plan.candidates()[p].key, s.examples, s.mean))
                    })
                    .collect(),
                evaluations: evals_done,
                evaluations_saved: (self.plan.candidates().len() * self.plan.examples())
                    .saturating_sub(evals_total),
                calls: self.done.calls,
                tasks_by_node: self.done.by_node().clone(),
            }
        });
        Status {
            run_id: self.spec.run_id.clone(),
            priority: self.spec.priority,
            tasks: (self.done.tasks_planned(&self.plan), self.done.tasks_done()),
            evaluations: (evals_total, evals_done),
            best,
            evals_per_sec: rate,
            evals_per_sec_by_node: self
                .done
                .evals_by_node()
                .iter()
                .map(|(node, n)| {
                    let then = self.evals_since_by_node.get(node).copied().unwrap_or(0);
                    let per_sec =
                        if self.stopped { 0.0 } else { n.saturating_sub(then) as f64 / elapsed.max(1e-3) };
                    (node.clone(), per_sec)
                })
                .collect(),
            eta_secs: eta,
            duplicates: self.done.duplicates,
            requeued: self.requeued,
            queued: self.pending.len(),
            leased: self.leased.len(),
            resumed: self.resumed,
            stopped: self.stopped,
            work_secs: self.done.work_ms as f64 / 1000.0,
            calls: self.done.calls,
            refused_by: self.refused_by.iter().cloned().collect(),
            failed: self.failed.clone(),
            scheduler: scheduler.to_string(),
            result,
        }
    }
}

pub(crate) struct SchedState {
    writer: Writer,
    runs: BTreeMap<String, Run>,
    /// Each node's speed, from its results.
    capacity: Capacity,
    published: Instant,
    /// Results logged and not yet known committed, by (run, task): their entries' indexes.
    uncommitted: BTreeMap<(String, u64), u64>,
    /// When each node up at the last tick came up: a node that went down and came back between
    /// two ticks (its session replaced: what it was sending on the old one is lost) shows a
    /// later time, and its leases go back to the queue as if it had been seen down.
    up_since: BTreeMap<String, std::time::SystemTime>,
}

impl SchedState {
    /// A task held by a slower node that `node` would finish sooner, leased to it as a backup
    /// (at most one backup per task).
    fn backup_for(&mut self, node: &str) -> Option<(String, Task)> {
        let capacity = &self.capacity;
        for (id, run) in &mut self.runs {
            if run.stopped || run.refused_by.contains(node) {
                continue;
            }
            let found = run.leased.iter().find(|(task_id, (task, holder, deadline))| {
                !run.backups.contains_key(task_id)
                    && capacity.worth_backup(holder, *deadline - LEASE_TIMEOUT, node, cost(task))
            });
            if let Some((task_id, (task, _, _))) = found {
                let (task_id, task) = (*task_id, task.clone());
                run.backups.insert(task_id, node.to_string());
                return Some((id.clone(), task));
            }
        }
        None
    }

    /// The lowest pass among runs with work (where a run that gets work again starts).
    fn floor(&self, except: &str) -> f64 {
        self.runs
            .iter()
            .filter(|(id, r)| id.as_str() != except && r.has_work())
            .map(|(_, r)| r.pass)
            .fold(f64::INFINITY, f64::min)
    }

    /// A run that gets work again starts at the floor (never below its own pass).
    fn rejoin(&mut self, run: &str) {
        let floor = self.floor(run);
        if let Some(r) = self.runs.get_mut(run)
            && floor.is_finite()
        {
            r.pass = r.pass.max(floor);
        }
    }

    /// The run whose task goes next to `node`.
    fn next_run(&self, node: &str) -> Option<String> {
        self.runs
            .iter()
            .filter(|(_, r)| r.has_work() && !r.refused_by.contains(node))
            .min_by(|a, b| a.1.pass.total_cmp(&b.1.pass))
            .map(|(id, _)| id.clone())
    }
}

/// Tasks with their runs.
type RunTasks = Vec<(String, Task)>;

/// Tasks a lease reply could not carry.
pub(crate) struct Unsent {
    /// The tasks, in their lease order.
    pub(crate) tasks: RunTasks,
    /// Why (the frame limit).
    pub(crate) error: WireError,
    /// Each fits alone and some were sent: they were only deferred (not too large).
    pub(crate) deferred: bool,
}

/// The answer to a lease of `tasks`, if it fits `max_bytes`; otherwise an answer that leases
/// nothing and says why, with the tasks given back (for the queue) and the error.
pub(crate) fn lease_reply(mut tasks: RunTasks, max_bytes: usize) -> (Wire<LeaseReply>, Option<Unsent>) {
    // As many tasks as fit, from the first: the rest go back to the queue.
    let mut given_back: RunTasks = Vec::new();
    let mut first_error = None;
    loop {
        let reply = LeaseReply { tasks, refused: None };
        match Wire::encode(&reply, max_bytes) {
            Ok(wire) => {
                given_back.reverse();
                let unsent = first_error.map(|error| Unsent { tasks: given_back, error, deferred: true });
                return (wire, unsent);
            }
            Err(e) if reply.tasks.len() <= 1 => {
                let refused = LeaseReply {
                    tasks: Vec::new(),
                    refused: Some(format!("the task does not fit a message to this node: {e}")),
                };
                let answer = Wire::encode_or(&refused, max_bytes, |_| LeaseReply {
                    tasks: Vec::new(),
                    refused: Some("the task does not fit a message to this node".into()),
                });
                let mut back = reply.tasks;
                given_back.reverse();
                back.extend(given_back);
                return (answer, Some(Unsent { tasks: back, error: e, deferred: false }));
            }
            Err(e) => {
                first_error.get_or_insert(e);
                let mut rest = reply.tasks;
                if let Some(last) = rest.pop() {
                    given_back.push(last);
                }
                tasks = rest;
            }
        }
    }
}

/// An answer within `max_bytes`, or the error (as text) if it does not fit.
fn fitted<T: Serialize + serde::de::DeserializeOwned + Clone>(
    value: Result<T, String>,
    max_bytes: usize,
    what: &str,
) -> Wire<Result<T, String>> {
    Wire::encode_or(&value, max_bytes, |e| {
        tracing::warn!(error = %e, "{what} too large to send");
        Err(format!("the {what} does not fit a message: {e}"))
    })
}

/// How much a task counts against its run's share: its evaluations (a build: 1).
fn cost(task: &Task) -> f64 {
    match &task.kind {
        TaskKind::Build { .. } => 1.0,
        TaskKind::Eval { examples, .. } => examples.len().max(1) as f64,
    }
}

impl Scheduler {
    fn apply(state: &mut SchedState, entry: Entry, index: u64) {
        match entry {
            Entry::Submitted { spec, plan } => {
                // A spec this version would not take (older limits) is left out, not a scheduler
                // that fails on it at every start.
                if let Err(why) = spec.check() {
                    tracing::error!(run = %spec.run_id, %why, "a submitted run is not valid: left out");
                    return;
                }
                let id = spec.run_id.clone();
                let run = state.runs.entry(id.clone()).or_insert_with(|| Run::new(spec, index));
                if let Some(logged) = plan
                    && logged != run.plan.digest()
                {
                    // Its tasks were numbered otherwise: its results would be credited to other
                    // candidates. Failed for good, with the reason.
                    let why = format!(
                        "run `{id}` was planned by another version of the service (plan {logged:016x}, this \
                         version's {:016x}): its results cannot be read; submit it again under another name",
                        run.plan.digest()
                    );
                    tracing::error!(run = %id, %why, "a run of another plan: failed");
                    run.foreign = Some(why.clone());
                    run.failed = Some(why);
                    run.stopped = true;
                }
            }
            Entry::Failed { run, reason } => {
                if let Some(r) = state.runs.get_mut(&run) {
                    r.stopped = true;
                    r.failed = Some(reason);
                    r.control_at = index;
                }
            }
            Entry::Result { run, record } => {
                if let Some(r) = state.runs.get_mut(&run)
                    && r.foreign.is_none()
                {
                    let plan = r.plan.clone();
                    r.done.apply(&plan, record);
                }
            }
            Entry::Stopped { run } => {
                if let Some(r) = state.runs.get_mut(&run) {
                    r.stopped = true;
                    r.control_at = index;
                }
            }
            Entry::Resumed { run } => {
                if let Some(r) = state.runs.get_mut(&run)
                    && r.foreign.is_none()
                {
                    r.stopped = false;
                    r.failed = None;
                    r.control_at = index;
                }
            }
        }
    }

    /// Appends `entry` and answers `reply` with `answer` once it is committed; a failed append or
    /// commit stops the scheduler (its state is ahead of the log: the next one replays it).
    fn log_then<T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
        myself: &ActorRef<SchedMsg>,
        state: &SchedState,
        entry: &Entry,
        reply: RpcReplyPort<Wire<T>>,
        answer: T,
    ) -> Result<u64, String> {
        let bytes = encode(entry).map_err(|e| e.to_string())?;
        let commit = state.writer.append(bytes).map_err(|e| e.to_string())?;
        let index = commit.index();
        Self::answer_when(myself, self.cluster.max_frame_bytes(), commit, reply, answer);
        Ok(index)
    }

    /// Answers `reply` with `answer` once `commit` resolves (a failure stops the scheduler).
    fn answer_when<T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
        myself: &ActorRef<SchedMsg>,
        max: usize,
        commit: foundation_cluster::replicated_log::Commit,
        reply: RpcReplyPort<Wire<T>>,
        answer: T,
    ) {
        let myself = myself.clone();
        tokio::spawn(async move {
            match commit.committed().await {
                Ok(_) => {
                    if let Ok(wire) = Wire::encode(&answer, max) {
                        let _ = reply.send(wire);
                    }
                }
                Err(e) => {
                    let _ = myself.send_message(SchedMsg::Failed(e.to_string()));
                }
            }
        });
    }
}

impl Actor for Scheduler {
    type Msg = SchedMsg;
    type State = SchedState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<SchedMsg>, _: ()) -> Result<SchedState, ActorProcessingErr> {
        let token = foundation_cluster::singleton::lease_token(SCHEDULER)
            .ok_or("the scheduler's lease is not valid: not starting")?;
        let (writer, entries) = self.log.lead(token).await?;
        let mut state = SchedState {
            writer,
            runs: BTreeMap::new(),
            capacity: Capacity::default(),
            published: Instant::now(),
            uncommitted: BTreeMap::new(),
            up_since: BTreeMap::new(),
        };
        let mut unreadable = 0usize;
        for entry in &entries {
            match decode(&entry.data) {
                Ok(e) => Self::apply(&mut state, e, entry.index),
                Err(why) => {
                    unreadable += 1;
                    tracing::error!(log = LOG, index = entry.index, %why, "an entry of the optimization log is not readable: skipped");
                }
            }
        }
        for run in state.runs.values_mut() {
            // Ended before this scheduler: no progress events for them.
            run.announced_end = run.finished() || run.stopped;
            run.requeue_all();
            run.resumed = run.done.tasks_done();
            run.evals_since = run.done.evaluations();
            run.evals_since_by_node = run.done.evals_by_node().clone();
            run.since = Instant::now();
        }
        tracing::info!(
            entries = entries.len(),
            unreadable,
            runs = state.runs.len(),
            token,
            "optimization scheduler started"
        );
        ractor::pg::join_scoped(SCOPE.to_string(), SCHEDULER.to_string(), vec![myself.get_cell()]);
        myself.send_interval(TICK, || SchedMsg::Tick);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SchedMsg>,
        msg: SchedMsg,
        state: &mut SchedState,
    ) -> Result<(), ActorProcessingErr> {
        // A copy whose singleton lease ran out acts no more and answers nothing: a new scheduler
        // may run elsewhere. Its manager kills it at once.
        if !foundation_cluster::singleton::lease_valid(SCHEDULER) {
            tracing::warn!("scheduler without a valid lease: message ignored");
            return Ok(());
        }
        let max_frame = self.cluster.max_frame_bytes();
        match msg {
            SchedMsg::Failed(why) => {
                tracing::error!(%why, "the optimization log did not commit: the scheduler restarts from the log");
                myself.stop(Some(why));
            }
            SchedMsg::Tick => self.tick(state),
            SchedMsg::Lease(request, reply) => {
                let Ok(request) = request.into_inner() else { return Ok(()) };
                let mut tasks = Vec::new();
                // Tasks until they hold about `LEASE_SECS` of this node's work (see `capacity`).
                let mut evaluations = 0.0;
                let queued: usize =
                    state.runs.values().filter(|r| r.has_work()).map(|r| r.pending.len()).sum();
                while let Some(id) = state.next_run(&request.node) {
                    let Some(run) = state.runs.get_mut(&id) else { break };
                    let Some(task_id) = run.pending.pop_front() else { break };
                    if run.done.has(task_id) {
                        // Recorded after its lease was given back: nothing to do.
                        continue;
                    }
                    let Some(task) = run.plan.task(task_id, |seed| run.done.built(seed)) else {
                        // Cannot be (evaluations are queued once their candidate is built): said,
                        // not silently dropped.
                        tracing::error!(run = %id, task = task_id, "a queued task cannot be made: dropped");
                        continue;
                    };
                    run.pass += cost(&task) / f64::from(run.spec.priority.max(1));
                    // A task of a lease is done after the ones before it: its deadline is
                    // further by twice their expected time (at most one more timeout), not by a
                    // timeout each (a hung worker's tail comes back in time).
                    let before = state.capacity.secs_per_eval(&request.node).unwrap_or(0.0) * evaluations;
                    let stretch = Duration::from_secs_f64((2.0 * before).min(LEASE_TIMEOUT.as_secs_f64()));
                    let deadline = Instant::now() + LEASE_TIMEOUT + stretch;
                    // Leased as itself now: a backup entry left for it is stale.
                    run.backups.remove(&task.id);
                    run.leased.insert(task.id, (task.clone(), request.node.clone(), deadline));
                    evaluations += cost(&task);
                    tasks.push((id, task));
                    if state.capacity.lease_full(&request.node, tasks.len(), evaluations, request.max, queued)
                    {
                        break;
                    }
                }
                // Nothing queued for it: the tail. A task a slower node holds, done again here
                // if this node would finish it first (whichever result comes first counts).
                let mut backup = None;
                if tasks.is_empty() {
                    backup = state.backup_for(&request.node);
                    if let Some((run, task)) = &backup {
                        tracing::debug!(%run, task = task.id, node = %request.node, "a backup of a slow lease");
                        tasks.push((run.clone(), task.clone()));
                    }
                }
                // A worker of this node gets the answer without a network hop (no frame limit).
                let max_bytes = if request.node == self.cluster.name() { usize::MAX } else { max_frame };
                let (answer, unsent) = lease_reply(tasks, max_bytes);
                if let Some(Unsent { tasks, error, deferred }) = unsent {
                    // Deferred ones (each fits; together they did not) go back to the front in
                    // their order; one too large alone goes to the back, for the scheduler's node.
                    for (id, task) in tasks.into_iter().rev() {
                        let Some(run) = state.runs.get_mut(&id) else { continue };
                        if backup.as_ref().is_some_and(|(r, t)| *r == id && t.id == task.id) {
                            // A backup not sent: the original lease stands.
                            run.backups.remove(&task.id);
                            continue;
                        }
                        run.leased.remove(&task.id);
                        run.pass -= cost(&task) / f64::from(run.spec.priority.max(1));
                        if deferred {
                            run.pending.push_front(task.id);
                            continue;
                        }
                        if run.oversized.insert(task.id) {
                            tracing::warn!(
                                run = %id, task = task.id, node = %request.node, %error,
                                "a task is too large to lease to another node; left for a worker on the scheduler's node"
                            );
                        }
                        run.pending.push_back(task.id);
                    }
                }
                let _ = reply.send(answer);
            }
            SchedMsg::Complete(completion, reply) => {
                let received = completion.span();
                let _in_trace = received.enter();
                let _record = tracing::info_span!("dspex.record").entered();
                let Ok(c) = completion.into_inner() else { return Ok(()) };
                let Some(run) = state.runs.get_mut(&c.run).filter(|r| r.foreign.is_none()) else {
                    let _ = reply.send(Wire::encode_or(&false, max_frame, |_| false));
                    return Ok(());
                };
                let id = c.task.id;
                // Only the holder's answer ends its lease here: a backup's refusal or bad result
                // must not cancel the holder's work (a new result ends every lease of the task,
                // below).
                let from_holder = run.leased.get(&id).is_some_and(|(_, holder, _)| *holder == c.node);
                let was_leased = from_holder && run.leased.remove(&id).is_some();
                if run.backups.get(&id) == Some(&c.node) {
                    run.backups.remove(&id);
                }
                if run.untrusted.contains(&c.node) {
                    // It sent a result that was not its task's: nothing more of it counts.
                    if was_leased {
                        run.give_back(&c.task);
                    }
                    let _ = reply.send(Wire::encode_or(&true, max_frame, |_| true));
                    return Ok(());
                }
                if let Outcome::Refused(why) = &c.outcome {
                    if run.refused_by.insert(c.node.clone()) {
                        tracing::warn!(run = %c.run, node = %c.node, %why, "a node cannot do this run's tasks");
                    }
                    if was_leased {
                        run.give_back(&c.task);
                    }
                    let _ = reply.send(Wire::encode_or(&true, max_frame, |_| true));
                    return Ok(());
                }
                let plan = run.plan.clone();
                let record =
                    Recorded::new(&c.task, &c.node, c.outcome, c.work.as_millis() as u64).with_calls(c.calls);
                // Its size as it will be logged (the whole record, its counts included).
                let size = match &record.outcome {
                    Outcome::TooLarge(bytes) => *bytes,
                    _ => encode(&Entry::Result { run: c.run.clone(), record: record.clone() })
                        .map_or(usize::MAX, |b| b.len()),
                };
                if size > self.log.max_entry_bytes() {
                    // Recording it is impossible; failing the scheduler would only repeat it.
                    let reason = format!(
                        "the result of task {} takes {size} bytes, more than a message or a log entry may ({}): \
                         raise cluster.max_frame_bytes and resume the run",
                        c.task.id,
                        self.log.max_entry_bytes()
                    );
                    self.fail_run(&myself, state, &c.run, reason, reply);
                    return Ok(());
                }
                // Its node's speed, from evaluations (a build's bootstrapping is not one call per
                // evaluation; a duplicate's work was work too).
                if matches!(c.task.kind, TaskKind::Eval { .. }) {
                    state.capacity.record(&c.node, cost(&c.task), c.work);
                }
                let Some(run) = state.runs.get_mut(&c.run) else { return Ok(()) };
                match run.done.verdict(&plan, &record) {
                    Verdict::New => {}
                    Verdict::Invalid(why) => {
                        // Not this task's result: the node that sent it gets none of the run's
                        // tasks again (as one that cannot do them), and the task goes back to
                        // the queue for another node, rather than being lost with its lease.
                        run.untrusted.insert(c.node.clone());
                        if run.refused_by.insert(c.node.clone()) {
                            tracing::warn!(run = %c.run, node = %c.node, %why, "an invalid result: the node gets no more of this run's tasks");
                        }
                        if was_leased {
                            run.give_back(&c.task);
                        }
                        let _ = reply.send(Wire::encode_or(&true, max_frame, |_| true));
                        return Ok(());
                    }
                    Verdict::Unneeded => {
                        run.done.duplicates += 1;
                        // Answered once the first report's entry is committed: until then this
                        // one is the result's only other copy.
                        match state.uncommitted.get(&(c.run.clone(), c.task.id)) {
                            Some(index) => {
                                let commit = state.writer.commit_of(*index);
                                Self::answer_when(&myself, max_frame, commit, reply, false);
                            }
                            None => drop(reply.send(Wire::encode_or(&false, max_frame, |_| false))),
                        }
                        return Ok(());
                    }
                }
                // Counted now: whoever else holds it (the holder of a backup's result, a backup)
                // holds it no more.
                run.leased.remove(&id);
                run.backups.remove(&id);
                if !was_leased && let Some(at) = run.pending.iter().position(|t| *t == c.task.id) {
                    // Its lease had been given back (its node seen down, or timed out): the task
                    // is queued again, and no longer needed now that this result counts.
                    run.pending.remove(at);
                }
                let entry = Entry::Result { run: c.run.clone(), record: record.clone() };
                match self.log_then(&myself, state, &entry, reply, true) {
                    Ok(index) => {
                        state.uncommitted.insert((c.run.clone(), c.task.id), index);
                        if let Some(run) = state.runs.get_mut(&c.run) {
                            run.last_logged = index;
                        }
                    }
                    Err(why) => {
                        myself.stop(Some(why));
                        return Ok(());
                    }
                }
                let Some(run) = state.runs.get_mut(&c.run) else { return Ok(()) };
                let round = run.done.round();
                run.done.apply(&plan, record);
                let was_idle = run.pending.is_empty();
                if let Some(TaskAt::Build(i)) = plan.locate(c.task.id) {
                    for position in plan.candidates_of(i) {
                        run.queue_candidate(*position, 0);
                    }
                }
                if run.done.round() > round {
                    tracing::info!(run = %c.run, round = run.done.round(), "evaluation round done");
                    for position in 0..plan.candidates().len() {
                        run.queue_candidate(position, plan.rounds()[round]);
                    }
                }
                if was_idle && !run.pending.is_empty() && !run.stopped {
                    state.rejoin(&c.run);
                }
                if state.runs.get(&c.run).is_some_and(Run::finished) {
                    tracing::info!(run = %c.run, "run finished");
                }
            }
            SchedMsg::Spec(run, reply) => {
                let Ok(run) = run.into_inner() else { return Ok(()) };
                let answer = match state.runs.get(&run) {
                    Some(r) => Ok((*r.spec).clone()),
                    None => Err(format!("no run `{run}`")),
                };
                let _ = reply.send(fitted(answer, max_frame, "run's spec"));
            }
            SchedMsg::Submit(spec, reply) => {
                let spec = match spec.into_inner() {
                    Ok(spec) => spec,
                    Err(e) => {
                        let _ = reply.send(fitted(
                            Err(format!("the spec did not decode: {e}")),
                            max_frame,
                            "answer",
                        ));
                        return Ok(());
                    }
                };
                let id = spec.run_id.clone();
                if let Err(why) = spec.check() {
                    let _ = reply.send(fitted(Err(why), max_frame, "answer"));
                    return Ok(());
                }
                if let Some(existing) = state.runs.get(&id) {
                    // The same spec again is the same run (a retried submit), answered once its
                    // submission is committed; another spec is refused.
                    if *existing.spec == spec {
                        let commit = state.writer.commit_of(existing.submitted_at);
                        Self::answer_when(&myself, max_frame, commit, reply, Ok::<String, String>(id));
                    } else {
                        let why = format!(
                            "a run named `{id}` already exists with another spec: choose another name"
                        );
                        let _ = reply.send(fitted(Err(why), max_frame, "answer"));
                    }
                    return Ok(());
                }
                let entry = Entry::submitted(spec.clone());
                let bytes = encode(&entry).map(|b| b.len()).unwrap_or(usize::MAX);
                if bytes > self.log.max_entry_bytes() {
                    let why = format!(
                        "run `{id}`: the spec with its data takes {bytes} bytes, more than the {} a run may take \
                         (cluster.max_frame_bytes less 4 KiB)",
                        self.log.max_entry_bytes()
                    );
                    let _ = reply.send(fitted(Err(why), max_frame, "answer"));
                    return Ok(());
                }
                let index =
                    match self.log_then(&myself, state, &entry, reply, Ok::<String, String>(id.clone())) {
                        Ok(index) => index,
                        Err(why) => {
                            myself.stop(Some(why));
                            return Ok(());
                        }
                    };
                let mut run = Run::new(spec, index);
                run.requeue_all();
                tracing::info!(run = %id, tasks = run.pending.len(), priority = run.spec.priority, "run submitted");
                state.runs.insert(id.clone(), run);
                state.rejoin(&id);
            }
            SchedMsg::Control(request, reply) => {
                let Ok((id, control)) = request.into_inner() else { return Ok(()) };
                let Some(run) = state.runs.get_mut(&id) else {
                    let _ = reply.send(fitted(Err(format!("no run `{id}`")), max_frame, "answer"));
                    return Ok(());
                };
                let entry = match control {
                    Control::Stop if run.finished() => {
                        let _ =
                            reply.send(fitted(Err(format!("run `{id}` is finished")), max_frame, "answer"));
                        return Ok(());
                    }
                    Control::Stop => {
                        run.stopped = true;
                        run.pending.clear();
                        run.leased.clear();
                        run.backups.clear();
                        Entry::Stopped { run: id.clone() }
                    }
                    Control::Resume if run.foreign.is_some() => {
                        let why = run.foreign.clone().unwrap_or_default();
                        let _ = reply.send(fitted(Err(why), max_frame, "answer"));
                        return Ok(());
                    }
                    Control::Resume if !run.stopped => {
                        // Running already: nothing to do (a repeated resume), answered once the
                        // resume is committed.
                        let commit = state.writer.commit_of(run.control_at);
                        Self::answer_when(&myself, max_frame, commit, reply, Ok::<(), String>(()));
                        return Ok(());
                    }
                    Control::Resume => {
                        run.stopped = false;
                        // Nodes that could not do it may now (a model registered since); nodes
                        // that sent bad results stay out.
                        run.refused_by = run.untrusted.clone();
                        run.announced_end = false;
                        run.failed = None;
                        run.requeue_all();
                        run.since = Instant::now();
                        run.evals_since = run.done.evaluations();
                        run.evals_since_by_node = run.done.evals_by_node().clone();
                        Entry::Resumed { run: id.clone() }
                    }
                };
                match self.log_then(&myself, state, &entry, reply, Ok::<(), String>(())) {
                    Ok(index) => {
                        if let Some(run) = state.runs.get_mut(&id) {
                            run.control_at = index;
                            run.last_logged = index;
                        }
                    }
                    Err(why) => {
                        myself.stop(Some(why));
                        return Ok(());
                    }
                }
                if control == Control::Resume {
                    state.rejoin(&id);
                }
            }
            SchedMsg::Load(node, reply) => {
                let Ok(node) = node.into_inner() else { return Ok(()) };
                let up = self.cluster.up();
                let me = self.cluster.name();
                let queued =
                    state.runs.values().filter(|r| !r.stopped).map(|r| r.pending.len()).sum::<usize>();
                let leased = state.runs.values().map(|r| r.leased.len()).sum::<usize>();
                // Its share among the nodes that have done work (and itself).
                let mut nodes: Vec<String> =
                    state.capacity.nodes().into_iter().filter(|n| n == me || up.contains(n)).collect();
                if !nodes.contains(&node) {
                    nodes.push(node.clone());
                }
                let load = Load { queued, leased, share: state.capacity.share(&node, &nodes) };
                let _ = reply.send(Wire::encode_or(&load, max_frame, |_| load));
            }
            SchedMsg::Status(which, reply) => {
                let Ok(which) = which.into_inner() else { return Ok(()) };
                let answer = match which {
                    Some(id) => match state.runs.get(&id) {
                        Some(run) => {
                            Ok(vec![run.status(true, self.cluster.name(), state.writer.committed())])
                        }
                        None => Err(format!("no run `{id}`")),
                    },
                    None => Ok({
                        let committed = state.writer.committed();
                        state.runs.values().map(|r| r.status(false, self.cluster.name(), committed)).collect()
                    }),
                };
                let _ = reply.send(fitted(answer, max_frame, "status"));
            }
        }
        Ok(())
    }
}

impl Scheduler {
    /// Fails `run` (recorded: it is stopped, its status says why) and answers `reply` once that
    /// is committed; a run failed already is answered once its failure is.
    fn fail_run(
        &self,
        myself: &ActorRef<SchedMsg>,
        state: &mut SchedState,
        run: &str,
        reason: String,
        reply: RpcReplyPort<Wire<bool>>,
    ) {
        let max_frame = self.cluster.max_frame_bytes();
        if let Some(r) = state.runs.get(run)
            && r.failed.is_some()
        {
            Self::answer_when(myself, max_frame, state.writer.commit_of(r.control_at), reply, true);
            return;
        }
        tracing::error!(%run, %reason, "run failed");
        let failed = Entry::Failed { run: run.to_string(), reason: reason.clone() };
        match self.log_then(myself, state, &failed, reply, true) {
            Ok(index) => {
                if let Some(r) = state.runs.get_mut(run) {
                    r.stopped = true;
                    r.failed = Some(reason);
                    r.pending.clear();
                    r.leased.clear();
                    r.backups.clear();
                    r.control_at = index;
                    r.last_logged = index;
                }
            }
            Err(why) => myself.stop(Some(why)),
        }
    }

    fn tick(&self, state: &mut SchedState) {
        if let Some(channels) = &self.channels
            && state.published.elapsed() >= PUBLISH_EVERY
        {
            state.published = Instant::now();
            let committed = state.writer.committed();
            // Running runs, and each ended run once more with its end (its result, or its stop).
            for run in state.runs.values_mut().filter(|r| !r.announced_end) {
                let status = run.status(false, self.cluster.name(), committed);
                if status.finished() || status.stopped {
                    run.announced_end = true;
                }
                let event = SystemEvent {
                    kind: PROGRESS_EVENT.into(),
                    source: run.spec.run_id.clone(),
                    data: serde_json::to_value(status).unwrap_or_default(),
                };
                if let Err(e) = channels.broadcast(&telemetry(), event) {
                    tracing::debug!(error = %e, "progress not published");
                }
            }
        }
        let committed = state.writer.committed();
        state.uncommitted.retain(|_, index| *index > committed);
        let members: Vec<foundation_cluster::Member> = self
            .cluster
            .members()
            .into_iter()
            .filter(|m| m.status == foundation_cluster::MemberStatus::Up)
            .collect();
        let up: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        // Nodes that went down and came back since the last tick.
        let flapped: Vec<String> = members
            .iter()
            .filter(|m| {
                state.up_since.insert(m.name.clone(), m.since).is_some_and(|before| before != m.since)
            })
            .map(|m| m.name.clone())
            .collect();
        state.up_since.retain(|n, _| up.contains(n));
        let me = self.cluster.name().to_string();
        let now = Instant::now();
        for (id, run) in &mut state.runs {
            // A backup on a node that is down does nothing: another may be made.
            run.backups.retain(|_, node| *node == me || (up.contains(node) && !flapped.contains(node)));
            let lost: Vec<u64> = run
                .leased
                .iter()
                .filter(|(_, (_, node, deadline))| {
                    (*node != me && (!up.contains(node) || flapped.contains(node))) || *deadline <= now
                })
                .map(|(id, _)| *id)
                .collect();
            for task_id in lost {
                if let Some((task, node, _)) = run.leased.remove(&task_id) {
                    // A backup in flight on a node still up takes the lease over (the holder
                    // lost, or overdue).
                    if let Some(backup) = run.backups.remove(&task_id)
                        && backup != node
                        && (backup == me || up.contains(&backup))
                    {
                        run.leased.insert(task_id, (task, backup, now + LEASE_TIMEOUT));
                        continue;
                    }
                    tracing::info!(run = %id, task = task_id, %node, "lease returned to the queue");
                    run.requeued += 1;
                    run.give_back(&task);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_task(id: u64, examples: usize) -> Task {
        Task {
            id,
            kind: TaskKind::Eval {
                candidate: 0,
                program: Program::new("p"),
                examples: (0..examples).collect(),
            },
        }
    }

    #[test]
    fn a_lease_over_the_frame_limit_leases_nothing_says_why_and_gives_the_task_back() {
        let (answer, unsent) = lease_reply(vec![("r".into(), eval_task(1, 10))], 1024);
        assert!(unsent.is_none());
        let reply = answer.into_inner().unwrap();
        assert_eq!((reply.tasks.len(), reply.refused), (1, None));

        // 2000 example indices take more than 1 KiB: refused with the reason, task handed back.
        let big = ("r".to_string(), eval_task(2, 2000));
        let (answer, unsent) = lease_reply(vec![big.clone()], 1024);
        let Unsent { tasks: back, error, deferred } = unsent.expect("the task is handed back");
        assert_eq!((back, deferred), (vec![big], false));
        assert!(matches!(error, WireError::TooLarge { max: 1024, .. }), "{error}");
        let bytes = foundation_actors::wire::encode(&answer.into_inner().unwrap(), usize::MAX).unwrap();
        assert!(bytes.len() <= 1024, "the refusal fits the limit: {} bytes", bytes.len());
        let reply: LeaseReply = foundation_actors::wire::decode(&bytes).unwrap();
        assert!(reply.tasks.is_empty());
        let why = reply.refused.expect("the refusal says why");
        assert!(why.contains("exceeds the 1024-byte frame limit"), "{why}");

        // Tasks that fit one by one but not together: as many as fit go, the rest come back in
        // their order.
        let lease: RunTasks = (10..14).map(|id| ("r".to_string(), eval_task(id, 300))).collect();
        let (answer, unsent) = lease_reply(lease.clone(), 1024);
        let sent = answer.into_inner().unwrap().tasks;
        let Unsent { tasks: back, deferred, .. } = unsent.expect("some come back");
        assert!(deferred, "each fits alone: only deferred");
        assert!(!sent.is_empty() && !back.is_empty(), "{} sent, {} back", sent.len(), back.len());
        let mut all = sent.clone();
        all.extend(back);
        assert_eq!(all, lease, "nothing lost, nothing twice, in order");
    }

    #[test]
    fn entries_carry_their_format() {
        let entry = Entry::Stopped { run: "r".into() };
        let bytes = encode(&entry).unwrap();
        assert!(matches!(decode(&bytes), Ok(Entry::Stopped { run }) if run == "r"));
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode(&other).unwrap_err().contains("format 9"));
        assert!(decode(&[]).is_err());
    }
}
