//! Examples (inputs and labels) and predictions.

use std::collections::BTreeMap;

use foundation_actors::providers::Usage;
use serde::{Deserialize, Serialize};

/// One example: input fields and, for training and evaluation, labelled output fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Input fields by name.
    pub inputs: BTreeMap<String, String>,
    /// Expected outputs by name (empty for an unlabelled example).
    pub labels: BTreeMap<String, String>,
}

impl Example {
    /// An example with no fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// With an input field.
    pub fn input(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inputs.insert(name.into(), value.into());
        self
    }

    /// With a label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// A field, input or label.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.inputs.get(name).or_else(|| self.labels.get(name)).map(String::as_str)
    }
}

/// What a program predicted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Output fields by name (of every predictor of the program).
    pub fields: BTreeMap<String, String>,
    /// Tokens used to predict it.
    pub usage: Usage,
}

impl Prediction {
    /// A field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}
