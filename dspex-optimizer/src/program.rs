//! Programs: predictors in sequence, each reading the example's inputs and earlier outputs.
//! Programs are data (serde), so that a worker on another node rebuilds the same program.

use std::collections::BTreeMap;

use foundation_actors::providers::{LanguageModel, Usage};
use serde::{Deserialize, Serialize};

use crate::example::Prediction;
use crate::predict::{Predictor, ProgramError};

/// One predictor's part of a run: what it was given and what it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The predictor.
    pub predictor: String,
    /// Its inputs.
    pub inputs: BTreeMap<String, String>,
    /// Its outputs.
    pub outputs: BTreeMap<String, String>,
}

/// A program of named predictors, run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Its name.
    pub name: String,
    /// The predictors, by name, in the order they run.
    pub predictors: Vec<(String, Predictor)>,
}

impl Program {
    /// An empty program.
    pub fn new(name: impl Into<String>) -> Self {
        Program { name: name.into(), predictors: Vec::new() }
    }

    /// A program of one predictor.
    pub fn single(name: impl Into<String>, predictor: Predictor) -> Self {
        let name = name.into();
        Program { predictors: vec![(name.clone(), predictor)], name }
    }

    /// Appends a predictor.
    pub fn then(mut self, name: impl Into<String>, predictor: Predictor) -> Self {
        self.predictors.push((name.into(), predictor));
        self
    }

    /// The same program without any demonstration.
    pub fn reset(&self) -> Self {
        let mut p = self.clone();
        for (_, predictor) in &mut p.predictors {
            predictor.demos.clear();
        }
        p
    }

    /// Runs every predictor on `inputs`; returns the prediction (every output field) and the
    /// trace of what each predictor saw and said.
    pub async fn run(
        &self,
        lm: &dyn LanguageModel,
        inputs: &BTreeMap<String, String>,
    ) -> Result<(Prediction, Vec<TraceStep>), ProgramError> {
        let mut state = inputs.clone();
        let mut prediction = Prediction::default();
        let mut trace = Vec::new();
        for (name, predictor) in &self.predictors {
            let (outputs, usage) = predictor.forward(name, lm, &state).await?;
            prediction.usage = Usage {
                prompt_tokens: prediction.usage.prompt_tokens + usage.prompt_tokens,
                completion_tokens: prediction.usage.completion_tokens + usage.completion_tokens,
            };
            let step_inputs = predictor
                .effective_signature()
                .inputs
                .iter()
                .filter_map(|f| state.get(&f.name).map(|v| (f.name.clone(), v.clone())))
                .collect();
            for (k, v) in &outputs {
                state.insert(k.clone(), v.clone());
                prediction.fields.insert(k.clone(), v.clone());
            }
            trace.push(TraceStep { predictor: name.clone(), inputs: step_inputs, outputs });
        }
        Ok((prediction, trace))
    }
}
