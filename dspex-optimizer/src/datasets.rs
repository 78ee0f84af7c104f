//! Datasets bundled with the crate, and loading your own from JSON lines.

use foundation_core::Cause;

use crate::example::Example;

/// Why a dataset did not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct DatasetError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong (the JSON error, or an explanation).
    #[source]
    pub source: Cause,
}

/// Loads examples from JSON lines: one object per line whose string fields named in `inputs` are
/// inputs, and the other string fields labels.
pub fn from_jsonl(text: &str, inputs: &[&str]) -> Result<Vec<Example>, DatasetError> {
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let error = |source: Cause| DatasetError { line: i + 1, source };
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| error(Cause::new(e)))?;
        let mut example = Example::new();
        for (key, value) in object {
            let value = value
                .as_str()
                .ok_or_else(|| error(format!("field `{key}` is not a string").into()))?
                .to_string();
            if inputs.contains(&key.as_str()) {
                example.inputs.insert(key, value);
            } else {
                example.labels.insert(key, value);
            }
        }
        for input in inputs {
            if !example.inputs.contains_key(*input) {
                return Err(error(format!("no `{input}` field").into()));
            }
        }
        examples.push(example);
    }
    Ok(examples)
}

/// The bundled question-classification dataset: 260 questions (`question`), each labelled
/// (`label`) with its answer type from the TREC coarse classes — `abbreviation`,
/// `description`, `entity`, `person`, `location`, `number`. Written for this repository and
/// dedicated to the public domain (CC0); see `data/README.md`.
pub fn questions() -> Vec<Example> {
    // The bundled file is checked by this crate's tests: it always loads.
    from_jsonl(include_str!("../data/questions.jsonl"), &["question"]).unwrap_or_default()
}
