//! An instruction optimizer in the manner of DSPy's MIPRO: propose candidate instructions,
//! build candidate demonstration sets, and search the instruction × demonstration-set space,
//! keeping the combination that scores best on the validation set.
//!
//! Two departures from MIPRO, said plainly: instructions are proposed from the training data
//! (the output values seen, the fields, the original instruction) rather than by a language
//! model, so the search needs no model that can write instructions (the simulated one cannot);
//! and combinations are sampled at random with a seed rather than by a Bayesian (TPE) search.
//! Both are behind small functions that a model-written proposer or a smarter sampler can
//! replace.

use std::collections::BTreeSet;
use std::sync::Arc;

use foundation_actors::providers::LanguageModel;

use super::random_search::RandomSearch;
use crate::evaluate::{Evaluation, evaluate};
use crate::example::Example;
use crate::metric::Metric;
use crate::program::Program;
use crate::rng::Rng;
use crate::signature::Signature;

/// Output fields with at most this many distinct values in the training set are treated as
/// classes, and their values listed in proposed instructions.
pub const MAX_LISTED_VALUES: usize = 20;

/// The instruction × demonstration-set search.
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionSearch {
    /// Instructions proposed (the original included). Default 4.
    pub num_instructions: usize,
    /// How demonstration sets are built (its candidates, from zero-shot on, are the sets).
    pub demos: RandomSearch,
    /// Combinations evaluated, at most. Default 12.
    pub num_trials: usize,
}

impl Default for InstructionSearch {
    fn default() -> Self {
        InstructionSearch {
            num_instructions: 4,
            demos: RandomSearch { num_candidate_programs: 3, ..Default::default() },
            num_trials: 12,
        }
    }
}

/// One combination tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Index into [`InstructionReport::instructions`].
    pub instruction: usize,
    /// The demonstration set's candidate seed (see [`Candidate::seed`](super::Candidate::seed)).
    pub demos: i64,
    /// Mean validation score.
    pub score: f64,
}

/// What the search found.
#[derive(Debug, Clone)]
pub struct InstructionReport {
    /// The best program (instructions and demonstrations set).
    pub best: Program,
    /// Its evaluation.
    pub best_evaluation: Evaluation,
    /// The instructions proposed, the original first.
    pub instructions: Vec<String>,
    /// Every combination tried, in order.
    pub trials: Vec<Trial>,
}

/// Instructions for `signature` grounded in `trainset`: the original, then variants that name
/// the fields and list the values the outputs take (for class-like outputs), in seeded orders.
pub fn propose_instructions(signature: &Signature, trainset: &[Example], n: usize, seed: u64) -> Vec<String> {
    let names = |fields: &[crate::signature::Field]| {
        fields.iter().map(|f| format!("`{}`", f.name)).collect::<Vec<_>>()
    };
    let original = if signature.instructions.is_empty() {
        format!(
            "Given the fields {}, produce the fields {}.",
            names(&signature.inputs).join(", "),
            names(&signature.outputs).join(", ")
        )
    } else {
        signature.instructions.clone()
    };
    let mut rng = Rng::new(seed);
    let mut classes = Vec::new();
    for f in &signature.outputs {
        let values: BTreeSet<&str> =
            trainset.iter().filter_map(|e| e.labels.get(&f.name).map(String::as_str)).collect();
        if !values.is_empty() && values.len() <= MAX_LISTED_VALUES {
            let mut values: Vec<&str> = values.into_iter().collect();
            rng.shuffle(&mut values);
            classes.push(format!("The `{}` is one of {}.", f.name, values.join(", ")));
        }
    }
    let listed = classes.join(" ");
    let mut proposals = vec![original.clone()];
    let variants = [
        format!("{original} {listed}"),
        format!(
            "Read the {} and answer with the {}. {listed}",
            names(&signature.inputs).join(" and "),
            names(&signature.outputs).join(" and ")
        ),
        format!("{original} Be brief: answer with the value only. {listed}"),
        format!("You are an expert annotator. {original} {listed}"),
    ];
    for v in variants {
        let v = v.trim().to_string();
        if proposals.len() >= n.max(1) {
            break;
        }
        if !proposals.contains(&v) {
            proposals.push(v);
        }
    }
    proposals
}

impl InstructionSearch {
    /// What the search tries, without a model call: the instructions proposed for `student`'s
    /// first predictor, and the (instruction index, demonstration-set seed) of each trial, in
    /// the seeded order they are tried (at most `num_trials`).
    pub fn trials(
        &self,
        student: &Program,
        trainset: &[Example],
        seed: u64,
    ) -> (Vec<String>, Vec<(usize, i64)>) {
        let signature = &student.predictors.first().map(|(_, p)| p.signature.clone()).unwrap_or_else(|| {
            Signature { instructions: String::new(), inputs: Vec::new(), outputs: Vec::new() }
        });
        let instructions = propose_instructions(signature, trainset, self.num_instructions, seed);
        let sets: Vec<i64> = self.demos.seeds().collect();
        // Every combination, in a seeded order: the first `num_trials` are tried.
        let mut combos: Vec<(usize, i64)> =
            (0..instructions.len()).flat_map(|i| sets.iter().map(move |d| (i, *d))).collect();
        Rng::new(seed ^ 0x1e57).shuffle(&mut combos);
        combos.truncate(self.num_trials.max(1));
        (instructions, combos)
    }

    /// `program` with `instruction` on every predictor: a trial's candidate.
    pub fn with_instruction(program: &Program, instruction: &str) -> Program {
        let mut program = program.clone();
        for (_, p) in &mut program.predictors {
            p.signature.instructions = instruction.to_string();
        }
        program
    }

    /// Searches instruction × demonstration set for `student` (every predictor gets the same
    /// instruction), deterministic for `seed`. Only the demonstration sets a trial uses are
    /// built.
    pub async fn compile(
        &self,
        student: &Program,
        trainset: &[Example],
        valset: &[Example],
        lm: Arc<dyn LanguageModel>,
        metric: &Metric,
        seed: u64,
    ) -> InstructionReport {
        let (instructions, combos) = self.trials(student, trainset, seed);
        let mut demo_sets = std::collections::BTreeMap::new();
        for (_, demo_seed) in &combos {
            if !demo_sets.contains_key(demo_seed) {
                let set =
                    self.demos.candidate(*demo_seed, student, trainset, lm.as_ref(), metric, seed).await;
                demo_sets.insert(*demo_seed, set.program);
            }
        }
        let mut best: Option<(Program, Evaluation)> = None;
        let mut trials = Vec::new();
        for (i, d) in combos {
            let program = Self::with_instruction(&demo_sets[&d], &instructions[i]);
            let evaluation = evaluate(&program, valset, lm.clone(), metric, self.demos.concurrency).await;
            trials.push(Trial { instruction: i, demos: d, score: evaluation.mean });
            if best.as_ref().is_none_or(|(_, e)| evaluation.mean > e.mean) {
                best = Some((program, evaluation));
            }
        }
        // `combos` has at least one element.
        let (best, best_evaluation) = best.unwrap_or_else(|| unreachable!("no trial"));
        InstructionReport { best, best_evaluation, instructions, trials }
    }
}
