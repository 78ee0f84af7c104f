//! `LabeledFewShot`: up to `k` labelled training examples as every predictor's demonstrations.

use crate::example::Example;
use crate::program::Program;
use crate::rng::Rng;

/// DSPy's `LabeledFewShot`: a seeded sample of `k` training examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabeledFewShot {
    /// Demonstrations per predictor.
    pub k: usize,
}

impl LabeledFewShot {
    /// The program with `k` labelled demonstrations per predictor, sampled with `seed`.
    pub fn compile(&self, student: &Program, trainset: &[Example], seed: u64) -> Program {
        let mut program = student.reset();
        let mut rng = Rng::new(seed);
        let demos = rng.sample(trainset, self.k.min(trainset.len()));
        for (_, predictor) in &mut program.predictors {
            predictor.demos.clone_from(&demos);
        }
        program
    }
}
