//! A run's spec file: a complete one reads into the same run as the built-in question run; every
//! kind of bad spec or data is an error naming the file (and the line, or the key).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::path::{Path, PathBuf};

use dspex_optimizer::distributed::{QUESTIONS_TRAIN, QUESTIONS_VAL, RunSpec, SpecFileError};
use dspex_optimizer::{Example, datasets};

const SPEC: &str = r#"
name = "question-types"
model = "simulated"
seed = 7
metric = "exact_match:label"

[program]
signature = "question -> label"
instructions = "Classify the type of answer the question asks for."
[program.fields]
label = "one of abbreviation, description, entity, person, location, number"

[data]
train = "train.jsonl"
validation = "validation.csv"

[optimizer]
candidates = 8
max_bootstrapped_demos = 4
max_labeled_demos = 16
batch_size = 5
"#;

fn jsonl(examples: &[Example]) -> String {
    examples
        .iter()
        .map(|e| {
            let mut object = serde_json::Map::new();
            for (k, v) in e.inputs.iter().chain(&e.labels) {
                object.insert(k.clone(), v.clone().into());
            }
            serde_json::Value::Object(object).to_string() + "\n"
        })
        .collect()
}

fn csv(examples: &[Example]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut text = String::from("question,label\n");
    for e in examples {
        text += &format!("{},{}\n", quote(&e.inputs["question"]), quote(&e.labels["label"]));
    }
    text
}

/// A directory with the spec and both data files (the bundled questions, split as the built-in
/// run splits them).
fn run_dir(spec: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = datasets::questions();
    std::fs::write(dir.path().join("train.jsonl"), jsonl(&data[..QUESTIONS_TRAIN])).unwrap();
    std::fs::write(
        dir.path().join("validation.csv"),
        csv(&data[QUESTIONS_TRAIN..QUESTIONS_TRAIN + QUESTIONS_VAL]),
    )
    .unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(&path, spec).unwrap();
    (dir, path)
}

#[test]
fn a_complete_spec_reads_into_the_built_in_run() {
    let (_dir, path) = run_dir(SPEC);
    let spec = RunSpec::from_file(&path).unwrap();
    let built_in = RunSpec::questions("question-types", 7, 8);
    assert_eq!(spec.trainset, built_in.trainset);
    assert_eq!(spec.valset, built_in.valset);
    assert_eq!(spec.metric, built_in.metric);
    assert_eq!(spec.student.predictors[0].1, built_in.student.predictors[0].1);
    assert_eq!(
        (spec.lm.as_str(), spec.seed, spec.num_candidate_programs, spec.batch_size),
        ("simulated", 7, 8, 5)
    );
    // The other built-in metrics by name (the field checked against the signature's outputs).
    for (name, metric) in [
        ("contains:label", dspex_optimizer::Metric::Contains("label".into())),
        (
            "numeric:label:2%",
            dspex_optimizer::Metric::Numeric {
                field: "label".into(),
                tolerance: dspex_optimizer::Tolerance::Relative(0.02),
            },
        ),
    ] {
        let (_dir, path) = run_dir(&SPEC.replace("exact_match:label", name));
        assert_eq!(RunSpec::from_file(&path).unwrap().metric, metric);
    }
    // Each optimizer and halving by name.
    use dspex_optimizer::distributed::{EvaluationPlan, Optimizer};
    for (keys, optimizer, evaluation) in [
        ("kind = \"labeled_few_shot\"", Optimizer::LabeledFewShot, EvaluationPlan::Full),
        ("kind = \"bootstrap_few_shot\"", Optimizer::BootstrapFewShot, EvaluationPlan::Full),
        (
            "kind = \"instruction_search\"\ninstructions = 3\ntrials = 7",
            Optimizer::InstructionSearch { num_instructions: 3, num_trials: 7 },
            EvaluationPlan::Full,
        ),
        ("evaluation = \"halving\"", Optimizer::RandomSearch, EvaluationPlan::halving()),
        (
            "evaluation = \"halving\"\nhalving_first_examples = 20\nhalving_confidence = 0.99",
            Optimizer::RandomSearch,
            EvaluationPlan::Halving { first_examples: 20, confidence: 0.99 },
        ),
    ] {
        let (_dir, path) = run_dir(&SPEC.replace("[optimizer]", &format!("[optimizer]\n{keys}")));
        let spec = RunSpec::from_file(&path).unwrap();
        assert_eq!((spec.optimizer, spec.evaluation), (optimizer, evaluation), "{keys}");
    }
    // A judge: its rubric and model from [judge].
    let judged = SPEC.replace("exact_match:label", "judge:label")
        + "\n[judge]\nrubric = \"The type of answer, in one word.\"\nmodel = \"grader\"\n";
    let (_dir, path) = run_dir(&judged);
    assert_eq!(
        RunSpec::from_file(&path).unwrap().metric,
        dspex_optimizer::Metric::Judge(dspex_optimizer::Judge::new(
            "label",
            "The type of answer, in one word.",
            Some("grader".into())
        ))
    );
    let (_dir, path) = run_dir(&SPEC.replace("exact_match:label", "numeric:question"));
    let error = RunSpec::from_file(&path).unwrap_err().to_string();
    assert!(error.contains("`question` is not an output of the signature"), "{error}");
}

/// A change made to a run's directory before its spec is read.
type Edit = Box<dyn Fn(&Path)>;

fn error(spec: &str, edit: impl FnOnce(&Path)) -> String {
    let (dir, path) = run_dir(spec);
    edit(dir.path());
    let e = RunSpec::from_file(&path).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "names no file: {text}");
    text
}

#[test]
fn bad_specs_and_data_are_errors_naming_the_file_and_the_place() {
    let none = |_: &Path| {};
    for (spec, expected) in [
        (SPEC.replace("seed = 7", "seed = 7\nsede = 8"), "unknown field `sede`"),
        (SPEC.replace("model = \"simulated\"\n", ""), "missing field `model`"),
        (SPEC.replace("question-types", "question types"), "1 to 64 letters"),
        (SPEC.replace("exact_match:label", "exact:label"), "expected exact_match:FIELD"),
        (SPEC.replace("exact_match:label", "f1:answer"), "`answer` is not an output"),
        (SPEC.replace("[program.fields]\nlabel", "[program.fields]\ntopic"), "program.fields.topic"),
        (SPEC.replace("question -> label", "question label"), "program.signature"),
        (SPEC.replace("batch_size = 5", "batch_size = 0"), "optimizer.batch_size"),
        (SPEC.replace("train.jsonl", "missing.jsonl"), "missing.jsonl"),
        (SPEC.replace("exact_match:label", "judge:label"), "a judge needs a [judge] table"),
        (SPEC.to_string() + "\n[judge]\nrubric = \"x\"\n", "[judge] is for metric"),
        (
            SPEC.replace("exact_match:label", "judge:label") + "\n[judge]\nrubric = \" \"\n",
            "rubric must have",
        ),
        (
            SPEC.replace("exact_match:label", "judge:question") + "\n[judge]\nrubric = \"x\"\n",
            "not an output",
        ),
        (SPEC.replace("[optimizer]", "[optimizer]\nkind = \"mipro\""), "unknown variant `mipro`"),
        (SPEC.replace("[optimizer]", "[optimizer]\ntrials = 3"), "are for kind = \"instruction_search\""),
        (
            SPEC.replace("[optimizer]", "[optimizer]\nhalving_confidence = 0.9"),
            "are for evaluation = \"halving\"",
        ),
        (
            SPEC.replace("[optimizer]", "[optimizer]\nkind = \"instruction_search\"\ninstructions = 9"),
            "9 instructions, 1 to 5",
        ),
        (
            SPEC.replace("[optimizer]", "[optimizer]\nevaluation = \"halving\"\nhalving_confidence = 1.5"),
            "between 0 and 1",
        ),
    ] {
        let e = error(&spec, none);
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
    }
    // Data: a line that is not JSON, an example without the input, a validation example without
    // the metric's field, a value that is not a string, an empty file, an oversized one.
    let cases: [(&str, Edit); 6] = [
        (
            "train.jsonl, line 3: not a JSON object",
            Box::new(|d: &Path| {
                let text = std::fs::read_to_string(d.join("train.jsonl")).unwrap();
                let mut lines: Vec<&str> = text.lines().collect();
                lines[2] = "{not json";
                std::fs::write(d.join("train.jsonl"), lines.join("\n")).unwrap();
            }),
        ),
        (
            "train.jsonl, line 1: no `question`",
            Box::new(|d: &Path| {
                std::fs::write(d.join("train.jsonl"), "{\"q\": \"x\", \"label\": \"number\"}\n").unwrap();
            }),
        ),
        (
            "validation.csv, line 2: no `label`",
            Box::new(|d: &Path| {
                std::fs::write(d.join("validation.csv"), "question,answer\n\"a\",\"b\"\n\"c\",\"d\"\n")
                    .unwrap();
            }),
        ),
        (
            "`label` is 3, not a string",
            Box::new(|d: &Path| {
                std::fs::write(d.join("train.jsonl"), "{\"question\": \"x\", \"label\": 3}\n").unwrap();
            }),
        ),
        ("no example", Box::new(|d: &Path| std::fs::write(d.join("train.jsonl"), "\n\n").unwrap())),
        (
            "more than the",
            Box::new(|d: &Path| {
                let file = std::fs::File::create(d.join("train.jsonl")).unwrap();
                file.set_len(dspex_optimizer::distributed::spec_file::MAX_DATA_BYTES + 1).unwrap();
            }),
        ),
    ];
    for (expected, edit) in cases {
        let e = error(SPEC, |d| edit(d));
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
    }
    assert!(matches!(RunSpec::from_file(Path::new("/nonexistent/run.toml")), Err(SpecFileError::Io { .. })));
}
