//! What a distributed run is, and the tasks it is cut into.

use serde::{Deserialize, Serialize};

use crate::example::Example;
use crate::metric::Metric;
use crate::optimizers::{BootstrapFewShot, RandomSearch};
use crate::predict::Predictor;
use crate::program::Program;
use crate::signature::Signature;

/// A random-search optimization to run across the cluster. Every node that takes part declares
/// the same spec (it is data: the program, the datasets, the metric and the name of the
/// language model, which every node registers under that name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Unique name of the run in the cluster: 1 to 64 letters, digits, `-` and `_`.
    pub run_id: String,
    /// The program to optimize.
    pub student: Program,
    /// Bootstrapping examples.
    pub trainset: Vec<Example>,
    /// Candidates are scored on these.
    pub valset: Vec<Example>,
    /// The metric.
    pub metric: Metric,
    /// Name of the language model every node registered.
    pub lm: String,
    /// Bootstrapped demonstrations per predictor, at most.
    pub max_bootstrapped_demos: usize,
    /// Labelled demonstrations per predictor, at most.
    pub max_labeled_demos: usize,
    /// Shuffled candidates on top of the three fixed ones.
    pub num_candidate_programs: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Validation examples per evaluation task.
    pub batch_size: usize,
    /// Its share of the workers against the other runs with work (1 to [`MAX_PRIORITY`]): a
    /// run of priority 2 gets twice the evaluations of a run of priority 1 while both have
    /// work. Default 1.
    #[serde(default = "default_priority")]
    pub priority: u32,
}

/// The highest [`RunSpec::priority`].
pub const MAX_PRIORITY: u32 = 1000;
/// Most shuffled candidates in a run ([`RunSpec::num_candidate_programs`]).
pub const MAX_CANDIDATES: usize = 1000;
/// Most tasks in a run (candidates × (1 + validation batches)).
pub const MAX_TASKS: usize = 10_000_000;

fn default_priority() -> u32 {
    1
}

/// Training examples of the bundled question dataset in [`RunSpec::questions`].
pub const QUESTIONS_TRAIN: usize = 60;
/// Validation examples of the bundled question dataset in [`RunSpec::questions`].
pub const QUESTIONS_VAL: usize = 100;

impl RunSpec {
    /// A ready-made run: a classifier of the bundled question dataset (the first
    /// [`QUESTIONS_TRAIN`] examples to bootstrap from, the next [`QUESTIONS_VAL`] to score on),
    /// exact match on `label`, with the language model registered as `simulated`. What
    /// `foundation demo` optimizes.
    pub fn questions(run_id: &str, seed: u64, num_candidate_programs: usize) -> RunSpec {
        let data = crate::datasets::questions();
        let signature = Signature::parse("question -> label")
            .unwrap_or_else(|e| unreachable!("a constant signature parses: {e}"))
            .with_instructions("Classify the type of answer the question asks for.")
            .describe("label", "one of abbreviation, description, entity, person, location, number");
        RunSpec {
            run_id: run_id.to_string(),
            student: Program::single("classify", Predictor::predict(signature)),
            trainset: data[..QUESTIONS_TRAIN].to_vec(),
            valset: data[QUESTIONS_TRAIN..QUESTIONS_TRAIN + QUESTIONS_VAL].to_vec(),
            metric: Metric::ExactMatch("label".into()),
            lm: "simulated".into(),
            max_bootstrapped_demos: 4,
            max_labeled_demos: 16,
            num_candidate_programs,
            seed,
            batch_size: 5,
            priority: 1,
        }
    }

    /// Checks what a run must be to be submitted: a valid id, a priority in range, at least one
    /// validation example, batches of at least one.
    pub fn check(&self) -> Result<(), String> {
        let id = &self.run_id;
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("run id {id:?}: 1 to 64 letters, digits, `-` and `_`"));
        }
        if !(1..=MAX_PRIORITY).contains(&self.priority) {
            return Err(format!("run `{id}`: priority {} is not from 1 to {MAX_PRIORITY}", self.priority));
        }
        if self.valset.is_empty() {
            return Err(format!("run `{id}`: no validation example"));
        }
        if self.batch_size == 0 {
            return Err(format!("run `{id}`: batch_size must be at least 1"));
        }
        if self.lm.is_empty() {
            return Err(format!("run `{id}`: no model name"));
        }
        if self.num_candidate_programs > MAX_CANDIDATES {
            return Err(format!(
                "run `{id}`: {} candidates, at most {MAX_CANDIDATES}",
                self.num_candidate_programs
            ));
        }
        if self.total_tasks() > MAX_TASKS {
            return Err(format!(
                "run `{id}`: {} tasks (candidates × validation batches), at most {MAX_TASKS}: raise batch_size",
                self.total_tasks()
            ));
        }
        Ok(())
    }

    /// Candidates in the run (DSPy's seeds -3 up to `num_candidate_programs`).
    pub fn candidates(&self) -> usize {
        self.num_candidate_programs.saturating_add(3)
    }

    /// Evaluation tasks per candidate.
    pub fn batch_count(&self) -> usize {
        self.valset.len().div_ceil(self.batch_size.max(1))
    }

    /// Tasks in the run: a build and its evaluation batches per candidate.
    pub fn total_tasks(&self) -> usize {
        self.candidates().saturating_mul(1 + self.batch_count())
    }

    /// Evaluations in the run: candidates × validation examples.
    pub fn total_evaluations(&self) -> usize {
        self.candidates().saturating_mul(self.valset.len())
    }

    /// The ids of the evaluation tasks of candidate `seed` (see [`eval_tasks`](Self::eval_tasks)).
    pub fn eval_task_ids(&self, seed: i64) -> std::ops::Range<u64> {
        let position = usize::try_from(seed + 3).unwrap_or(0);
        let base = (self.candidates() + position * self.batch_count()) as u64;
        base..base + self.batch_count() as u64
    }

    /// The candidate seed task `id` is about: a build's (`id` below the candidates) or an
    /// evaluation's.
    pub fn seed_of(&self, id: u64) -> Option<i64> {
        let id = usize::try_from(id).ok()?;
        let candidates = self.candidates();
        let position = if id < candidates { id } else { (id - candidates) / self.batch_count().max(1) };
        (position < candidates).then(|| position as i64 - 3)
    }

    /// Task `id` made whole: a build, or an evaluation of `program` (the built candidate of its
    /// seed; `None` if the id is not a task of this run, or an evaluation's program is missing).
    /// What a scheduler's queue holds is ids: 8 bytes a task, not the program's copy.
    pub fn task(&self, id: u64, program: Option<&Program>) -> Option<Task> {
        let seed = self.seed_of(id)?;
        if (id as usize) < self.candidates() {
            return Some(Task { id, kind: TaskKind::Build { seed } });
        }
        let batch = (id - self.eval_task_ids(seed).start) as usize;
        let size = self.batch_size.max(1);
        let examples: Vec<usize> = (batch * size..((batch + 1) * size).min(self.valset.len())).collect();
        Some(Task { id, kind: TaskKind::Eval { seed, program: program?.clone(), examples } })
    }

    /// The evaluation tasks of the built candidate `seed` (ids fixed by candidate and batch, the
    /// same in every scheduler).
    pub fn eval_tasks(&self, seed: i64, program: &Program) -> Vec<Task> {
        // Seeds start at -3: the candidate's position is its seed + 3.
        let position = usize::try_from(seed + 3).unwrap_or(0);
        let base = self.candidates() + position * self.batch_count();
        let indices: Vec<usize> = (0..self.valset.len()).collect();
        indices
            .chunks(self.batch_size.max(1))
            .enumerate()
            .map(|(b, examples)| Task {
                id: (base + b) as u64,
                kind: TaskKind::Eval { seed, program: program.clone(), examples: examples.to_vec() },
            })
            .collect()
    }

    /// The single-node optimizer this run distributes.
    pub fn search(&self) -> RandomSearch {
        RandomSearch {
            bootstrap: BootstrapFewShot {
                max_bootstrapped_demos: self.max_bootstrapped_demos,
                max_labeled_demos: self.max_labeled_demos,
                ..Default::default()
            },
            num_candidate_programs: self.num_candidate_programs,
            stop_at_score: None,
            concurrency: 1,
        }
    }
}

/// Work handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Build the candidate of this seed (bootstrapping calls the model on the training set).
    Build {
        /// DSPy's candidate seed.
        seed: i64,
    },
    /// Score the candidate of this seed on these validation examples.
    Eval {
        /// DSPy's candidate seed.
        seed: i64,
        /// The candidate (built by a `Build` task).
        program: Program,
        /// Validation example indices.
        examples: Vec<usize>,
    },
}

/// A task with its id (results are recorded once per id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique within the run.
    pub id: u64,
    /// What to do.
    pub kind: TaskKind,
}

/// What a worker sends back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The built candidate.
    Built(Program),
    /// (validation index, score, failed) per example.
    Scores(Vec<(usize, f64, bool)>),
    /// This node cannot do the run's tasks (the run's model or custom metric is not registered
    /// here): the task goes to another node, and this node gets none of the run's tasks again.
    Refused(String),
    /// The result is too large to send or record (its size in bytes): the run fails.
    TooLarge(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_checked_before_it_is_submitted() {
        let ok = RunSpec::questions("ok", 1, 8);
        assert_eq!(ok.check(), Ok(()));
        let (candidates, batches) = (ok.candidates(), ok.batch_count());
        assert_eq!((candidates, batches, ok.total_tasks()), (11, 20, 11 * 21));
        let bad = |f: fn(&mut RunSpec), says: &str| {
            let mut spec = RunSpec::questions("ok", 1, 8);
            f(&mut spec);
            let error = spec.check().unwrap_err();
            assert!(error.contains(says), "{error}");
        };
        // Task ids made from ids alone, as the ones listed.
        for seed in ok.search().seeds() {
            let program = Program::new(format!("p{seed}"));
            assert_eq!(ok.task((seed + 3) as u64, None).unwrap().kind, TaskKind::Build { seed });
            let listed = ok.eval_tasks(seed, &program);
            let ids: Vec<u64> = listed.iter().map(|t| t.id).collect();
            assert_eq!(ids, ok.eval_task_ids(seed).collect::<Vec<_>>());
            for task in listed {
                assert_eq!(ok.seed_of(task.id), Some(seed));
                assert_eq!(ok.task(task.id, Some(&program)), Some(task.clone()));
                assert_eq!(ok.task(task.id, None), None, "no program, no evaluation");
            }
        }
        assert_eq!(ok.task(ok.total_tasks() as u64, None), None);
        bad(|s| s.run_id = "has space".into(), "letters, digits");
        bad(|s| s.priority = 0, "priority 0");
        bad(|s| s.valset.clear(), "no validation example");
        bad(|s| s.batch_size = 0, "batch_size");
        bad(|s| s.num_candidate_programs = usize::MAX, "at most 1000");
        bad(
            |s| {
                s.batch_size = 1;
                s.num_candidate_programs = 997;
                s.valset = vec![s.valset[0].clone(); 20_000];
            },
            "at most 10000000",
        );
    }
}
