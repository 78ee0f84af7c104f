//! A run described in a file: what `foundation optimize submit --spec run.toml` reads, and
//! [`RunSpec::from_file`] in code. The file names the program, the data, the metric, the model
//! and the optimizer's parameters; the data files are read here (relative paths from the
//! spec's directory) and travel with the run, so no node needs them.
//!
//! ```toml
//! name = "question-types"            # the run's id: letters, digits, `-`, `_` (1 to 64)
//! model = "simulated"                # the language model the workers registered under this name
//! seed = 7
//! metric = "exact_match:label"       # or "f1:FIELD", "contains:FIELD", "numeric:FIELD[:TOL]"
//!                                    # (TOL `0.5` or `2%`; FIELD an output of the signature),
//!                                    # "judge:FIELD" (with [judge] below), or the name of a
//!                                    # metric the program registered
//! priority = 1                       # its share of the workers against other runs (1 to 1000)
//!
//! [program]
//! signature = "question -> label"
//! instructions = "Classify the type of answer the question asks for."
//! strategy = "predict"               # or "chain_of_thought"
//! [program.fields]                   # descriptions of fields, optional
//! label = "one of abbreviation, description, entity, person, location, number"
//!
//! [judge]                            # only with metric = "judge:FIELD" (LLM-as-judge)
//! rubric = "Names the type of answer the question expects, in one word."
//! model = "llm"                      # the judge's model among the workers' (default: the run's)
//!
//! [data]                             # JSON lines (an object per line) or CSV (a header row)
//! train = "train.jsonl"
//! validation = "validation.csv"
//!
//! [optimizer]
//! kind = "random_search"             # DSPy's BootstrapFewShotWithRandomSearch (the default), or
//!                                    # "labeled_few_shot", "bootstrap_few_shot",
//!                                    # "instruction_search" (MIPRO-style)
//! candidates = 8                     # shuffled candidates on top of the three fixed ones (for an
//!                                    # instruction search: its demonstration sets)
//! max_bootstrapped_demos = 4
//! max_labeled_demos = 16             # (labeled_few_shot: its k)
//! batch_size = 5                     # validation examples per evaluation task
//! instructions = 4                   # instruction_search only: instructions proposed (1 to 5)
//! trials = 12                        # instruction_search only: combinations scored
//! evaluation = "full"                # or "halving": successive halving (see `Plan`)
//! halving_first_examples = 10        # halving only: examples of the first round
//! halving_confidence = 0.95          # halving only: the best is kept with this probability
//! ```
//!
//! Every example must give each input field of the signature; a validation example must also
//! give the field the metric scores. Unknown keys, a missing field, a bad line and data over
//! [`MAX_DATA_BYTES`] a file or [`MAX_EXAMPLES`] a set are errors naming the file (and line).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::spec::{EvaluationPlan, Optimizer, RunSpec};
use crate::example::Example;
use crate::metric::Metric;
use crate::predict::Predictor;
use crate::program::Program;
use crate::signature::Signature;

/// Largest data file a spec may name (it travels with the run to every node that keeps it).
pub const MAX_DATA_BYTES: u64 = 32 * 1024 * 1024;
/// Most examples in one set (training or validation).
pub const MAX_EXAMPLES: usize = 100_000;
/// Largest spec file.
const MAX_SPEC_BYTES: u64 = 1024 * 1024;

/// Why a run's spec could not be read; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SpecFileError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The spec is not valid TOML of the expected shape (an unknown key, a missing one, a
    /// wrong type: the message says which and where).
    #[error("{path}: {source}")]
    Toml {
        /// The spec file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: toml::de::Error,
    },
    /// A value the spec gives is not usable.
    #[error("{path}: {message}")]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// Which key, and why.
        message: String,
    },
    /// A data file has a line that is not an example of the program.
    #[error("{path}, line {line}: {message}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based line (of the file; for CSV, where the record starts).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A data file or set over the limits.
    #[error("{path}: {message}")]
    TooLarge {
        /// The data file.
        path: PathBuf,
        /// Which limit.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecToml {
    name: String,
    model: String,
    #[serde(default)]
    seed: u64,
    metric: String,
    #[serde(default = "default_priority")]
    priority: u32,
    program: ProgramToml,
    data: DataToml,
    #[serde(default)]
    optimizer: OptimizerToml,
    #[serde(default)]
    judge: Option<JudgeToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JudgeToml {
    rubric: String,
    #[serde(default)]
    model: Option<String>,
}

fn default_priority() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramToml {
    signature: String,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    strategy: Strategy,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Strategy {
    #[default]
    Predict,
    ChainOfThought,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataToml {
    train: PathBuf,
    validation: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OptimizerToml {
    kind: OptimizerKind,
    candidates: usize,
    max_bootstrapped_demos: usize,
    max_labeled_demos: usize,
    batch_size: usize,
    instructions: Option<usize>,
    trials: Option<usize>,
    evaluation: EvaluationKind,
    halving_first_examples: Option<usize>,
    halving_confidence: Option<f64>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum OptimizerKind {
    #[default]
    RandomSearch,
    LabeledFewShot,
    BootstrapFewShot,
    InstructionSearch,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum EvaluationKind {
    #[default]
    Full,
    Halving,
}

impl Default for OptimizerToml {
    fn default() -> Self {
        OptimizerToml {
            kind: OptimizerKind::RandomSearch,
            candidates: 8,
            max_bootstrapped_demos: 4,
            max_labeled_demos: 16,
            batch_size: 5,
            instructions: None,
            trials: None,
            evaluation: EvaluationKind::Full,
            halving_first_examples: None,
            halving_confidence: None,
        }
    }
}

impl OptimizerToml {
    /// The optimizer and the evaluation it describes; keys of another kind are errors.
    fn plan(&self) -> Result<(Optimizer, EvaluationPlan), String> {
        let optimizer = match self.kind {
            OptimizerKind::InstructionSearch => Optimizer::InstructionSearch {
                num_instructions: self.instructions.unwrap_or(4),
                num_trials: self.trials.unwrap_or(12),
            },
            _ if self.instructions.is_some() || self.trials.is_some() => {
                return Err(
                    "optimizer.instructions and optimizer.trials are for kind = \"instruction_search\""
                        .into(),
                );
            }
            OptimizerKind::RandomSearch => Optimizer::RandomSearch,
            OptimizerKind::LabeledFewShot => Optimizer::LabeledFewShot,
            OptimizerKind::BootstrapFewShot => Optimizer::BootstrapFewShot,
        };
        let evaluation = match self.evaluation {
            EvaluationKind::Halving => {
                let EvaluationPlan::Halving { first_examples, confidence } = EvaluationPlan::halving() else {
                    unreachable!("halving() is halving")
                };
                EvaluationPlan::Halving {
                    first_examples: self.halving_first_examples.unwrap_or(first_examples),
                    confidence: self.halving_confidence.unwrap_or(confidence),
                }
            }
            EvaluationKind::Full
                if self.halving_first_examples.is_some() || self.halving_confidence.is_some() =>
            {
                return Err("optimizer.halving_* keys are for evaluation = \"halving\"".into());
            }
            EvaluationKind::Full => EvaluationPlan::Full,
        };
        Ok((optimizer, evaluation))
    }
}

/// Reads a file of at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> Result<String, SpecFileError> {
    use std::io::Read as _;
    let io = |source| SpecFileError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    if bytes > limit {
        return Err(SpecFileError::TooLarge {
            path: path.to_path_buf(),
            message: format!("{bytes} bytes, more than the {limit} allowed"),
        });
    }
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text).map_err(io)?;
    Ok(text)
}

/// One example from a record's `(field, value)` pairs: the signature's inputs as inputs, the
/// rest as labels; every input (and `required_label`, if any) must be there.
fn example(
    fields: impl IntoIterator<Item = (String, String)>,
    inputs: &[String],
    required_label: Option<&str>,
) -> Result<Example, String> {
    let mut example = Example::new();
    for (name, value) in fields {
        if inputs.contains(&name) {
            example.inputs.insert(name, value);
        } else {
            example.labels.insert(name, value);
        }
    }
    if let Some(missing) = inputs.iter().find(|f| !example.inputs.contains_key(*f)) {
        return Err(format!("no `{missing}` (an input of the signature)"));
    }
    if let Some(label) = required_label
        && !example.labels.contains_key(label)
    {
        return Err(format!("no `{label}` (the field the metric scores)"));
    }
    Ok(example)
}

/// Loads a data file: JSON lines, or CSV if its name ends in `.csv`.
fn load_examples(
    path: &Path,
    inputs: &[String],
    required_label: Option<&str>,
) -> Result<Vec<Example>, SpecFileError> {
    let text = read_bounded(path, MAX_DATA_BYTES)?;
    let data_error =
        |line: u64, message: String| SpecFileError::Data { path: path.to_path_buf(), line, message };
    let mut examples = Vec::new();
    let mut push = |example: Example| {
        if examples.len() == MAX_EXAMPLES {
            return Err(SpecFileError::TooLarge {
                path: path.to_path_buf(),
                message: format!("more than {MAX_EXAMPLES} examples"),
            });
        }
        examples.push(example);
        Ok(())
    };
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| data_error(1, e.to_string()))?.clone();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                data_error(line, e.to_string())
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let fields = headers.iter().zip(record.iter()).map(|(h, v)| (h.to_string(), v.to_string()));
            push(example(fields, inputs, required_label).map_err(|m| data_error(line, m))?)?;
        }
    } else {
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let line_no = i as u64 + 1;
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .map_err(|e| data_error(line_no, format!("not a JSON object: {e}")))?;
            let mut fields = Vec::with_capacity(object.len());
            for (name, value) in object {
                let value = match value {
                    serde_json::Value::String(s) => s,
                    other => return Err(data_error(line_no, format!("`{name}` is {other}, not a string"))),
                };
                fields.push((name, value));
            }
            push(example(fields, inputs, required_label).map_err(|m| data_error(line_no, m))?)?;
        }
    }
    if examples.is_empty() {
        return Err(data_error(0, "no example".into()));
    }
    Ok(examples)
}

impl RunSpec {
    /// Reads a run's spec file (see the [module documentation](self)) and the data files it
    /// names (relative paths from the spec's directory).
    pub fn from_file(path: &Path) -> Result<RunSpec, SpecFileError> {
        let text = read_bounded(path, MAX_SPEC_BYTES)?;
        let spec: SpecToml = toml::from_str(&text)
            .map_err(|source| SpecFileError::Toml { path: path.to_path_buf(), source })?;
        let invalid = |message: String| SpecFileError::Invalid { path: path.to_path_buf(), message };
        if spec.name.is_empty()
            || spec.name.len() > 64
            || !spec.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(format!(
                "name {:?}: 1 to 64 letters, digits, `-` and `_` (it names the run's coordinator and state)",
                spec.name
            )));
        }
        if !(1..=super::spec::MAX_PRIORITY).contains(&spec.priority) {
            return Err(invalid(format!("priority {}: 1 to {}", spec.priority, super::spec::MAX_PRIORITY)));
        }
        if spec.model.is_empty() {
            return Err(invalid("model: empty (the name the workers registered their model under)".into()));
        }
        let mut signature = Signature::parse(&spec.program.signature)
            .map_err(|e| invalid(format!("program.signature {:?}: {e}", spec.program.signature)))?;
        if let Some(instructions) = spec.program.instructions {
            signature = signature.with_instructions(instructions);
        }
        for (field, description) in spec.program.fields {
            if !signature.inputs.iter().chain(&signature.outputs).any(|f| f.name == field) {
                return Err(invalid(format!("program.fields.{field}: not a field of the signature")));
            }
            signature = signature.describe(&field, description);
        }
        let metric = match (spec.metric.split_once(':'), &spec.judge) {
            (Some(("judge", field)), Some(judge)) if !field.is_empty() => {
                Metric::Judge(crate::Judge::new(field, judge.rubric.clone(), judge.model.clone()))
            }
            (Some(("judge", _)), None) => {
                return Err(invalid(format!("metric {:?}: a judge needs a [judge] table with its rubric", spec.metric)));
            }
            (_, Some(_)) if !spec.metric.starts_with("judge:") => {
                return Err(invalid("[judge] is for metric = \"judge:FIELD\"".into()));
            }
            _ => Metric::by_name(&spec.metric).ok_or_else(|| {
                invalid(format!(
                    "metric {:?}: expected exact_match:FIELD, f1:FIELD, contains:FIELD, numeric:FIELD[:TOLERANCE] \
                     (`0.5`, `2%`), judge:FIELD or a metric this program registered",
                    spec.metric
                ))
            })?,
        };
        let scored = metric.field().map(str::to_string);
        if let Some(scored) = &scored
            && !signature.outputs.iter().any(|f| f.name == *scored)
        {
            return Err(invalid(format!(
                "metric {:?}: `{scored}` is not an output of the signature",
                spec.metric
            )));
        }
        let o = &spec.optimizer;
        if o.batch_size == 0 {
            return Err(invalid("optimizer.batch_size: at least 1".into()));
        }
        let (optimizer, evaluation) = o.plan().map_err(invalid)?;
        let inputs: Vec<String> = signature.inputs.iter().map(|f| f.name.clone()).collect();
        let base = path.parent().unwrap_or(Path::new("."));
        let trainset = load_examples(&base.join(&spec.data.train), &inputs, None)?;
        let valset = load_examples(&base.join(&spec.data.validation), &inputs, scored.as_deref())?;
        let predictor = match spec.program.strategy {
            Strategy::Predict => Predictor::predict(signature),
            Strategy::ChainOfThought => Predictor::chain_of_thought(signature),
        };
        let run = RunSpec {
            priority: spec.priority,
            student: Program::single(spec.name.clone(), predictor),
            run_id: spec.name,
            trainset,
            valset,
            metric,
            lm: spec.model,
            max_bootstrapped_demos: o.max_bootstrapped_demos,
            max_labeled_demos: o.max_labeled_demos,
            num_candidate_programs: o.candidates,
            seed: spec.seed,
            batch_size: o.batch_size,
            optimizer,
            evaluation,
        };
        run.check().map_err(invalid)?;
        Ok(run)
    }
}
