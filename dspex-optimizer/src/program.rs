//! Programs: predictors in sequence, each reading the example's inputs and earlier outputs.
//! Programs are data (serde), so that a worker on another node rebuilds the same program, and
//! files: [`Program::save`] writes an optimized program, [`Program::load`] reads it back (for
//! `foundation predict`, or a service that serves it).
//!
//! The file is JSON, `{"format": "foundation-program/1", "program": {...}}`. Loading checks the
//! format tag (a file of another format or version is refused, naming both), that the program
//! has a predictor, and bounds the file at [`MAX_PROGRAM_BYTES`]; every error names the file.

use std::collections::BTreeMap;

use foundation_actors::providers::LanguageModel;
use serde::{Deserialize, Serialize};

use crate::example::Prediction;
use crate::predict::{Predictor, ProgramError};

/// The format tag of a program file (and its version).
pub const PROGRAM_FORMAT: &str = "foundation-program/1";

/// Largest program file [`Program::load`] reads: demonstrations make programs grow, but a
/// program is a prompt's worth of text, not a dataset.
pub const MAX_PROGRAM_BYTES: u64 = 16 * 1024 * 1024;

/// Why a program file could not be written or read; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProgramFileError {
    /// The file could not be read or written.
    #[error("program file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PROGRAM_BYTES`].
    #[error("program file {path}: {bytes} bytes, more than the {MAX_PROGRAM_BYTES} a program file may have")]
    TooLarge {
        /// The file.
        path: std::path::PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Not JSON, or not a program.
    #[error("program file {path}: not a program ({source})")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// Where and why the JSON did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// Another format, or another version of this one.
    #[error("program file {path}: format `{found}`, this version reads `{PROGRAM_FORMAT}`")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// The format it says it has.
        found: String,
    },
    /// A program without a predictor.
    #[error("program file {path}: the program has no predictor")]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// A program file: its format tag and the program.
#[derive(Serialize, Deserialize)]
struct ProgramFile<P> {
    format: String,
    program: P,
}

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

    /// Writes the program to `path` as a program file (see the module documentation), replacing
    /// the file if it exists: written to a temporary file beside it, then renamed, so a reader
    /// never sees half a program.
    pub fn save(&self, path: &std::path::Path) -> Result<(), ProgramFileError> {
        let io = |source| ProgramFileError::Io { path: path.to_path_buf(), source };
        let file = ProgramFile { format: PROGRAM_FORMAT.to_string(), program: self };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = dir.join(foundation_core::files::unguessable_name(&format!(".{name}.")));
        std::fs::write(&temporary, json).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            io(e)
        })
    }

    /// Reads a program file written by [`save`](Self::save).
    pub fn load(path: &std::path::Path) -> Result<Self, ProgramFileError> {
        use std::io::Read as _;
        let io = |source| ProgramFileError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        if bytes > MAX_PROGRAM_BYTES {
            return Err(ProgramFileError::TooLarge { path: path.to_path_buf(), bytes });
        }
        let mut text = Vec::new();
        // Bounded even if the file grows while it is read.
        file.take(MAX_PROGRAM_BYTES + 1).read_to_end(&mut text).map_err(io)?;
        let invalid = |source| ProgramFileError::Invalid { path: path.to_path_buf(), source };
        // The tag first, so that another format is named as such, not as a JSON mismatch.
        let tagged: ProgramFile<serde_json::Value> = serde_json::from_slice(&text).map_err(invalid)?;
        if tagged.format != PROGRAM_FORMAT {
            return Err(ProgramFileError::Format { path: path.to_path_buf(), found: tagged.format });
        }
        let program: Program = serde_json::from_value(tagged.program).map_err(invalid)?;
        if program.predictors.is_empty() {
            return Err(ProgramFileError::Empty { path: path.to_path_buf() });
        }
        Ok(program)
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
            prediction.usage += usage;
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
