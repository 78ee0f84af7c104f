//! Predictors: one call to the language model for one signature, with demonstrations.

use std::collections::BTreeMap;

use foundation_actors::providers::{LanguageModel, LmError, Usage};
use serde::{Deserialize, Serialize};

use crate::adapter::{self, ParseError};
use crate::example::Example;
use crate::signature::{Field, Signature};

/// Default completion budget of one prediction.
pub const DEFAULT_MAX_TOKENS: u64 = 256;

/// How a predictor asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// The signature as it is.
    Predict,
    /// A `reasoning` output first ("think step by step"), then the signature's outputs.
    ChainOfThought,
}

/// One predictor: a signature, a strategy and its demonstrations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predictor {
    /// What it takes and gives.
    pub signature: Signature,
    /// How it asks.
    pub strategy: Strategy,
    /// Demonstrations shown before the query (inputs and outputs in `inputs` / `labels`).
    pub demos: Vec<Example>,
    /// Completion budget. Default [`DEFAULT_MAX_TOKENS`].
    pub max_tokens: u64,
}

/// Why a predictor or program did not produce a prediction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProgramError {
    /// The language model failed.
    #[error("predictor `{predictor}`: {source}")]
    Lm {
        /// The predictor.
        predictor: String,
        /// What the model layer said.
        #[source]
        source: LmError,
    },
    /// The answer lacked an output field.
    #[error("predictor `{predictor}`: {source}")]
    Parse {
        /// The predictor.
        predictor: String,
        /// What was missing.
        #[source]
        source: ParseError,
    },
    /// An input field no example field or earlier predictor provides.
    #[error(
        "predictor `{predictor}` needs input `{field}`, which neither the example nor an earlier predictor gives"
    )]
    MissingInput {
        /// The predictor.
        predictor: String,
        /// The field.
        field: String,
    },
}

impl Predictor {
    /// A plain predictor.
    pub fn predict(signature: Signature) -> Self {
        Predictor {
            signature,
            strategy: Strategy::Predict,
            demos: Vec::new(),
            max_tokens: DEFAULT_MAX_TOKENS,
        }
    }

    /// A chain-of-thought predictor.
    pub fn chain_of_thought(signature: Signature) -> Self {
        Predictor { strategy: Strategy::ChainOfThought, ..Self::predict(signature) }
    }

    /// The signature the model sees (with `reasoning` for chain of thought).
    pub fn effective_signature(&self) -> Signature {
        match self.strategy {
            Strategy::Predict => self.signature.clone(),
            Strategy::ChainOfThought => self.signature.clone().prepend_output(Field {
                name: "reasoning".into(),
                description: "think step by step before answering".into(),
            }),
        }
    }

    /// Calls the model once. `name` names the predictor in errors.
    pub async fn forward(
        &self,
        name: &str,
        lm: &dyn LanguageModel,
        state: &BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, Usage), ProgramError> {
        let signature = self.effective_signature();
        let mut inputs = BTreeMap::new();
        for f in &signature.inputs {
            let value = state.get(&f.name).ok_or_else(|| ProgramError::MissingInput {
                predictor: name.into(),
                field: f.name.clone(),
            })?;
            inputs.insert(f.name.clone(), value.clone());
        }
        let request = adapter::render(&signature, &self.demos, &inputs, self.max_tokens);
        let completion = lm
            .complete(&request)
            .await
            .map_err(|source| ProgramError::Lm { predictor: name.into(), source })?;
        let outputs = adapter::parse(&signature, &completion.content)
            .map_err(|source| ProgramError::Parse { predictor: name.into(), source })?;
        Ok((outputs, completion.usage))
    }
}
