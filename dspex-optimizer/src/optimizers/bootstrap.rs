//! `BootstrapFewShot`: a teacher runs on training examples; the traces of the runs the metric
//! accepts become demonstrations, topped up with labelled examples.

use std::collections::{BTreeMap, BTreeSet};

use foundation_actors::providers::LanguageModel;

use super::labeled::LabeledFewShot;
use crate::example::Example;
use crate::metric::Metric;
use crate::program::Program;
use crate::rng::Rng;

/// DSPy's `BootstrapFewShot`.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapFewShot {
    /// Bootstrapped demonstrations per predictor, at most. DSPy's default: 4.
    pub max_bootstrapped_demos: usize,
    /// Labelled demonstrations per predictor, at most (also the teacher's). DSPy's default: 16.
    pub max_labeled_demos: usize,
    /// Attempts per training example. DSPy's default: 1.
    pub max_rounds: usize,
    /// A run is accepted when its score reaches this (`None`: any score above 0).
    pub metric_threshold: Option<f64>,
}

impl Default for BootstrapFewShot {
    fn default() -> Self {
        BootstrapFewShot {
            max_bootstrapped_demos: 4,
            max_labeled_demos: 16,
            max_rounds: 1,
            metric_threshold: None,
        }
    }
}

impl BootstrapFewShot {
    /// Compiles `student`: the teacher (`teacher`, or the student with labelled demonstrations)
    /// runs on the training examples in order until every predictor has
    /// `max_bootstrapped_demos` accepted traces; the examples not bootstrapped fill up to
    /// `max_labeled_demos` (sampled with `seed`).
    pub async fn compile(
        &self,
        student: &Program,
        teacher: Option<&Program>,
        trainset: &[Example],
        lm: &dyn LanguageModel,
        metric: &Metric,
        seed: u64,
    ) -> Program {
        let teacher = match teacher {
            Some(t) => t.clone(),
            None if self.max_labeled_demos > 0 => {
                LabeledFewShot { k: self.max_labeled_demos }.compile(student, trainset, seed)
            }
            None => student.reset(),
        };
        let mut bootstrapped: BTreeMap<String, Vec<Example>> = BTreeMap::new();
        let mut used = BTreeSet::new();
        let enough = |b: &BTreeMap<String, Vec<Example>>| {
            student
                .predictors
                .iter()
                .all(|(n, _)| b.get(n).map_or(0, Vec::len) >= self.max_bootstrapped_demos)
        };
        'examples: for (index, example) in trainset.iter().enumerate() {
            if enough(&bootstrapped) {
                break;
            }
            for _round in 0..self.max_rounds.max(1) {
                // The example must not see itself among the teacher's demonstrations.
                let mut teacher = teacher.clone();
                for (_, p) in &mut teacher.predictors {
                    p.demos.retain(|d| d != example);
                }
                let Ok((prediction, trace)) = teacher.run(lm, &example.inputs).await else { continue };
                // A judgement that fails accepts nothing.
                let Ok(score) = metric.score_with(example, &prediction, lm).await else { continue };
                let accepted = match self.metric_threshold {
                    Some(t) => score >= t,
                    None => score > 0.0,
                };
                if accepted {
                    for step in trace {
                        let demo = Example { inputs: step.inputs, labels: step.outputs };
                        bootstrapped.entry(step.predictor).or_default().push(demo);
                    }
                    used.insert(index);
                    continue 'examples;
                }
            }
        }
        let rest: Vec<Example> =
            trainset.iter().enumerate().filter(|(i, _)| !used.contains(i)).map(|(_, e)| e.clone()).collect();
        let mut rng = Rng::new(seed);
        let mut program = student.reset();
        for (name, predictor) in &mut program.predictors {
            let mut demos: Vec<Example> = bootstrapped.get(name).cloned().unwrap_or_default();
            demos.truncate(self.max_bootstrapped_demos);
            let labeled = self.max_labeled_demos.saturating_sub(demos.len()).min(rest.len());
            demos.extend(rng.sample(&rest, labeled));
            predictor.demos = demos;
        }
        program
    }
}
