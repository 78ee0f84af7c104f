//! The coordinator's state: what is done, persisted after every change so that a coordinator
//! that is restarted (on this node or, after failover, on another with the same state
//! directory) resumes where the last one stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{Outcome, RunSpec, Task, TaskKind};
use crate::program::Program;

/// What is done, by task id. Tasks are numbered the same way by every coordinator of a run:
/// `Build` tasks `0..candidates`, then each candidate's `Eval` batches in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// Built candidates by seed.
    pub built: BTreeMap<i64, Program>,
    /// Scores by seed, then validation index: (score, failed).
    pub scores: BTreeMap<i64, BTreeMap<usize, (f64, bool)>>,
    /// Task ids completed (each recorded once).
    pub tasks: BTreeMap<u64, String>,
    /// Results that arrived for tasks already done (late or repeated), ignored.
    pub duplicates: u64,
    /// The run was stopped before it finished.
    pub stopped: bool,
    /// Milliseconds workers spent on the recorded tasks.
    #[serde(default)]
    pub work_ms: u64,
}

impl Done {
    /// Records a result once; returns whether it was new.
    pub fn record(&mut self, spec: &RunSpec, task: &Task, node: &str, outcome: Outcome) -> bool {
        if self.tasks.contains_key(&task.id) {
            self.duplicates += 1;
            return false;
        }
        match (&task.kind, outcome) {
            (TaskKind::Build { seed }, Outcome::Built(program)) => {
                self.built.insert(*seed, program);
            }
            (TaskKind::Eval { seed, .. }, Outcome::Scores(scores)) => {
                for (index, score, failed) in scores.into_iter().filter(|(i, _, _)| *i < spec.valset.len()) {
                    self.scores.entry(*seed).or_default().insert(index, (score, failed));
                }
            }
            _ => return false,
        }
        self.tasks.insert(task.id, node.to_string());
        true
    }

    /// Loads the state of `run` from `dir` (none yet: empty).
    pub fn load(dir: &Path, run: &str) -> std::io::Result<Done> {
        match std::fs::read(path(dir, run)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Done::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes it atomically (a temporary file renamed over the old one): a crash leaves the
    /// previous state or the new one, never half of one.
    pub fn save(&self, dir: &Path, run: &str) -> std::io::Result<()> {
        foundation_core::files::create_private_dir(dir)?;
        let tmp = dir.join(format!("{run}.json.tmp"));
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path(dir, run))
    }
}

/// Where a run's state lives.
pub fn path(dir: &Path, run: &str) -> PathBuf {
    dir.join(format!("{run}.json"))
}
