//! The coordinator of a run: a cluster singleton that cuts the run into tasks, leases them to
//! workers, records results once per task id, gives the leases of lost nodes back to the queue,
//! and persists what is done after every result.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::channels::{Channels, SystemEvent, telemetry};
use foundation_actors::wire::Wire;
use foundation_cluster::Cluster;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::spec::{Outcome, RunSpec, Task, TaskKind};
use super::state::Done;
use crate::program::Program;

/// The pg scope of run coordinators.
pub const SCOPE: &str = "dspex.runs";
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
    #[rpc]
    Status(RpcReplyPort<Wire<Status>>),
    #[rpc]
    Stop(RpcReplyPort<Wire<bool>>),
}

pub(crate) struct Coordinator {
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
}

impl Coordinator {
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

impl Actor for Coordinator {
    type Msg = CoordMsg;
    type State = CoordState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<CoordMsg>, _: ()) -> Result<CoordState, ActorProcessingErr> {
        let mut done = Done::load(&self.state_dir, &self.spec.run_id)?;
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
                if let Ok(wire) = Wire::encode(&LeaseReply { tasks, finished }, usize::MAX) {
                    let _ = reply.send(wire);
                }
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
                if let Ok(wire) = Wire::encode(&new, usize::MAX) {
                    let _ = reply.send(wire);
                }
            }
            CoordMsg::Status(reply) => {
                if let Ok(wire) = Wire::encode(&self.status(state), usize::MAX) {
                    let _ = reply.send(wire);
                }
            }
            CoordMsg::Stop(reply) => {
                state.done.stopped = true;
                state.pending.clear();
                state.leased.clear();
                self.persist(state);
                if let Ok(wire) = Wire::encode(&true, usize::MAX) {
                    let _ = reply.send(wire);
                }
            }
        }
        Ok(())
    }
}
