//! What a distributed run is, and the tasks it is cut into.

use serde::{Deserialize, Serialize};

use crate::example::Example;
use crate::metric::Metric;
use crate::optimizers::{BootstrapFewShot, InstructionSearch, LabeledFewShot, RandomSearch};
use crate::predict::Predictor;
use crate::program::Program;
use crate::signature::Signature;

/// An optimization to run across the cluster: the program, the datasets, the metric, the name of
/// the language model (every serving node registers its models by name), the optimizer and how
/// candidates are evaluated. It is data: it travels whole to the scheduler and the workers.
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
    /// The optimizer distributed (default: random search).
    #[serde(default)]
    pub optimizer: Optimizer,
    /// How candidates are scored: every one on the whole validation set (default), or by
    /// successive halving.
    #[serde(default)]
    pub evaluation: EvaluationPlan,
}

/// The optimizers a run can distribute, each with the same result as on one node for the same
/// seed (see [`Plan`](super::Plan) for how each is cut into tasks).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Optimizer {
    /// DSPy's `BootstrapFewShotWithRandomSearch` ([`RandomSearch`]): the three fixed candidates
    /// and `num_candidate_programs` shuffled ones, each built by one task and scored.
    #[default]
    RandomSearch,
    /// [`LabeledFewShot`] with `k = max_labeled_demos` and the run's seed: one candidate, built
    /// without a model call, scored on the validation set.
    LabeledFewShot,
    /// [`BootstrapFewShot`] with the run's demo limits and seed: one candidate, built by one task
    /// (the teacher's traces on the training set), scored on the validation set.
    BootstrapFewShot,
    /// MIPRO-style [`InstructionSearch`]: the demonstration sets of a random search of
    /// `num_candidate_programs` (each built by one task, only those a trial uses), and
    /// `num_trials` (instruction, demonstration set) combinations scored in a seeded order.
    InstructionSearch {
        /// Instructions proposed, the original included (1 to [`MAX_INSTRUCTIONS`]).
        num_instructions: usize,
        /// Combinations scored, at most (1 to [`MAX_CANDIDATES`]).
        num_trials: usize,
    },
}

/// Most instructions an [`Optimizer::InstructionSearch`] proposes (the original and four
/// variants).
pub const MAX_INSTRUCTIONS: usize = 5;

/// How a run's candidates are scored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum EvaluationPlan {
    /// Every candidate on every validation example.
    #[default]
    Full,
    /// Successive halving: every candidate on the first `first_examples` of a seeded shuffle of
    /// the validation set, then on twice as many, and so on up to all of them; after each round
    /// the candidates that cannot win at `confidence` are stopped (the rule: [`Plan`](super::Plan)).
    Halving {
        /// Examples in the first round (at least 1; rounded up to whole batches).
        first_examples: usize,
        /// The probability, over the shuffle, that the candidate best on the whole validation
        /// set is not stopped (strictly between 0 and 1; e.g. 0.95).
        confidence: f64,
    },
}

impl EvaluationPlan {
    /// Halving from 10 examples at 95 % confidence.
    pub fn halving() -> EvaluationPlan {
        EvaluationPlan::Halving { first_examples: 10, confidence: 0.95 }
    }
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
            optimizer: Optimizer::RandomSearch,
            evaluation: EvaluationPlan::Full,
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
        if let Metric::Judge(judge) = &self.metric {
            judge.check().map_err(|why| format!("run `{id}`: {why}"))?;
        }
        if let Optimizer::InstructionSearch { num_instructions, num_trials } = &self.optimizer {
            if !(1..=MAX_INSTRUCTIONS).contains(num_instructions) {
                return Err(format!("run `{id}`: {num_instructions} instructions, 1 to {MAX_INSTRUCTIONS}"));
            }
            if !(1..=MAX_CANDIDATES).contains(num_trials) {
                return Err(format!("run `{id}`: {num_trials} trials, 1 to {MAX_CANDIDATES}"));
            }
            if self.student.predictors.is_empty() {
                return Err(format!("run `{id}`: an instruction search needs a program with a predictor"));
            }
        }
        if let EvaluationPlan::Halving { first_examples, confidence } = &self.evaluation {
            if *first_examples == 0 {
                return Err(format!("run `{id}`: halving's first round needs at least 1 example"));
            }
            if !(*confidence > 0.0 && *confidence < 1.0) {
                return Err(format!("run `{id}`: halving's confidence {confidence} is not between 0 and 1"));
            }
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

    /// Candidates the run scores (see [`Plan`](super::Plan)).
    pub fn candidates(&self) -> usize {
        self.plan().candidates().len()
    }

    /// Evaluation tasks per candidate scored on the whole validation set.
    pub fn batch_count(&self) -> usize {
        self.valset.len().div_ceil(self.batch_size.max(1))
    }

    /// Tasks in the run at most (every build, every candidate on every batch; halving stops
    /// some candidates early).
    pub fn total_tasks(&self) -> usize {
        self.plan().max_tasks()
    }

    /// Evaluations in the run at most: candidates × validation examples.
    pub fn total_evaluations(&self) -> usize {
        self.candidates().saturating_mul(self.valset.len())
    }

    /// The run's plan: its builds, candidates, task ids and evaluation rounds.
    pub fn plan(&self) -> super::Plan {
        super::Plan::new(self)
    }

    /// The random search a [`RandomSearch`](Optimizer::RandomSearch) run distributes (and whose
    /// candidates are an instruction search's demonstration sets).
    pub fn search(&self) -> RandomSearch {
        RandomSearch {
            bootstrap: self.bootstrap(),
            num_candidate_programs: self.num_candidate_programs,
            stop_at_score: None,
            concurrency: 1,
        }
    }

    /// The bootstrapping a [`BootstrapFewShot`](Optimizer::BootstrapFewShot) run distributes.
    pub fn bootstrap(&self) -> BootstrapFewShot {
        BootstrapFewShot {
            max_bootstrapped_demos: self.max_bootstrapped_demos,
            max_labeled_demos: self.max_labeled_demos,
            ..Default::default()
        }
    }

    /// The labelled few-shot a [`LabeledFewShot`](Optimizer::LabeledFewShot) run distributes.
    pub fn labeled(&self) -> LabeledFewShot {
        LabeledFewShot { k: self.max_labeled_demos }
    }

    /// The instruction search an [`InstructionSearch`](Optimizer::InstructionSearch) run
    /// distributes (`None` for the other optimizers).
    pub fn instruction_search(&self) -> Option<InstructionSearch> {
        match self.optimizer {
            Optimizer::InstructionSearch { num_instructions, num_trials } => {
                Some(InstructionSearch { num_instructions, demos: self.search(), num_trials })
            }
            _ => None,
        }
    }

    /// Runs the spec's optimizer in this process with `lm` (evaluations `concurrency` at a
    /// time): what the cluster's run gives for the same seed. Every candidate is scored on the
    /// whole validation set (halving is the cluster service's; by its rule it keeps the same
    /// best with the probability it was given).
    pub async fn run_here(
        &self,
        lm: std::sync::Arc<dyn foundation_actors::providers::LanguageModel>,
        concurrency: usize,
    ) -> LocalResult {
        let (student, train, val, metric) = (&self.student, &self.trainset, &self.valset, &self.metric);
        match &self.optimizer {
            Optimizer::RandomSearch => {
                let mut search = self.search();
                search.concurrency = concurrency.max(1);
                let report = search.compile(student, train, val, lm, metric, self.seed).await;
                LocalResult {
                    best_key: report.best.seed,
                    best_score: report.best_evaluation.mean,
                    best_program: report.best.program,
                    scores: report.scores,
                }
            }
            Optimizer::LabeledFewShot | Optimizer::BootstrapFewShot => {
                let program = match self.optimizer {
                    Optimizer::LabeledFewShot => self.labeled().compile(student, train, self.seed),
                    _ => self.bootstrap().compile(student, None, train, lm.as_ref(), metric, self.seed).await,
                };
                let mean =
                    crate::evaluate::evaluate(&program, val, lm, metric, concurrency.max(1)).await.mean;
                LocalResult { best_key: 0, best_score: mean, best_program: program, scores: vec![(0, mean)] }
            }
            Optimizer::InstructionSearch { num_instructions, num_trials } => {
                let mut search = InstructionSearch {
                    num_instructions: *num_instructions,
                    demos: self.search(),
                    num_trials: *num_trials,
                };
                search.demos.concurrency = concurrency.max(1);
                let report = search.compile(student, train, val, lm, metric, self.seed).await;
                let scores: Vec<(i64, f64)> =
                    report.trials.iter().enumerate().map(|(t, trial)| (t as i64, trial.score)).collect();
                // The first trial of the best score, as `compile` keeps it.
                let best_key =
                    scores.iter().find(|(_, s)| *s == report.best_evaluation.mean).map_or(0, |(k, _)| *k);
                LocalResult {
                    best_key,
                    best_score: report.best_evaluation.mean,
                    best_program: report.best,
                    scores,
                }
            }
        }
    }

    /// Builds the program of build `seed` (what a `Build` task does): a random-search candidate
    /// (also an instruction search's demonstration set), or the labelled or bootstrapped
    /// program with the run's seed. Deterministic for the spec and the model's answers.
    pub async fn build(&self, seed: i64, lm: &dyn foundation_actors::providers::LanguageModel) -> Program {
        match self.optimizer {
            Optimizer::RandomSearch | Optimizer::InstructionSearch { .. } => {
                self.search()
                    .candidate(seed, &self.student, &self.trainset, lm, &self.metric, self.seed)
                    .await
                    .program
            }
            Optimizer::LabeledFewShot => self.labeled().compile(&self.student, &self.trainset, self.seed),
            Optimizer::BootstrapFewShot => {
                self.bootstrap()
                    .compile(&self.student, None, &self.trainset, lm, &self.metric, self.seed)
                    .await
            }
        }
    }
}

/// What [`RunSpec::run_here`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResult {
    /// The best candidate's key (see [`Planned::key`](super::Planned::key)).
    pub best_key: i64,
    /// Its mean score on the validation set.
    pub best_score: f64,
    /// The best program.
    pub best_program: Program,
    /// Every candidate's mean score, in the optimizer's order.
    pub scores: Vec<(i64, f64)>,
}

/// Work handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Build the program of this seed ([`RunSpec::build`]; bootstrapping calls the model on the
    /// training set).
    Build {
        /// The build's seed: DSPy's candidate seed for a random search and an instruction
        /// search's demonstration sets, 0 for the one program of a few-shot optimizer.
        seed: i64,
    },
    /// Score a candidate on these validation examples.
    Eval {
        /// The candidate's key (see [`Planned::key`](super::Planned::key)).
        candidate: i64,
        /// The candidate (its build, with its instruction if it has one).
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
        bad(|s| s.optimizer = Optimizer::InstructionSearch { num_instructions: 6, num_trials: 4 }, "1 to 5");
        bad(
            |s| s.optimizer = Optimizer::InstructionSearch { num_instructions: 2, num_trials: 0 },
            "0 trials",
        );
        bad(
            |s| s.evaluation = EvaluationPlan::Halving { first_examples: 0, confidence: 0.9 },
            "at least 1 example",
        );
        bad(
            |s| s.evaluation = EvaluationPlan::Halving { first_examples: 5, confidence: 1.0 },
            "between 0 and 1",
        );
        bad(
            |s| s.evaluation = EvaluationPlan::Halving { first_examples: 5, confidence: f64::NAN },
            "between 0 and 1",
        );
    }
}
