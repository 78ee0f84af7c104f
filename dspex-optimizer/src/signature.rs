//! Signatures: what a predictor takes and gives, with instructions.

use serde::{Deserialize, Serialize};

/// One input or output field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Its name in examples (`question`).
    pub name: String,
    /// What it holds, for the prompt (may be empty).
    pub description: String,
}

impl Field {
    /// A field without description.
    pub fn new(name: impl Into<String>) -> Self {
        Field { name: name.into(), description: String::new() }
    }

    /// How it is written in prompts: `question` → `Question`, `user_name` → `User name`.
    pub fn prefix(&self) -> String {
        let spaced = self.name.replace('_', " ");
        let mut chars = spaced.chars();
        match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }
}

/// Why a signature is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not of the form `inputs -> outputs`.
    #[error("signature `{0}` must be `inputs -> outputs`, e.g. `question -> answer`")]
    Shape(String),
    /// A field name that is empty or not an identifier.
    #[error("field `{0}` must be a lowercase identifier (letters, digits, `_`)")]
    FieldName(String),
    /// The same name twice.
    #[error("field `{0}` appears twice")]
    Duplicate(String),
}

/// Inputs, outputs and instructions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// What the model is asked to do.
    pub instructions: String,
    /// Input fields, in prompt order.
    pub inputs: Vec<Field>,
    /// Output fields, in prompt order.
    pub outputs: Vec<Field>,
}

impl Signature {
    /// Parses `"question -> answer"` or `"context, question -> reasoning, answer"`.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let (inputs, outputs) =
            text.split_once("->").ok_or_else(|| SignatureError::Shape(text.to_string()))?;
        let fields = |list: &str| -> Result<Vec<Field>, SignatureError> {
            list.split(',').map(str::trim).map(Field::new).map(Ok).collect()
        };
        let signature =
            Signature { instructions: String::new(), inputs: fields(inputs)?, outputs: fields(outputs)? };
        signature.check()?;
        if signature.inputs.is_empty() || signature.outputs.is_empty() {
            return Err(SignatureError::Shape(text.to_string()));
        }
        Ok(signature)
    }

    /// With these instructions.
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }

    /// Describes a field (input or output) for the prompt.
    pub fn describe(mut self, name: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        for f in self.inputs.iter_mut().chain(self.outputs.iter_mut()).filter(|f| f.name == name) {
            f.description.clone_from(&description);
        }
        self
    }

    /// Adds an output field before the others (what `ChainOfThought` does with `reasoning`).
    pub fn prepend_output(mut self, field: Field) -> Self {
        if !self.outputs.iter().any(|f| f.name == field.name) {
            self.outputs.insert(0, field);
        }
        self
    }

    fn check(&self) -> Result<(), SignatureError> {
        let mut seen = std::collections::BTreeSet::new();
        for f in self.inputs.iter().chain(&self.outputs) {
            let ok = !f.name.is_empty()
                && f.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && f.name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
            if !ok {
                return Err(SignatureError::FieldName(f.name.clone()));
            }
            if !seen.insert(f.name.clone()) {
                return Err(SignatureError::Duplicate(f.name.clone()));
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Signature {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Signature::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_reasons() {
        let s = Signature::parse("context, question -> answer").unwrap();
        assert_eq!(s.inputs.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["context", "question"]);
        assert_eq!(s.outputs[0].prefix(), "Answer");
        assert_eq!(Field::new("user_name").prefix(), "User name");
        assert!(matches!(Signature::parse("question answer"), Err(SignatureError::Shape(_))));
        assert!(matches!(Signature::parse("question -> "), Err(SignatureError::FieldName(_))));
        assert!(matches!(Signature::parse("Question -> answer"), Err(SignatureError::FieldName(_))));
        assert!(matches!(Signature::parse("q -> q"), Err(SignatureError::Duplicate(_))));
    }
}
