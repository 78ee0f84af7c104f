//! What the optimization service's log holds, and its formats. The first byte of every entry
//! is its format: this version writes [`FORMAT`] and reads it and format 1 (the entries of the
//! version before runs named their optimizer and evaluation and counted model calls: read as
//! random searches with a full evaluation and no calls counted), so a cluster restarted on this
//! version goes on with the runs it had. An entry of another format is skipped and reported.
//!
//! A submission carries its plan's digest ([`Plan::digest`]): a scheduler whose version would
//! number the run's tasks otherwise (another instruction proposer, another shuffle) fails the
//! run with the reason rather than credit recorded scores to other candidates.

use foundation_actors::wire::WireError;
use serde::{Deserialize, Serialize};

use super::plan::Plan;
use super::spec::{EvaluationPlan, Optimizer, Outcome, RunSpec};
use super::state::{Calls, Recorded};
use crate::example::Example;
use crate::metric::Metric;
use crate::program::Program;

/// The format this version writes.
pub(crate) const FORMAT: u8 = 2;

/// An entry of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// A run submitted, with its plan's digest (`None`: logged by a version without digests).
    Submitted {
        spec: RunSpec,
        plan: Option<u64>,
    },
    Result {
        run: String,
        record: Recorded,
    },
    Stopped {
        run: String,
    },
    Resumed {
        run: String,
    },
    Failed {
        run: String,
        reason: String,
    },
}

impl Entry {
    /// The submission of `spec`, with its plan's digest.
    pub(crate) fn submitted(spec: RunSpec) -> Entry {
        let plan = Some(Plan::new(&spec).digest());
        Entry::Submitted { spec, plan }
    }
}

pub(crate) fn encode(entry: &Entry) -> Result<Vec<u8>, WireError> {
    let mut bytes = vec![FORMAT];
    bytes.extend(foundation_actors::wire::encode(entry, usize::MAX)?);
    Ok(bytes)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Entry, String> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => foundation_actors::wire::decode(rest).map_err(|e| e.to_string()),
        Some((1, rest)) => {
            foundation_actors::wire::decode::<EntryV1>(rest).map(EntryV1::upgrade).map_err(|e| e.to_string())
        }
        Some((other, _)) => Err(format!("format {other}, this version reads 1 and {FORMAT}")),
        None => Err("an empty entry".into()),
    }
}

/// Format 1's entry (written again by the tests, as that version wrote it).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum EntryV1 {
    Submitted { spec: SpecV1 },
    Result { run: String, record: RecordedV1 },
    Stopped { run: String },
    Resumed { run: String },
    Failed { run: String, reason: String },
}

/// Format 1's run: a random search with a full evaluation.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct SpecV1 {
    run_id: String,
    student: Program,
    trainset: Vec<Example>,
    valset: Vec<Example>,
    metric: Metric,
    lm: String,
    max_bootstrapped_demos: usize,
    max_labeled_demos: usize,
    num_candidate_programs: usize,
    seed: u64,
    batch_size: usize,
    priority: u32,
}

/// Format 1's result: no calls counted.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct RecordedV1 {
    task: u64,
    seed: i64,
    node: String,
    outcome: Outcome,
    work_ms: u64,
}

impl EntryV1 {
    fn upgrade(self) -> Entry {
        match self {
            EntryV1::Submitted { spec: s } => Entry::Submitted {
                spec: RunSpec {
                    run_id: s.run_id,
                    student: s.student,
                    trainset: s.trainset,
                    valset: s.valset,
                    metric: s.metric,
                    lm: s.lm,
                    max_bootstrapped_demos: s.max_bootstrapped_demos,
                    max_labeled_demos: s.max_labeled_demos,
                    num_candidate_programs: s.num_candidate_programs,
                    seed: s.seed,
                    batch_size: s.batch_size,
                    priority: s.priority,
                    optimizer: Optimizer::RandomSearch,
                    evaluation: EvaluationPlan::Full,
                },
                plan: None,
            },
            EntryV1::Result { run, record: r } => Entry::Result {
                run,
                record: Recorded {
                    task: r.task,
                    key: r.seed,
                    node: r.node,
                    outcome: r.outcome,
                    work_ms: r.work_ms,
                    calls: Calls::default(),
                },
            },
            EntryV1::Stopped { run } => Entry::Stopped { run },
            EntryV1::Resumed { run } => Entry::Resumed { run },
            EntryV1::Failed { run, reason } => Entry::Failed { run, reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(entry: &EntryV1) -> Vec<u8> {
        let mut bytes = vec![1];
        bytes.extend(foundation_actors::wire::encode(entry, usize::MAX).unwrap());
        bytes
    }

    #[test]
    fn format_one_entries_read_as_random_searches_and_others_are_refused() {
        let now = RunSpec::questions("old", 7, 2);
        let spec = SpecV1 {
            run_id: now.run_id.clone(),
            student: now.student.clone(),
            trainset: now.trainset.clone(),
            valset: now.valset.clone(),
            metric: now.metric.clone(),
            lm: now.lm.clone(),
            max_bootstrapped_demos: now.max_bootstrapped_demos,
            max_labeled_demos: now.max_labeled_demos,
            num_candidate_programs: now.num_candidate_programs,
            seed: now.seed,
            batch_size: now.batch_size,
            priority: now.priority,
        };
        match decode(&v1(&EntryV1::Submitted { spec })).unwrap() {
            Entry::Submitted { spec, plan: None } => assert_eq!(spec, now),
            other => panic!("{other:?}"),
        }
        let record = RecordedV1 {
            task: 3,
            seed: -3,
            node: "n1".into(),
            outcome: Outcome::Scores(vec![(0, 1.0, false)]),
            work_ms: 9,
        };
        match decode(&v1(&EntryV1::Result { run: "old".into(), record })).unwrap() {
            Entry::Result { run, record } => {
                assert_eq!((run.as_str(), record.task, record.key, record.work_ms), ("old", 3, -3, 9));
                assert_eq!(record.calls, Calls::default());
            }
            other => panic!("{other:?}"),
        }
        // This version's own, another's, and nothing.
        let entry = Entry::submitted(now.clone());
        assert!(matches!(decode(&encode(&entry).unwrap()), Ok(Entry::Submitted { plan: Some(_), .. })));
        assert!(decode(&[9, 1, 2]).unwrap_err().contains("format 9"));
        assert!(decode(&[]).is_err());
        assert!(decode(&[1, 0xff, 0xff]).is_err());
    }
}
