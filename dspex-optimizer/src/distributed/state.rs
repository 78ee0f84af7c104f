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

    /// Loads the state of `run` from `dir` (none yet: empty). A file that is not a run's state
    /// (corrupt, truncated by a full disk, written by another version) is an error of kind
    /// `InvalidData` naming the file.
    pub fn load(dir: &Path, run: &str) -> std::io::Result<Done> {
        let file = path(dir, run);
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("state of run `{run}` ({}) is not readable: {e}", file.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Done::default()),
            Err(e) => Err(e),
        }
    }

    /// [`load`](Self::load), except that a corrupt state is reported (logged as an error with
    /// the run's name and file), moved aside to `RUN.json.corrupt` for inspection, and replaced
    /// by an empty one: the run's tasks are done again (their results are deterministic), and
    /// a coordinator never fails to start, again and again, on a file it cannot read. Other
    /// errors (the directory cannot be read) are returned.
    pub fn load_or_recover(dir: &Path, run: &str) -> std::io::Result<Done> {
        match Done::load(dir, run) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let file = path(dir, run);
                let aside = dir.join(format!("{run}.json.corrupt"));
                let moved = std::fs::rename(&file, &aside);
                tracing::error!(
                    run,
                    error = %e,
                    moved_to = %aside.display(),
                    moved = moved.is_ok(),
                    "a run's state is corrupt: starting the run over from nothing"
                );
                Ok(Done::default())
            }
            other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_state_is_moved_aside_and_the_run_starts_over() {
        let dir = std::env::temp_dir().join(foundation_core::files::unguessable_name("done-test-"));
        foundation_core::files::create_private_dir(&dir).unwrap();
        let done = Done { duplicates: 3, work_ms: 9, ..Done::default() };
        done.save(&dir, "r").unwrap();
        assert_eq!(Done::load_or_recover(&dir, "r").unwrap(), done);

        // Truncated (a full disk, a torn copy): an error for `load`, a fresh start for the
        // coordinator, and the file kept beside for inspection.
        let bytes = std::fs::read(path(&dir, "r")).unwrap();
        std::fs::write(path(&dir, "r"), &bytes[..bytes.len() / 2]).unwrap();
        let error = Done::load(&dir, "r").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("run `r`"), "{error}");
        assert_eq!(Done::load_or_recover(&dir, "r").unwrap(), Done::default());
        assert!(dir.join("r.json.corrupt").exists());
        assert!(!path(&dir, "r").exists());
        // Starting over again finds nothing to recover.
        assert_eq!(Done::load_or_recover(&dir, "r").unwrap(), Done::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
