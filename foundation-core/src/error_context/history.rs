//! The recorded history of an operation: a tree of steps, serializable and printable.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "error")]
pub enum Outcome {
    /// Still running when the history was taken.
    Running,
    /// Finished successfully.
    Ok,
    /// Finished with an error (its message, size-bounded).
    Failed(String),
    /// Its future was dropped before it finished (a timeout or `select!` elsewhere).
    Cancelled,
    /// It panicked.
    Panicked,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Ok => "ok",
            Outcome::Failed(_) => "FAILED",
            Outcome::Cancelled => "cancelled",
            Outcome::Panicked => "PANICKED",
        }
    }
}

/// A value captured during a step, as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// The key it was recorded under.
    pub key: String,
    /// The value as JSON, or a prefix of it when it was larger than the bound.
    pub json: String,
    /// The full size in bytes when `json` was truncated.
    pub truncated_from: Option<usize>,
}

/// One step and the steps under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// When it started, measured from the start of the operation.
    pub start: Duration,
    /// How long it ran (until now, if still running).
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Values captured while it ran.
    pub data: Vec<Captured>,
    /// The first child steps kept (see `ErrorContextConfig::keep_first_children`).
    pub first_children: Vec<StepRecord>,
    /// How many child steps between the first and the last were not kept.
    pub elided_children: u64,
    /// The most recent child steps kept, oldest first.
    pub last_children: Vec<StepRecord>,
}

impl StepRecord {
    /// All kept children, in start order (the elided ones sit between the two halves).
    pub fn children(&self) -> impl Iterator<Item = &StepRecord> {
        self.first_children.iter().chain(self.last_children.iter())
    }

    /// Depth-first search for the first step with this name.
    pub fn find(&self, name: &str) -> Option<&StepRecord> {
        if self.name == name {
            return Some(self);
        }
        self.children().find_map(|c| c.find(name))
    }

    /// Number of steps kept in this subtree, this one included.
    pub fn len(&self) -> usize {
        1 + self.children().map(StepRecord::len).sum::<usize>()
    }

    /// Always false: a record holds at least itself. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The history of one operation: its root step (the operation) and everything under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepHistory {
    /// The operation, as the root step.
    pub root: StepRecord,
    /// Wall-clock start of the operation, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Steps that ran but were not recorded because a bound was reached (total steps or depth).
    pub unrecorded_steps: u64,
}

impl fmt::Display for StepHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = &self.root;
        let verb = match &root.outcome {
            Outcome::Ok => "succeeded",
            Outcome::Running => "was still running",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled => "was cancelled",
            Outcome::Panicked => "panicked",
        };
        write!(f, "operation `{}` {verb} after {}", root.name, Millis(root.duration))?;
        write_data(f, &root.data)?;
        writeln!(f, "; steps:")?;
        for child in root.children().take(root.first_children.len()) {
            write_step(f, child, 0)?;
        }
        write_elided(f, root.elided_children, 0)?;
        for child in &root.last_children {
            write_step(f, child, 0)?;
        }
        if self.unrecorded_steps > 0 {
            writeln!(f, "  ({} more steps ran past the recording bounds)", self.unrecorded_steps)?;
        }
        Ok(())
    }
}

fn write_step(f: &mut fmt::Formatter<'_>, step: &StepRecord, depth: usize) -> fmt::Result {
    write!(
        f,
        "  {:<9} {:>10}  {:indent$}{}",
        step.outcome.label(),
        Millis(step.duration).to_string(),
        "",
        step.name,
        indent = depth * 2
    )?;
    write_data(f, &step.data)?;
    if let Outcome::Failed(message) = &step.outcome {
        write!(f, ": {message}")?;
    }
    writeln!(f)?;
    for child in &step.first_children {
        write_step(f, child, depth + 1)?;
    }
    write_elided(f, step.elided_children, depth + 1)?;
    for child in &step.last_children {
        write_step(f, child, depth + 1)?;
    }
    Ok(())
}

fn write_elided(f: &mut fmt::Formatter<'_>, n: u64, depth: usize) -> fmt::Result {
    if n > 0 {
        writeln!(f, "  {:<9} {:>10}  {:indent$}... {n} steps elided ...", "", "", "", indent = depth * 2)?;
    }
    Ok(())
}

fn write_data(f: &mut fmt::Formatter<'_>, data: &[Captured]) -> fmt::Result {
    for c in data {
        write!(f, " {}={}", c.key, c.json)?;
        if let Some(n) = c.truncated_from {
            write!(f, "...({n} bytes)")?;
        }
    }
    Ok(())
}

struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1e3;
        if ms >= 1000.0 {
            write!(f, "{:.2}s", ms / 1e3)
        } else if ms >= 1.0 {
            write!(f, "{ms:.2}ms")
        } else {
            write!(f, "{:.1}µs", ms * 1e3)
        }
    }
}
