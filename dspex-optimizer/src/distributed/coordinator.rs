//! The coordinator of a run: a cluster singleton that cuts the run into tasks, leases them to
//! workers, records results once per task id, gives the leases of lost nodes back to the queue,
//! and persists what is done after every result.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::channels::{Channels, SystemEvent, telemetry};
use foundation_actors::wire::{Wire, WireError};
use foundation_cluster::Cluster;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::spec::{Outcome, RunSpec, Task, TaskKind};
use super::state::Done;
use crate::program::Program;

/// The pg scope of run coordinators.
pub const SCOPE: &str = foundation_actors::pg_scopes::RUNS;
/// A leased task not reported within this long goes back to the queue (a worker that hangs; a
/// lost node's leases go back as soon as the node is seen down).
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the coordinator checks leases.
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

/// Work, or the news that there is none left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaseReply {
    pub(crate) tasks: Vec<Task>,
    pub(crate) finished: bool,
    /// Why no task was leased although some are waiting: the task at the head of the queue
    /// does not fit a message to the asker's node (it went to the back of the queue, for a
    /// worker on the coordinator's node, which gets it without a network hop).
    pub(crate) refused: Option<String>,
}

/// A finished task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Completion {
    pub(crate) node: String,
    pub(crate) task: Task,
    pub(crate) outcome: Outcome,
    /// How long the worker spent on it.
    pub(crate) work: Duration,
}

/// The final result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The best candidate's seed (the first of equals, in DSPy's candidate order).
    pub best_seed: i64,
    /// Its mean score on the validation set.
    pub best_score: f64,
    /// The best program.
    pub best_program: Program,
    /// Every candidate's mean score, in candidate order.
    pub scores: Vec<(i64, f64)>,
    /// Evaluations recorded (candidates × validation examples, each once).
    pub evaluations: usize,
    /// Tasks completed per node.
    pub tasks_by_node: BTreeMap<String, usize>,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The run.
    pub run_id: String,
    /// Tasks in all, and done.
    pub tasks: (usize, usize),
    /// Evaluations in all (candidates × validation examples), and done.
    pub evaluations: (usize, usize),
    /// Best fully evaluated candidate so far: (seed, mean score).
    pub best: Option<(i64, f64)>,
    /// Evaluations per second since this coordinator started.
    pub evals_per_sec: f64,
    /// Estimated seconds left at that rate.
    pub eta_secs: Option<f64>,
    /// Results that arrived twice (ignored).
    pub duplicates: u64,
    /// Leases given back because their node was lost or they timed out.
    pub requeued: u64,
    /// Tasks waiting for a worker.
    pub queued: usize,
    /// Tasks leased to workers now.
    pub leased: usize,
    /// Tasks this coordinator found done in the persisted state when it started.
    pub resumed: usize,
    /// Stopped before finishing.
    pub stopped: bool,
    /// Time workers spent on the recorded tasks, summed: what one worker would have taken.
    pub work_secs: f64,
    /// The result, once finished.
    pub result: Option<RunResult>,
}

#[derive(RactorClusterMessage)]
pub(crate) enum CoordMsg {
    Tick,
    #[rpc]
    Lease(Wire<LeaseRequest>, RpcReplyPort<Wire<LeaseReply>>),
    #[rpc]
    Complete(Wire<Completion>, RpcReplyPort<Wire<bool>>),
    /// The status, or why it could not be sent (larger than the frame limit).
    #[rpc]
    Status(RpcReplyPort<Wire<Result<Status, String>>>),
    #[rpc]
    Stop(RpcReplyPort<Wire<bool>>),
}

pub(crate) struct RunCoordinator {
    pub(crate) spec: Arc<RunSpec>,
    pub(crate) cluster: Cluster,
    pub(crate) state_dir: PathBuf,
    pub(crate) channels: Option<Channels>,
}

pub(crate) struct CoordState {
    done: Done,
    pending: VecDeque<Task>,
    leased: BTreeMap<u64, (Task, String, Instant)>,
    started: Instant,
    evals_at_start: usize,
    requeued: u64,
    resumed: usize,
    published: Instant,
    /// Tasks found too large to lease to another node (warned about once each).
    oversized: BTreeSet<u64>,
}

/// The answer to a lease of `tasks`, if it fits `max_bytes`; otherwise an answer that leases
/// nothing and says why, with the tasks given back (for the queue) and the error.
pub(crate) fn lease_reply(
    tasks: Vec<Task>,
    finished: bool,
    max_bytes: usize,
) -> (Wire<LeaseReply>, Option<(Vec<Task>, WireError)>) {
    let reply = LeaseReply { tasks, finished, refused: None };
    match Wire::encode(&reply, max_bytes) {
        Ok(wire) => (wire, None),
        Err(e) => {
            let refused = LeaseReply {
                tasks: Vec::new(),
                finished,
                refused: Some(format!("the task does not fit a message to this node: {e}")),
            };
            let answer = Wire::encode_or(&refused, max_bytes, |_| LeaseReply {
                tasks: Vec::new(),
                finished,
                refused: Some("the task does not fit a message to this node".into()),
            });
            (answer, Some((reply.tasks, e)))
        }
    }
}

/// The answer to a status question: the status if it fits `max_bytes`, or why not (logged).
pub(crate) fn status_reply(status: &Status, max_bytes: usize) -> Wire<Result<Status, String>> {
    Wire::encode_or(&Ok(status.clone()), max_bytes, |e| {
        tracing::warn!(run = %status.run_id, error = %e, "a run's status is too large to send");
        Err(format!("the status does not fit a message: {e}"))
    })
}

impl RunCoordinator {
    fn seeds(&self) -> Vec<i64> {
        self.spec.search().seeds().collect()
    }

    /// Candidates in the run (DSPy's seeds -3 up to `num_candidate_programs`).
    fn candidates(&self) -> usize {
        self.spec.num_candidate_programs + 3
    }

    fn batch_count(&self) -> usize {
        self.spec.valset.len().div_ceil(self.spec.batch_size.max(1))
    }

    /// The evaluation tasks of one built candidate (ids fixed by candidate and batch).
    fn eval_tasks(&self, seed: i64, program: &Program) -> Vec<Task> {
        // Seeds start at -3: the candidate's position is its seed + 3.
        let position = usize::try_from(seed + 3).unwrap_or(0);
        let base = self.candidates() + position * self.batch_count();
        let indices: Vec<usize> = (0..self.spec.valset.len()).collect();
        indices
            .chunks(self.spec.batch_size.max(1))
            .enumerate()
            .map(|(b, examples)| Task {
                id: (base + b) as u64,
                kind: TaskKind::Eval { seed, program: program.clone(), examples: examples.to_vec() },
            })
            .collect()
    }

    /// Computed, not listed: asked on every lease.
    fn total_tasks(&self) -> usize {
        self.candidates() * (1 + self.batch_count())
    }

    fn persist(&self, state: &CoordState) {
        if let Err(e) = state.done.save(&self.state_dir, &self.spec.run_id) {
            tracing::error!(run = %self.spec.run_id, error = %e, "cannot persist the run's state");
        }
    }

    fn finished(&self, state: &CoordState) -> bool {
        state.done.stopped || state.done.tasks.len() == self.total_tasks()
    }

    fn evals_done(state: &CoordState) -> usize {
        state.done.scores.values().map(BTreeMap::len).sum()
    }

    /// Mean scores of the fully evaluated candidates, in candidate order.
    fn means(&self, state: &CoordState) -> Vec<(i64, f64)> {
        let n = self.spec.valset.len();
        self.seeds()
            .into_iter()
            .filter_map(|seed| {
                let scores = state.done.scores.get(&seed)?;
                // Summed in index order: the same float in every run, whatever the order of arrival.
                (scores.len() == n)
                    .then(|| (seed, scores.values().map(|(s, _)| s).sum::<f64>() / n.max(1) as f64))
            })
            .collect()
    }

    fn status(&self, state: &CoordState) -> Status {
        let means = self.means(state);
        let best = means.iter().fold(None, |best: Option<(i64, f64)>, (seed, m)| match best {
            Some((_, b)) if b >= *m => best,
            _ => Some((*seed, *m)),
        });
        let evals_total = self.candidates() * self.spec.valset.len();
        let evals_done = Self::evals_done(state);
        let elapsed = state.started.elapsed().as_secs_f64();
        let rate = (evals_done - state.evals_at_start.min(evals_done)) as f64 / elapsed.max(1e-3);
        let eta = (rate > 0.0).then(|| (evals_total - evals_done) as f64 / rate);
        let result = (self.finished(state) && !state.done.stopped).then(|| {
            let (best_seed, best_score) = best.unwrap_or((-3, 0.0));
            let mut tasks_by_node = BTreeMap::new();
            for node in state.done.tasks.values() {
                *tasks_by_node.entry(node.clone()).or_insert(0) += 1;
            }
            RunResult {
                best_seed,
                best_score,
                best_program: state
                    .done
                    .built
                    .get(&best_seed)
                    .cloned()
                    .unwrap_or_else(|| self.spec.student.clone()),
                scores: means.clone(),
                evaluations: evals_done,
                tasks_by_node,
            }
        });
        Status {
            run_id: self.spec.run_id.clone(),
            tasks: (self.total_tasks(), state.done.tasks.len()),
            evaluations: (evals_total, evals_done),
            best,
            evals_per_sec: rate,
            eta_secs: eta,
            duplicates: state.done.duplicates,
            requeued: state.requeued,
            queued: state.pending.len(),
            leased: state.leased.len(),
            resumed: state.resumed,
            stopped: state.done.stopped,
            work_secs: state.done.work_ms as f64 / 1000.0,
            result,
        }
    }
}

impl Actor for RunCoordinator {
    type Msg = CoordMsg;
    type State = CoordState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<CoordMsg>, _: ()) -> Result<CoordState, ActorProcessingErr> {
        // A corrupt state is reported and started over, never a coordinator that fails to start
        // on every node that tries.
        let mut done = Done::load_or_recover(&self.state_dir, &self.spec.run_id)?;
        if done.stopped {
            // A coordinator started for a stopped run resumes it.
            tracing::info!(run = %self.spec.run_id, "resuming a stopped run");
            done.stopped = false;
        }
        let mut pending = VecDeque::new();
        for (i, seed) in self.seeds().into_iter().enumerate() {
            match done.built.get(&seed) {
                Some(program) => pending.extend(
                    self.eval_tasks(seed, program).into_iter().filter(|t| !done.tasks.contains_key(&t.id)),
                ),
                None => pending.push_back(Task { id: i as u64, kind: TaskKind::Build { seed } }),
            }
        }
        tracing::info!(run = %self.spec.run_id, resumed = done.tasks.len(), pending = pending.len(), "run coordinator started");
        ractor::pg::join_scoped(SCOPE.to_string(), self.spec.run_id.clone(), vec![myself.get_cell()]);
        myself.send_interval(TICK, || CoordMsg::Tick);
        let state = CoordState {
            evals_at_start: done.scores.values().map(BTreeMap::len).sum(),
            done,
            pending,
            leased: BTreeMap::new(),
            started: Instant::now(),
            requeued: 0,
            resumed: 0,
            published: Instant::now(),
            oversized: BTreeSet::new(),
        };
        let state = CoordState { resumed: state.done.tasks.len(), ..state };
        Ok(state)
    }

    async fn handle(
        &self,
        _: ActorRef<CoordMsg>,
        msg: CoordMsg,
        state: &mut CoordState,
    ) -> Result<(), ActorProcessingErr> {
        // A copy whose singleton lease ran out (its process was paused past it, or it was cut
        // off) acts no more, and answers nothing: a new coordinator may run elsewhere. Its
        // manager kills it at once.
        if !foundation_cluster::singleton::lease_valid(&format!("dspex:{}", self.spec.run_id)) {
            tracing::warn!(run = %self.spec.run_id, "coordinator without a valid lease: message ignored");
            return Ok(());
        }
        match msg {
            CoordMsg::Tick => {
                if let Some(channels) = &self.channels
                    && state.published.elapsed() >= PUBLISH_EVERY
                {
                    state.published = Instant::now();
                    let mut status = self.status(state);
                    // The programs are large and not progress: the result's scores are enough.
                    if let Some(r) = status.result.as_mut() {
                        r.best_program.predictors.clear();
                    }
                    let event = SystemEvent {
                        kind: PROGRESS_EVENT.into(),
                        source: self.spec.run_id.clone(),
                        data: serde_json::to_value(&status).unwrap_or_default(),
                    };
                    if let Err(e) = channels.broadcast(&telemetry(), event) {
                        tracing::debug!(error = %e, "progress not published");
                    }
                }
                let up: Vec<String> = self.cluster.up();
                let me = self.cluster.name().to_string();
                let now = Instant::now();
                let lost: Vec<u64> = state
                    .leased
                    .iter()
                    .filter(|(_, (_, node, deadline))| {
                        (*node != me && !up.contains(node)) || *deadline <= now
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in lost {
                    if let Some((task, node, _)) = state.leased.remove(&id) {
                        tracing::info!(run = %self.spec.run_id, task = id, %node, "lease returned to the queue");
                        state.requeued += 1;
                        state.pending.push_front(task);
                    }
                }
            }
            CoordMsg::Lease(request, reply) => {
                let Ok(request) = request.into_inner() else { return Ok(()) };
                let finished = self.finished(state);
                let mut tasks = Vec::new();
                while tasks.len() < request.max.max(1) && !finished {
                    let Some(task) = state.pending.pop_front() else { break };
                    state.leased.insert(
                        task.id,
                        (task.clone(), request.node.clone(), Instant::now() + LEASE_TIMEOUT),
                    );
                    tasks.push(task);
                }
                // A worker of this node gets the answer without a network hop (no frame, no
                // limit); another node's within the cluster's frame limit.
                let max_bytes = if request.node == self.cluster.name() {
                    usize::MAX
                } else {
                    self.cluster.max_frame_bytes()
                };
                let (answer, unsent) = lease_reply(tasks, finished, max_bytes);
                if let Some((tasks, error)) = unsent {
                    // Back in the queue, at its end: the other tasks go to other nodes first,
                    // and a worker on this node takes these.
                    for task in tasks {
                        state.leased.remove(&task.id);
                        if state.oversized.insert(task.id) {
                            tracing::warn!(
                                run = %self.spec.run_id, task = task.id, node = %request.node, %error,
                                "a task is too large to lease to another node; left for a worker on the coordinator's node"
                            );
                        } else {
                            tracing::debug!(run = %self.spec.run_id, task = task.id, node = %request.node, %error, "task too large to lease");
                        }
                        state.pending.push_back(task);
                    }
                }
                let _ = reply.send(answer);
            }
            CoordMsg::Complete(completion, reply) => {
                // The worker's task trace continues here (no await below while it is entered).
                let received = completion.span();
                let _in_trace = received.enter();
                let _record = tracing::info_span!("dspex.record").entered();
                let Ok(c) = completion.into_inner() else { return Ok(()) };
                state.leased.remove(&c.task.id);
                let new = state.done.record(&self.spec, &c.task, &c.node, c.outcome);
                if new {
                    state.done.work_ms += c.work.as_millis() as u64;
                    if let TaskKind::Build { seed } = &c.task.kind
                        && let Some(program) = state.done.built.get(seed)
                    {
                        let tasks = self.eval_tasks(*seed, program);
                        state
                            .pending
                            .extend(tasks.into_iter().filter(|t| !state.done.tasks.contains_key(&t.id)));
                    }
                    self.persist(state);
                    if self.finished(state) {
                        tracing::info!(run = %self.spec.run_id, "run finished");
                    }
                }
                // One byte: fits any frame limit (checked all the same).
                match Wire::encode(&new, self.cluster.max_frame_bytes()) {
                    Ok(wire) => drop(reply.send(wire)),
                    Err(e) => {
                        tracing::warn!(run = %self.spec.run_id, error = %e, "completion not acknowledged")
                    }
                }
            }
            CoordMsg::Status(reply) => {
                let _ = reply.send(status_reply(&self.status(state), self.cluster.max_frame_bytes()));
            }
            CoordMsg::Stop(reply) => {
                state.done.stopped = true;
                state.pending.clear();
                state.leased.clear();
                self.persist(state);
                match Wire::encode(&true, self.cluster.max_frame_bytes()) {
                    Ok(wire) => drop(reply.send(wire)),
                    Err(e) => tracing::warn!(run = %self.spec.run_id, error = %e, "stop not acknowledged"),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_task(id: u64, examples: usize) -> Task {
        Task {
            id,
            kind: TaskKind::Eval { seed: 0, program: Program::new("p"), examples: (0..examples).collect() },
        }
    }

    #[test]
    fn a_lease_over_the_frame_limit_leases_nothing_says_why_and_gives_the_task_back() {
        // Fits: leased as is.
        let (answer, unsent) = lease_reply(vec![eval_task(1, 10)], false, 1024);
        assert!(unsent.is_none());
        let reply = answer.into_inner().unwrap();
        assert_eq!((reply.tasks.len(), reply.finished, reply.refused), (1, false, None));

        // 2000 example indices take more than 1 KiB: refused with the reason, task handed back.
        let big = eval_task(2, 2000);
        let (answer, unsent) = lease_reply(vec![big.clone()], false, 1024);
        let (back, error) = unsent.expect("the task is handed back");
        assert_eq!(back, [big]);
        assert!(matches!(error, WireError::TooLarge { max: 1024, .. }), "{error}");
        let bytes = foundation_actors::wire::encode(&answer.into_inner().unwrap(), usize::MAX).unwrap();
        assert!(bytes.len() <= 1024, "the refusal fits the limit: {} bytes", bytes.len());
        let reply: LeaseReply = foundation_actors::wire::decode(&bytes).unwrap();
        assert!(reply.tasks.is_empty() && !reply.finished);
        let why = reply.refused.expect("the refusal says why");
        assert!(why.contains("exceeds the 1024-byte frame limit"), "{why}");
    }

    #[test]
    fn a_status_over_the_frame_limit_is_an_error_for_the_asker() {
        let status = Status {
            run_id: "r".repeat(2000),
            tasks: (10, 3),
            evaluations: (100, 30),
            best: None,
            evals_per_sec: 1.0,
            eta_secs: None,
            duplicates: 0,
            requeued: 0,
            queued: 7,
            leased: 0,
            resumed: 0,
            stopped: false,
            work_secs: 0.0,
            result: None,
        };
        let err = status_reply(&status, 1024).into_inner().unwrap().unwrap_err();
        assert!(err.contains("exceeds the 1024-byte frame limit"), "{err}");
        assert_eq!(status_reply(&status, 1 << 20).into_inner().unwrap(), Ok(status));
    }
}
