//! Optimizers on the bundled question-classification task with the simulated model: each
//! improves over zero-shot, deterministically for a seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::time::Duration;

use dspex_optimizer::evaluate::evaluate;
use dspex_optimizer::optimizers::{BootstrapFewShot, LabeledFewShot, RandomSearch};
use dspex_optimizer::*;
use foundation_actors::providers::{
    BoxFuture, ChatRequest, Completion, LanguageModel, LmError, SimulatedConfig, SimulatedModel, Usage,
};

fn lm() -> Arc<dyn LanguageModel> {
    Arc::new(SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, seed: 3, ..Default::default() }))
}

fn task() -> (Program, Vec<Example>, Vec<Example>, Vec<Example>, Metric) {
    let data = datasets::questions();
    assert_eq!(data.len(), 260);
    let signature = Signature::parse("question -> label")
        .unwrap()
        .with_instructions("Classify the type of answer the question asks for.")
        .describe("label", "one of abbreviation, description, entity, person, location, number");
    let program = Program::single("classify", Predictor::predict(signature));
    let train = data[..60].to_vec();
    let val = data[60..110].to_vec();
    let dev = data[110..].to_vec();
    (program, train, val, dev, Metric::ExactMatch("label".into()))
}

#[tokio::test]
async fn each_optimizer_improves_over_zero_shot_and_is_deterministic() {
    let (program, train, val, dev, metric) = task();
    let lm = lm();
    let zero = evaluate(&program, &dev, lm.clone(), &metric, 8).await.mean;

    let labeled = LabeledFewShot { k: 16 }.compile(&program, &train, 1);
    assert_eq!(labeled, LabeledFewShot { k: 16 }.compile(&program, &train, 1));
    let labeled_score = evaluate(&labeled, &dev, lm.clone(), &metric, 8).await.mean;

    let bootstrap =
        BootstrapFewShot { max_bootstrapped_demos: 4, max_labeled_demos: 16, ..Default::default() };
    let boot = bootstrap.compile(&program, None, &train, lm.as_ref(), &metric, 1).await;
    assert_eq!(boot, bootstrap.compile(&program, None, &train, lm.as_ref(), &metric, 1).await);
    let boot_score = evaluate(&boot, &dev, lm.clone(), &metric, 8).await.mean;

    let search = RandomSearch { bootstrap, num_candidate_programs: 6, ..Default::default() };
    let report = search.compile(&program, &train, &val, lm.clone(), &metric, 1).await;
    assert_eq!(report.scores.len(), 9);
    assert_eq!(report.scores[0].0, -3);
    let again = search.compile(&program, &train, &val, lm.clone(), &metric, 1).await;
    assert_eq!((report.best.clone(), report.scores.clone()), (again.best, again.scores));
    let search_score = evaluate(&report.best.program, &dev, lm.clone(), &metric, 8).await.mean;

    println!(
        "zero-shot {zero:.3}, labeled {labeled_score:.3}, bootstrap {boot_score:.3}, random search {search_score:.3}"
    );
    println!("candidates: {:?}", report.scores);
    for score in [labeled_score, boot_score, search_score] {
        assert!(score > zero + 0.2, "zero-shot {zero}, optimized {score}");
    }
    // The search picked the best of its candidates on the validation set.
    let best = report.scores.iter().map(|(_, s)| *s).fold(f64::MIN, f64::max);
    assert_eq!(report.best_evaluation.mean, best);
}

#[tokio::test]
async fn chain_of_thought_bootstraps_its_reasoning_into_demonstrations() {
    let (program, train, _, _, metric) = task();
    let cot =
        Program::single("classify", Predictor::chain_of_thought(program.predictors[0].1.signature.clone()));
    let lm = lm();
    let compiled = BootstrapFewShot { max_bootstrapped_demos: 3, max_labeled_demos: 6, ..Default::default() }
        .compile(&cot, None, &train, lm.as_ref(), &metric, 2)
        .await;
    let demos = &compiled.predictors[0].1.demos;
    assert_eq!(demos.len(), 6);
    // The first three are accepted traces of the teacher: they carry a reasoning field.
    assert!(demos[..3].iter().all(|d| d.labels.contains_key("reasoning") && d.labels.contains_key("label")));
    // A program survives the wire: what another node rebuilds is the same program.
    let json = serde_json::to_string(&compiled).unwrap();
    assert_eq!(serde_json::from_str::<Program>(&json).unwrap(), compiled);
}

/// A model that answers without the fields asked for, or fails.
struct Garbled;

impl LanguageModel for Garbled {
    fn model(&self) -> &str {
        "garbled"
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(async move {
            if request.messages[1].text().contains("Hamlet") {
                return Err(LmError::Server { provider: "garbled".into(), status: 500, body: "down".into() });
            }
            Ok(Completion::from_text(
                "I would rather not say.",
                Usage { prompt_tokens: 10, completion_tokens: 5, cached_prompt_tokens: 0 },
                "garbled",
                "garbled",
            ))
        })
    }
}

#[tokio::test]
async fn failures_score_zero_and_say_why() {
    let (program, _, _, _, metric) = task();
    let dev = vec![
        Example::new().input("question", "Who wrote Hamlet?").label("label", "person"),
        Example::new().input("question", "What does NASA stand for?").label("label", "abbreviation"),
    ];
    let evaluation = evaluate(&program, &dev, Arc::new(Garbled), &metric, 2).await;
    assert_eq!((evaluation.mean, evaluation.failures), (0.0, 2));
    let errors: Vec<&str> = evaluation.results.iter().map(|r| r.error.as_deref().unwrap()).collect();
    assert!(
        errors[0].contains("predictor `classify`") && errors[0].contains("`garbled` failed with HTTP 500"),
        "{errors:?}"
    );
    assert!(errors[1].contains("no `label` field"), "{errors:?}");
}

#[tokio::test]
async fn the_instruction_search_finds_instructions_that_matter_and_improves_over_zero_shot() {
    let (program, train, val, dev, metric) = task();
    // Without the allowed values in its description, the zero-shot model can only guess words.
    let mut bare = program.clone();
    bare.predictors[0].1.signature.outputs[0].description.clear();
    let lm = lm();
    let proposals = optimizers::propose_instructions(&bare.predictors[0].1.signature, &train, 4, 1);
    assert_eq!(proposals[0], "Classify the type of answer the question asks for.");
    assert!(
        proposals[1].contains("The `label` is one of") && proposals[1].contains("location"),
        "{proposals:?}"
    );
    // An instruction that names the classes lifts zero-shot above guessing.
    let mut listed = bare.clone();
    listed.predictors[0].1.signature.instructions.clone_from(&proposals[1]);
    let zero = evaluate(&bare, &dev, lm.clone(), &metric, 8).await.mean;
    let zero_listed = evaluate(&listed, &dev, lm.clone(), &metric, 8).await.mean;
    assert!(zero_listed > zero, "{zero_listed} vs {zero}");

    let search = optimizers::InstructionSearch::default();
    let report = search.compile(&bare, &train, &val, lm.clone(), &metric, 1).await;
    assert_eq!(report.trials.len(), 12);
    let again = search.compile(&bare, &train, &val, lm.clone(), &metric, 1).await;
    assert_eq!(report.best, again.best);
    let best = evaluate(&report.best, &dev, lm.clone(), &metric, 8).await.mean;
    println!(
        "instruction search: zero-shot {zero:.3}, listed {zero_listed:.3}, best {best:.3}; trials {:?}",
        report.trials
    );
    assert!(best > zero + 0.2, "{best} vs {zero}");
}

#[tokio::test]
async fn a_program_of_two_predictors_passes_outputs_on_and_names_what_is_missing() {
    let lm = lm();
    let classify = Predictor::predict(Signature::parse("question -> label").unwrap());
    let mut explain = Predictor::predict(Signature::parse("label -> advice").unwrap());
    explain.demos = vec![
        Example::new().input("label", "person").label("advice", "answer with a name"),
        Example::new().input("label", "number").label("advice", "answer with a number"),
    ];
    let mut first = classify.clone();
    first.demos =
        vec![Example::new().input("question", "How many legs has a spider?").label("label", "number")];
    let program = Program::new("two").then("classify", first).then("explain", explain.clone());
    let inputs = [("question".to_string(), "How many moons has Mars?".to_string())].into();
    let (prediction, trace) = program.run(lm.as_ref(), &inputs).await.unwrap();
    assert_eq!(prediction.get("label"), Some("number"));
    assert_eq!(prediction.get("advice"), Some("answer with a number"));
    assert_eq!(trace.len(), 2);
    assert_eq!(trace[1].inputs["label"], "number", "the second predictor read the first's output");
    // A predictor whose input nothing provides is a clear error.
    let broken = Program::new("broken").then("explain", explain);
    let err = broken.run(lm.as_ref(), &inputs).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "predictor `explain` needs input `label`, which neither the example nor an earlier predictor gives"
    );
    // Models are found by name; an unknown one says what is registered.
    let models = LanguageModels::new().register("simulated", lm.clone());
    assert!(models.get("simulated").is_ok());
    let unknown = models.get("gpt-9").err().unwrap().to_string();
    assert!(unknown.contains("gpt-9") && unknown.contains("registered: simulated"), "{unknown}");
}
