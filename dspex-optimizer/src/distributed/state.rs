//! What a run has recorded, in memory, compact: the scheduler rebuilds it from the run's
//! entries in the replicated log and adds to it as results are committed.
//!
//! Memory per recorded evaluation: 9 bytes (its score and a flag, in an array per candidate
//! sized by the validation set when the candidate is built); task ids done are kept as ranges
//! (a few bytes per gap, not per task); tasks per node as one count per node. Built candidates
//! are kept whole (one program per candidate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{Outcome, RunSpec, Task, TaskKind};
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

/// What a run has recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Done {
    built: BTreeMap<i64, Program>,
    scores: BTreeMap<i64, Scores>,
    tasks: TaskSet,
    by_node: BTreeMap<String, usize>,
    evaluations: usize,
    /// Results that arrived for tasks already done (late or repeated), ignored.
    pub duplicates: u64,
    /// Milliseconds workers spent on the recorded tasks.
    pub work_ms: u64,
}

/// A result as the run's log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The task (its id and kind; an `Eval` task's program is not kept, only its seed).
    pub task: u64,
    /// The candidate's seed.
    pub seed: i64,
    /// The node whose worker did it.
    pub node: String,
    /// What came back.
    pub outcome: Outcome,
    /// How long the worker spent on it.
    pub work_ms: u64,
}

impl Recorded {
    /// The record of `outcome` for `task`.
    pub fn new(task: &Task, node: &str, outcome: Outcome, work_ms: u64) -> Recorded {
        let seed = match &task.kind {
            TaskKind::Build { seed } | TaskKind::Eval { seed, .. } => *seed,
        };
        Recorded { task: task.id, seed, node: node.to_string(), outcome, work_ms }
    }
}

impl Done {
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

    /// The built candidate of `seed`.
    pub fn built(&self, seed: i64) -> Option<&Program> {
        self.built.get(&seed)
    }

    /// Tasks recorded per node.
    pub fn by_node(&self) -> &BTreeMap<String, usize> {
        &self.by_node
    }

    /// Whether a result for `record.task` would be new and fits the run (a `Built` for a build
    /// task, scores for an evaluation): what the scheduler checks before logging it.
    pub fn accepts(&self, spec: &RunSpec, record: &Recorded) -> bool {
        !self.has(record.task)
            && match &record.outcome {
                Outcome::Built(_) => !self.built.contains_key(&record.seed),
                Outcome::Scores(scores) => {
                    self.built.contains_key(&record.seed)
                        && scores.iter().all(|(i, _, _)| *i < spec.valset.len())
                }
                Outcome::Refused(_) | Outcome::TooLarge(_) => false,
            }
    }

    /// Applies a result (from the log, or about to be logged); returns whether it was new.
    pub fn apply(&mut self, spec: &RunSpec, record: Recorded) -> bool {
        if !self.accepts(spec, &record) {
            self.duplicates += 1;
            return false;
        }
        match record.outcome {
            Outcome::Built(program) => {
                self.built.insert(record.seed, program);
                let n = spec.valset.len();
                self.scores
                    .insert(record.seed, Scores { values: vec![0.0; n], flags: vec![ABSENT; n], count: 0 });
            }
            Outcome::Scores(scores) => {
                let Some(candidate) = self.scores.get_mut(&record.seed) else { return false };
                for (index, score, failed) in scores {
                    if candidate.flags[index] == ABSENT {
                        candidate.count += 1;
                        self.evaluations += 1;
                    }
                    candidate.values[index] = score;
                    candidate.flags[index] = if failed { FAILED } else { SCORED };
                }
            }
            Outcome::Refused(_) | Outcome::TooLarge(_) => return false,
        }
        self.tasks.insert(record.task);
        *self.by_node.entry(record.node).or_insert(0) += 1;
        self.work_ms += record.work_ms;
        true
    }

    /// The mean score of `seed` once every validation example is scored, summed in index order
    /// (the same float in every run, whatever the order results arrived in).
    pub fn mean(&self, seed: i64) -> Option<f64> {
        let scores = self.scores.get(&seed)?;
        let n = scores.values.len();
        (scores.count == n).then(|| scores.values.iter().sum::<f64>() / n.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn results_are_applied_once_and_means_summed_in_index_order() {
        let spec = RunSpec::questions("r", 1, 0);
        let task = |id, kind| Task { id, kind };
        let mut done = Done::default();
        let build = Recorded::new(
            &task(0, TaskKind::Build { seed: -3 }),
            "n1",
            Outcome::Built(spec.student.clone()),
            5,
        );
        assert!(done.apply(&spec, build.clone()));
        assert!(!done.apply(&spec, build));
        let n = spec.valset.len();
        let eval = |id, range: std::ops::Range<usize>| {
            let t = task(
                id,
                TaskKind::Eval { seed: -3, program: spec.student.clone(), examples: range.clone().collect() },
            );
            Recorded::new(
                &t,
                "n2",
                Outcome::Scores(range.map(|i| (i, (i % 3) as f64 / 2.0, false)).collect()),
                1,
            )
        };
        assert!(done.apply(&spec, eval(10, 50..n)));
        assert_eq!(done.mean(-3), None);
        // An index beyond the validation set is refused whole.
        assert!(!done.apply(&spec, eval(11, 0..n + 1)));
        assert!(done.apply(&spec, eval(11, 0..50)));
        let expected = (0..n).map(|i| (i % 3) as f64 / 2.0).sum::<f64>() / n as f64;
        assert_eq!(done.mean(-3), Some(expected));
        assert_eq!((done.evaluations(), done.tasks_done(), done.duplicates), (n, 3, 2));
        assert_eq!(done.by_node().get("n2"), Some(&2));
    }
}
