//! `BootstrapFewShotWithRandomSearch`: several candidate programs (zero-shot, labelled only,
//! bootstrapped in order, and bootstrapped from seeded shuffles with seeded sizes), each scored
//! on a validation set; the best wins.

use std::sync::Arc;

use foundation_actors::providers::LanguageModel;
use serde::{Deserialize, Serialize};

use super::bootstrap::BootstrapFewShot;
use super::labeled::LabeledFewShot;
use crate::evaluate::{Evaluation, evaluate};
use crate::example::Example;
use crate::metric::Metric;
use crate::program::Program;
use crate::rng::Rng;

/// DSPy's `BootstrapFewShotWithRandomSearch`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomSearch {
    /// The bootstrapping of every candidate (its `max_bootstrapped_demos` is the largest size
    /// a shuffled candidate draws).
    pub bootstrap: BootstrapFewShot,
    /// Shuffled candidates, on top of the three fixed ones. DSPy's default: 16.
    pub num_candidate_programs: usize,
    /// Stop as soon as a candidate scores this much.
    pub stop_at_score: Option<f64>,
    /// Concurrent evaluations. Default 8.
    pub concurrency: usize,
}

impl Default for RandomSearch {
    fn default() -> Self {
        RandomSearch {
            bootstrap: BootstrapFewShot::default(),
            num_candidate_programs: 16,
            stop_at_score: None,
            concurrency: 8,
        }
    }
}

/// One candidate program and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// DSPy's seed: -3 zero-shot, -2 labelled only, -1 bootstrapped in order, 0… shuffled.
    pub seed: i64,
    /// The program.
    pub program: Program,
}

/// The outcome of a search.
#[derive(Debug, Clone)]
pub struct SearchReport {
    /// The best candidate (the first of equals).
    pub best: Candidate,
    /// Its evaluation on the validation set.
    pub best_evaluation: Evaluation,
    /// Every candidate evaluated, with its mean score, in order.
    pub scores: Vec<(i64, f64)>,
}

impl RandomSearch {
    /// The candidate for DSPy's `seed` (see [`Candidate::seed`]), deterministic for
    /// (`seed`, `base_seed`). Bootstrapping calls the model on the training set.
    pub async fn candidate(
        &self,
        seed: i64,
        student: &Program,
        trainset: &[Example],
        lm: &dyn LanguageModel,
        metric: &Metric,
        base_seed: u64,
    ) -> Candidate {
        let derived = base_seed ^ (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let program = match seed {
            -3 => student.reset(),
            -2 => LabeledFewShot { k: self.bootstrap.max_labeled_demos }.compile(student, trainset, derived),
            -1 => self.bootstrap.compile(student, None, trainset, lm, metric, derived).await,
            _ => {
                let mut rng = Rng::new(derived);
                let mut shuffled = trainset.to_vec();
                rng.shuffle(&mut shuffled);
                let size = 1 + rng.below(self.bootstrap.max_bootstrapped_demos.max(1));
                let bootstrap = BootstrapFewShot { max_bootstrapped_demos: size, ..self.bootstrap.clone() };
                bootstrap.compile(student, None, &shuffled, lm, metric, derived).await
            }
        };
        Candidate { seed, program }
    }

    /// The seeds of every candidate, in the order they are tried.
    pub fn seeds(&self) -> impl Iterator<Item = i64> {
        -3..self.num_candidate_programs as i64
    }

    /// Builds and evaluates the candidates on `valset` in order (stopping early at
    /// `stop_at_score`), and returns the best.
    pub async fn compile(
        &self,
        student: &Program,
        trainset: &[Example],
        valset: &[Example],
        lm: Arc<dyn LanguageModel>,
        metric: &Metric,
        base_seed: u64,
    ) -> SearchReport {
        let mut best: Option<(Candidate, Evaluation)> = None;
        let mut scores = Vec::new();
        for seed in self.seeds() {
            let candidate = self.candidate(seed, student, trainset, lm.as_ref(), metric, base_seed).await;
            let evaluation = evaluate(&candidate.program, valset, lm.clone(), metric, self.concurrency).await;
            tracing::debug!(seed, score = evaluation.mean, "candidate evaluated");
            scores.push((seed, evaluation.mean));
            let stop = self.stop_at_score.is_some_and(|s| evaluation.mean >= s);
            if best.as_ref().is_none_or(|(_, e)| evaluation.mean > e.mean) {
                best = Some((candidate, evaluation));
            }
            if stop {
                break;
            }
        }
        // At least the three fixed candidates ran.
        let (best, best_evaluation) = best.unwrap_or_else(|| unreachable!("no candidate"));
        SearchReport { best, best_evaluation, scores }
    }
}
