//! Program files: what `Program::save` writes, `Program::load` reads back exactly, and every
//! file that is not a program of this version is refused with an error naming the file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use dspex_optimizer::*;

fn optimized() -> Program {
    let signature = Signature::parse("question -> label")
        .unwrap()
        .with_instructions("Classify the question's answer type.")
        .describe("label", "one of ABBR, DESC, ENTY, HUM, LOC, NUM");
    let program = Program::single("classify", Predictor::chain_of_thought(signature));
    optimizers::LabeledFewShot { k: 4 }.compile(&program, &datasets::questions()[..20], 7)
}

#[test]
fn a_saved_program_loads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.json");
    let program = optimized();
    assert!(!program.predictors[0].1.demos.is_empty());
    program.save(&path).unwrap();
    assert_eq!(Program::load(&path).unwrap(), program);
    // Saving again replaces the file, and leaves no temporary file beside it.
    program.reset().save(&path).unwrap();
    assert_eq!(Program::load(&path).unwrap(), program.reset());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(PROGRAM_FORMAT), "{text}");
}

#[test]
fn what_is_not_a_program_of_this_version_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let saved = dir.path().join("saved.json");
    optimized().save(&saved).unwrap();
    let saved_text = std::fs::read_to_string(&saved).unwrap();

    let cases = [
        (dir.path().join("missing.json"), "missing.json"),
        (write("text.json", "question -> label"), "not a program"),
        (write("array.json", "[1, 2]"), "not a program"),
        (
            write("other.json", &saved_text.replace(PROGRAM_FORMAT, "foundation-program/2")),
            "foundation-program/2",
        ),
        (write("untagged.json", r#"{"name": "p", "predictors": []}"#), "not a program"),
        (
            write(
                "empty.json",
                &format!(r#"{{"format": "{PROGRAM_FORMAT}", "program": {{"name": "p", "predictors": []}}}}"#),
            ),
            "no predictor",
        ),
        (write("truncated.json", &saved_text[..saved_text.len() / 2]), "not a program"),
    ];
    for (path, expected) in cases {
        let error = Program::load(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains(expected), "{}: {error}", path.display());
    }

    // Too large: refused before it is read.
    let big = dir.path().join("big.json");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(MAX_PROGRAM_BYTES + 1).unwrap();
    let error = Program::load(&big).unwrap_err();
    assert!(matches!(error, ProgramFileError::TooLarge { .. }), "{error}");
}

#[tokio::test]
async fn a_loaded_program_runs() {
    use foundation_actors::providers::{SimulatedConfig, SimulatedModel};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.json");
    optimized().save(&path).unwrap();
    let program = Program::load(&path).unwrap();
    let lm =
        SimulatedModel::new(SimulatedConfig { latency: std::time::Duration::ZERO, ..Default::default() });
    let inputs = [("question".to_string(), "Who wrote Hamlet?".to_string())].into_iter().collect();
    let (prediction, trace) = program.run(&lm, &inputs).await.unwrap();
    assert!(prediction.fields.contains_key("label"), "{prediction:?}");
    assert_eq!(trace.len(), 1);
}
