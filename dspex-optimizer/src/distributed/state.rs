//! What a run has recorded, in memory, compact: the scheduler rebuilds it from the run's
//! entries in the replicated log and adds to it as results are committed.
//!
//! Memory per recorded evaluation: 9 bytes (its score and a flag, in an array per candidate
//! sized by the validation set when the candidate is built); task ids done are kept as ranges
//! (a few bytes per gap, not per task); tasks per node as one count per node. Built candidates
//! are kept whole (one program per build). With halving, where the evaluation stands (the round,
//! the candidates stopped) is a function of the scores recorded, updated as they are applied, so
//! a scheduler replaying the log reaches the same decisions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::{Plan, TaskAt};
use super::spec::{Outcome, Task, TaskKind};
use crate::program::Program;

/// Task ids as ranges `start..end` (by start), merged as they fill up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSet {
    ranges: BTreeMap<u64, u64>,
    len: usize,
}

impl TaskSet {
    /// Whether `id` is in.
    pub fn contains(&self, id: u64) -> bool {
        self.ranges.range(..=id).next_back().is_some_and(|(_, end)| id < *end)
    }

    /// Adds `id`; false if it was in.
    pub fn insert(&mut self, id: u64) -> bool {
        if self.contains(id) {
            return false;
        }
        let before = self.ranges.range(..id).next_back().map(|(s, e)| (*s, *e)).filter(|(_, e)| *e == id);
        let after = self.ranges.get(&(id + 1)).copied();
        match (before, after) {
            (Some((start, _)), Some(end)) => {
                self.ranges.remove(&(id + 1));
                self.ranges.insert(start, end);
            }
            (Some((start, _)), None) => {
                self.ranges.insert(start, id + 1);
            }
            (None, Some(end)) => {
                self.ranges.remove(&(id + 1));
                self.ranges.insert(id, end);
            }
            (None, None) => {
                self.ranges.insert(id, id + 1);
            }
        }
        self.len += 1;
        true
    }

    /// Ids in.
    pub fn len(&self) -> usize {
        self.len
    }

    /// None in.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ranges kept (what it costs in memory).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }
}

const ABSENT: u8 = 0;
const SCORED: u8 = 1;
const FAILED: u8 = 2;

/// One candidate's scores by validation index.
#[derive(Debug, Clone, Default, PartialEq)]
struct Scores {
    values: Vec<f64>,
    flags: Vec<u8>,
    count: usize,
}

/// What a result is to a run ([`Done::verdict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New, and fits: to be recorded.
    New,
    /// Recorded already, or not needed now (its candidate stopped or not built here, its batch
    /// beyond the round): ignored, counted as a duplicate.
    Unneeded,
    /// Not a result of this task (another candidate's, other examples, a score outside [0, 1]):
    /// the node that sent it is not trusted with the run any more.
    Invalid(String),
}

/// Why a candidate stopped before the whole validation set (halving).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stopped {
    /// The round after which it stopped.
    pub round: usize,
    /// Examples it was scored on.
    pub examples: usize,
    /// Its mean on them.
    pub mean: f64,
}

/// What a run has recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Done {
    /// Programs built, by build seed.
    built: BTreeMap<i64, Program>,
    /// Scores by candidate key (from its build on).
    scores: BTreeMap<i64, Scores>,
    /// The evaluation round now (past the last: every candidate left is scored on everything).
    round: usize,
    /// Candidates stopped by halving, by position.
    stopped: Vec<Option<Stopped>>,
    tasks: TaskSet,
    by_node: BTreeMap<String, usize>,
    evals_by_node: BTreeMap<String, usize>,
    evaluations: usize,
    /// Results that arrived for tasks already done (late or repeated), ignored.
    pub duplicates: u64,
    /// Milliseconds workers spent on the recorded tasks.
    pub work_ms: u64,
    /// Model calls the recorded tasks made.
    pub calls: Calls,
}

/// Model calls a task made: all of them, and those the call cache answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// Calls made (answered by a provider or by the cache).
    pub made: u64,
    /// Calls the call cache answered (no provider called).
    pub cached: u64,
    /// Tokens the cached answers would have cost (their original calls' usage).
    pub saved_tokens: u64,
}

impl Calls {
    fn add(&mut self, other: Calls) {
        self.made = self.made.saturating_add(other.made);
        self.cached = self.cached.saturating_add(other.cached);
        self.saved_tokens = self.saved_tokens.saturating_add(other.saved_tokens);
    }
}

/// A result as the run's log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The task (its id; an `Eval` task's program is not kept, only its candidate's key).
    pub task: u64,
    /// The build's seed for a build, the candidate's key for an evaluation.
    pub key: i64,
    /// The node whose worker did it.
    pub node: String,
    /// What came back.
    pub outcome: Outcome,
    /// How long the worker spent on it.
    pub work_ms: u64,
    /// The model calls it made.
    pub calls: Calls,
}

impl Recorded {
    /// The record of `outcome` for `task` (with no calls counted: see [`with_calls`](Self::with_calls)).
    pub fn new(task: &Task, node: &str, outcome: Outcome, work_ms: u64) -> Recorded {
        let key = match &task.kind {
            TaskKind::Build { seed } => *seed,
            TaskKind::Eval { candidate, .. } => *candidate,
        };
        Recorded { task: task.id, key, node: node.to_string(), outcome, work_ms, calls: Calls::default() }
    }

    /// With the model calls the task made.
    pub fn with_calls(mut self, calls: Calls) -> Recorded {
        self.calls = calls;
        self
    }
}

impl Done {
    /// Nothing recorded yet, for a run of `plan`.
    pub fn new(plan: &Plan) -> Done {
        // A single candidate has nothing to decide: no rounds, every batch at once.
        let round = if plan.candidates().len() <= 1 { plan.rounds().len().saturating_sub(1) } else { 0 };
        Done { stopped: vec![None; plan.candidates().len()], round, ..Done::default() }
    }

    /// Whether task `id` is recorded.
    pub fn has(&self, id: u64) -> bool {
        self.tasks.contains(id)
    }

    /// Tasks recorded.
    pub fn tasks_done(&self) -> usize {
        self.tasks.len()
    }

    /// The task-id ranges kept.
    pub fn task_ranges(&self) -> usize {
        self.tasks.ranges()
    }

    /// Evaluations recorded.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    /// The program of build `seed`.
    pub fn built(&self, seed: i64) -> Option<&Program> {
        self.built.get(&seed)
    }

    /// Builds done.
    pub fn builds_done(&self) -> usize {
        self.built.len()
    }

    /// Tasks recorded per node.
    pub fn by_node(&self) -> &BTreeMap<String, usize> {
        &self.by_node
    }

    /// Evaluations recorded per node.
    pub fn evals_by_node(&self) -> &BTreeMap<String, usize> {
        &self.evals_by_node
    }

    /// The evaluation round now: batches below `plan.rounds()[round]` of every candidate still
    /// in are what is to be scored (past the last round: the evaluation is over).
    pub fn round(&self) -> usize {
        self.round
    }

    /// Whether the candidate at `position` was stopped by halving, and where.
    pub fn stopped(&self, position: usize) -> Option<Stopped> {
        self.stopped.get(position).copied().flatten()
    }

    /// Every build done and every candidate left scored on the whole validation set.
    pub fn finished(&self, plan: &Plan) -> bool {
        self.built.len() == plan.builds().len() && self.round >= plan.rounds().len()
    }

    /// Tasks the run takes as things stand: every build, and each candidate's batches (a
    /// stopped candidate's up to its round).
    pub fn tasks_planned(&self, plan: &Plan) -> usize {
        let batches = (0..plan.candidates().len())
            .map(|p| match self.stopped(p) {
                Some(s) => plan.rounds()[s.round],
                None => plan.batches(),
            })
            .sum::<usize>();
        plan.builds().len() + batches
    }

    /// Evaluations the run takes as things stand (a stopped candidate's up to its round).
    pub fn evaluations_planned(&self, plan: &Plan) -> usize {
        (0..plan.candidates().len()).map(|p| self.stopped(p).map_or(plan.examples(), |s| s.examples)).sum()
    }

    /// Whether a result for `record.task` would be new and fits the run: a `Built` for a build
    /// task not done, or the scores of exactly the examples of an evaluation task of a built
    /// candidate still in, within the round now: what the scheduler checks before logging it.
    pub fn accepts(&self, plan: &Plan, record: &Recorded) -> bool {
        self.verdict(plan, record) == Verdict::New
    }

    /// What a result is to the run (see [`Verdict`]).
    pub fn verdict(&self, plan: &Plan, record: &Recorded) -> Verdict {
        let invalid = |why: &str| Verdict::Invalid(format!("task {}: {why}", record.task));
        match (&record.outcome, plan.locate(record.task)) {
            (Outcome::Built(_), Some(TaskAt::Build(i))) => {
                if plan.builds()[i] != record.key {
                    invalid("a build under another seed than its task's")
                } else if self.has(record.task) || self.built.contains_key(&record.key) {
                    Verdict::Unneeded
                } else {
                    Verdict::New
                }
            }
            (Outcome::Scores(scores), Some(TaskAt::Eval { position, batch })) => {
                let candidate = &plan.candidates()[position];
                let mut indices: Vec<usize> = scores.iter().map(|(i, _, _)| *i).collect();
                indices.sort_unstable();
                let mut expected = plan.batch(batch).to_vec();
                expected.sort_unstable();
                if candidate.key != record.key {
                    invalid("scores under another candidate than its task's")
                } else if indices != expected {
                    invalid("scores of other examples than its task's")
                } else if !scores.iter().all(|(_, s, _)| (0.0..=1.0).contains(s)) {
                    invalid("a score outside [0, 1]")
                } else if self.has(record.task)
                    || !self.built.contains_key(&plan.builds()[candidate.build])
                    || self.stopped(position).is_some()
                    || plan.rounds().get(self.round).is_none_or(|b| batch >= *b)
                {
                    Verdict::Unneeded
                } else {
                    Verdict::New
                }
            }
            (Outcome::Refused(_) | Outcome::TooLarge(_), _) => Verdict::Unneeded,
            (_, None) => invalid("not a task of this run"),
            _ => invalid("an outcome of another kind than its task's"),
        }
    }

    /// Applies a result (from the log, or about to be logged); returns whether it was new. A
    /// result that completes a round moves the evaluation on (see [`round`](Self::round)).
    pub fn apply(&mut self, plan: &Plan, record: Recorded) -> bool {
        if !self.accepts(plan, &record) {
            self.duplicates += 1;
            return false;
        }
        let mut round_reached = false;
        match record.outcome {
            Outcome::Built(program) => {
                let n = plan.examples();
                if let Some(TaskAt::Build(i)) = plan.locate(record.task) {
                    for p in plan.candidates_of(i) {
                        let key = plan.candidates()[*p].key;
                        self.scores
                            .insert(key, Scores { values: vec![0.0; n], flags: vec![ABSENT; n], count: 0 });
                    }
                }
                self.built.insert(record.key, program);
            }
            Outcome::Scores(scores) => {
                let Some(candidate) = self.scores.get_mut(&record.key) else { return false };
                let before = self.evaluations;
                for (index, score, failed) in scores {
                    if candidate.flags[index] == ABSENT {
                        candidate.count += 1;
                        self.evaluations += 1;
                    }
                    candidate.values[index] = score;
                    candidate.flags[index] = if failed { FAILED } else { SCORED };
                }
                // Only a candidate reaching the round's examples can end the round: the check
                // over every candidate is made then, not at every result.
                round_reached = candidate.count >= plan.examples_by(self.round);
                *self.evals_by_node.entry(record.node.clone()).or_insert(0) += self.evaluations - before;
            }
            Outcome::Refused(_) | Outcome::TooLarge(_) => return false,
        }
        self.tasks.insert(record.task);
        *self.by_node.entry(record.node).or_insert(0) += 1;
        self.work_ms += record.work_ms;
        self.calls.add(record.calls);
        if round_reached {
            self.advance(plan);
        }
        true
    }

    /// Moves past every round whose examples every candidate still in has scored, stopping the
    /// candidates that cannot win after each (the rule: [`Plan`]).
    fn advance(&mut self, plan: &Plan) {
        let last = plan.rounds().len().saturating_sub(1);
        while self.round <= last {
            let n = plan.examples_by(self.round);
            let alive: Vec<usize> =
                (0..plan.candidates().len()).filter(|p| self.stopped(*p).is_none()).collect();
            let complete = alive.iter().all(|p| {
                let key = plan.candidates()[*p].key;
                self.scores.get(&key).is_some_and(|s| s.count >= n)
            });
            if !complete {
                return;
            }
            if self.round == last {
                self.round = last + 1;
                return;
            }
            let means: Vec<f64> = alive
                .iter()
                .map(|p| {
                    let scores = &self.scores[&plan.candidates()[*p].key];
                    plan.first(n).iter().map(|i| scores.values[*i]).sum::<f64>() / n.max(1) as f64
                })
                .collect();
            let mut left = 0;
            for (p, (keep, mean)) in alive.iter().zip(plan.survivors(&means, n).into_iter().zip(means)) {
                if keep {
                    left += 1;
                } else if let Some(slot) = self.stopped.get_mut(*p) {
                    *slot = Some(Stopped { round: self.round, examples: n, mean });
                }
            }
            // One candidate left: nothing more to decide, the rest of its batches at once.
            self.round = if left <= 1 { last } else { self.round + 1 };
        }
    }

    /// The mean score of candidate `key` once every validation example is scored, summed in
    /// index order (the same float in every run, whatever the order results arrived in).
    pub fn mean(&self, key: i64) -> Option<f64> {
        let scores = self.scores.get(&key)?;
        let n = scores.values.len();
        (scores.count == n).then(|| scores.values.iter().sum::<f64>() / n.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::RunSpec;
    use super::*;

    #[test]
    fn task_ids_are_kept_as_ranges() {
        let mut set = TaskSet::default();
        for id in [5, 3, 4, 10, 0, 1, 2, 11, 9] {
            assert!(set.insert(id));
        }
        assert!(!set.insert(4));
        assert_eq!((set.len(), set.ranges()), (9, 2));
        assert!(set.contains(0) && set.contains(5) && set.contains(9) && set.contains(11));
        assert!(!set.contains(6) && !set.contains(8) && !set.contains(12));
        // A million in order: one range.
        let mut big = TaskSet::default();
        for id in 0..1_000_000 {
            big.insert(id);
        }
        assert_eq!((big.len(), big.ranges()), (1_000_000, 1));
    }

    fn eval(
        spec: &RunSpec,
        id: u64,
        key: i64,
        range: std::ops::Range<usize>,
        score: fn(usize) -> f64,
    ) -> Recorded {
        let t = Task {
            id,
            kind: TaskKind::Eval {
                candidate: key,
                program: spec.student.clone(),
                examples: range.clone().collect(),
            },
        };
        Recorded::new(&t, "n2", Outcome::Scores(range.map(|i| (i, score(i), false)).collect()), 1)
    }

    fn build(id: u64, seed: i64, program: &Program) -> Recorded {
        Recorded::new(&Task { id, kind: TaskKind::Build { seed } }, "n1", Outcome::Built(program.clone()), 5)
    }

    #[test]
    fn results_are_applied_once_and_means_summed_in_index_order() {
        let mut spec = RunSpec::questions("r", 1, 0);
        spec.batch_size = 50;
        let plan = spec.plan();
        let mut done = Done::new(&plan);
        assert!(done.apply(&plan, build(0, -3, &spec.student)));
        assert!(!done.apply(&plan, build(0, -3, &spec.student)));
        // A build under another seed than its task's is refused.
        assert!(!done.apply(&plan, build(1, -3, &spec.student)));
        let n = spec.valset.len();
        let score = |i: usize| (i % 3) as f64 / 2.0;
        // Candidate -3's batches are tasks 3 and 4.
        assert!(done.apply(&plan, eval(&spec, 4, -3, 50..n, score)));
        assert_eq!(done.mean(-3), None);
        // Scores for other examples than the task's, or under another candidate, are refused.
        assert!(!done.apply(&plan, eval(&spec, 3, -3, 0..51, score)));
        assert!(!done.apply(&plan, eval(&spec, 3, -2, 0..50, score)));
        // A candidate not built yet: refused.
        assert!(!done.apply(&plan, eval(&spec, 5, -2, 0..50, score)));
        assert!(done.apply(&plan, eval(&spec, 3, -3, 0..50, score)));
        let expected = (0..n).map(score).sum::<f64>() / n as f64;
        assert_eq!(done.mean(-3), Some(expected));
        assert_eq!((done.evaluations(), done.tasks_done(), done.duplicates), (n, 3, 5));
        assert_eq!(done.by_node().get("n2"), Some(&2));
        assert!(!done.finished(&plan));
    }

    #[test]
    fn halving_moves_on_when_a_round_is_scored_and_stops_clear_losers() {
        let mut spec = RunSpec::questions("h", 1, 0);
        spec.evaluation =
            super::super::spec::EvaluationPlan::Halving { first_examples: 10, confidence: 0.95 };
        spec.batch_size = 10;
        let plan = spec.plan();
        assert_eq!(plan.rounds(), &[1, 2, 4, 8, 10]);
        let mut done = Done::new(&plan);
        let keys = [-3, -2, -1];
        for (i, key) in keys.iter().enumerate() {
            assert!(done.apply(&plan, build(i as u64, *key, &spec.student)));
        }
        // Candidate -3 scores 0 everywhere, the others 1; run rounds until -3 is stopped.
        let record = |p: usize, batch: usize| {
            let examples = plan.batch(batch);
            let key = keys[p];
            let score = if key == -3 { 0.0 } else { 1.0 };
            let t = Task {
                id: plan.eval_ids(p, batch..batch + 1).start,
                kind: TaskKind::Eval {
                    candidate: key,
                    program: spec.student.clone(),
                    examples: examples.to_vec(),
                },
            };
            Recorded::new(&t, "n", Outcome::Scores(examples.iter().map(|i| (*i, score, false)).collect()), 1)
        };
        // Beyond the round now: refused.
        assert!(!done.apply(&plan, record(0, 1)));
        for batch in 0..plan.batches() {
            for p in 0..3 {
                if done.stopped(p).is_none() && batch < plan.rounds()[done.round().min(4)] {
                    assert!(done.apply(&plan, record(p, batch)), "{p} {batch}");
                }
            }
        }
        assert!(done.finished(&plan));
        let stopped = done.stopped(0).expect("the loser is stopped");
        assert_eq!((stopped.mean, stopped.examples < 100), (0.0, true));
        assert_eq!((done.mean(-2), done.mean(-1), done.mean(-3)), (Some(1.0), Some(1.0), None));
        assert_eq!(done.evaluations_planned(&plan), 200 + stopped.examples);
        assert_eq!(done.tasks_planned(&plan), 3 + 20 + plan.rounds()[stopped.round]);
        assert_eq!(done.tasks_done(), done.tasks_planned(&plan));
    }

    #[test]
    fn a_replay_of_the_logged_results_reaches_the_same_state_whatever_the_arrival_order() {
        let mut spec = RunSpec::questions("replay", 3, 4);
        spec.evaluation = super::super::spec::EvaluationPlan::Halving { first_examples: 10, confidence: 0.9 };
        let plan = spec.plan();
        let score = |key: i64, i: usize| {
            if key == -3 {
                0.1 * (i % 2) as f64
            } else {
                ((i * 7 + (key + 3) as usize * 3) % 10) as f64 / 9.0
            }
        };
        let record = |id: u64| -> Recorded {
            match plan.task(id, |_| Some(&spec.student)).unwrap() {
                Task { kind: TaskKind::Build { seed }, .. } => build(id, seed, &spec.student),
                Task { kind: TaskKind::Eval { candidate, examples, .. }, .. } => {
                    let t = Task {
                        id,
                        kind: TaskKind::Eval {
                            candidate,
                            program: spec.student.clone(),
                            examples: examples.clone(),
                        },
                    };
                    let scores = examples.iter().map(|i| (*i, score(candidate, *i), false)).collect();
                    Recorded::new(&t, "n", Outcome::Scores(scores), 1)
                }
            }
        };
        let mut decisions = Vec::new();
        for seed in 0..5u64 {
            let mut rng = crate::rng::Rng::new(seed);
            let mut live = Done::new(&plan);
            let mut log = Vec::new();
            let mut delivered = Vec::new();
            while !live.finished(&plan) {
                // What a scheduler would lease now, and now and then a result delivered again.
                let ready: Vec<u64> =
                    (0..plan.max_tasks() as u64).filter(|id| live.accepts(&plan, &record(*id))).collect();
                assert!(!ready.is_empty(), "stalled at round {}", live.round());
                let id = if !delivered.is_empty() && rng.below(4) == 0 {
                    delivered[rng.below(delivered.len())]
                } else {
                    ready[rng.below(ready.len())]
                };
                if live.apply(&plan, record(id)) {
                    log.push(record(id));
                    delivered.push(id);
                }
            }
            let mut replayed = Done::new(&plan);
            for r in log {
                assert!(replayed.apply(&plan, r));
            }
            replayed.duplicates = live.duplicates;
            assert_eq!(replayed, live, "seed {seed}");
            assert_eq!(live.tasks_done(), live.tasks_planned(&plan));
            let stopped: Vec<Option<Stopped>> =
                (0..plan.candidates().len()).map(|p| live.stopped(p)).collect();
            let weak = stopped[0].expect("the weak candidate is stopped");
            // A late result for the stopped candidate's next batch: not needed, not recorded.
            let next = plan.eval_ids(0, plan.rounds()[weak.round]..plan.rounds()[weak.round] + 1).start;
            assert_eq!(live.verdict(&plan, &record(next)), Verdict::Unneeded);
            let means: Vec<Option<f64>> = plan.candidates().iter().map(|c| live.mean(c.key)).collect();
            decisions.push((stopped, means));
        }
        // The same decisions and means whatever the order results arrived in.
        assert!(decisions.windows(2).all(|w| w[0] == w[1]), "{decisions:?}");
        // Results that are not their task's: invalid, whatever the state.
        let mut done = Done::new(&plan);
        let mut bad = record(plan.eval_ids(1, 0..1).start);
        assert!(done.apply(&plan, build(1, -2, &spec.student)));
        if let Outcome::Scores(scores) = &mut bad.outcome {
            scores[0].1 = f64::NAN;
        }
        assert!(matches!(done.verdict(&plan, &bad), Verdict::Invalid(why) if why.contains("outside [0, 1]")));
        let mut other = record(plan.eval_ids(1, 0..1).start);
        other.key = -1;
        assert!(
            matches!(done.verdict(&plan, &other), Verdict::Invalid(why) if why.contains("another candidate"))
        );
        let mut beyond = record(0);
        beyond.task = plan.max_tasks() as u64;
        assert!(matches!(done.verdict(&plan, &beyond), Verdict::Invalid(why) if why.contains("not a task")));
    }
}
