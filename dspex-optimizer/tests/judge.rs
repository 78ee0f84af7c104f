//! LLM-as-judge: a judge model's `Score: N` becomes the metric's score; a malformed judgement,
//! a failing judge or a judge model this node lacks fails the example with the reason, never a
//! guessed score; bootstrapping accepts only what the judge accepts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dspex_optimizer::evaluate::evaluate;
use dspex_optimizer::*;
use foundation_actors::providers::{
    BoxFuture, ChatRequest, Completion, LanguageModel, LmError, SimulatedConfig, SimulatedModel, Usage,
};

/// A judge that grades by comparing the expected and the given value in its prompt: `Score: 5`
/// when equal (ignoring case), `Score: 1` otherwise; or always `reply` when given.
struct Grader {
    calls: AtomicU64,
    reply: Option<&'static str>,
}

/// The JSON string after `prefix` on its line.
fn value(prompt: &str, prefix: &str) -> Option<String> {
    let quoted = prompt.lines().find_map(|l| l.strip_prefix(prefix))?.trim();
    serde_json::from_str(quoted).ok()
}

impl LanguageModel for Grader {
    fn model(&self) -> &str {
        "grader"
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let prompt = &request.messages.last().unwrap().text();
            assert!(prompt.contains("Rubric: The type of answer"), "{prompt}");
            let content = match self.reply {
                Some(reply) => reply.to_string(),
                None => {
                    let same = value(prompt, "Expected label:").map(|v| v.to_lowercase())
                        == value(prompt, "Answer label:").map(|v| v.to_lowercase());
                    format!(
                        "The label is {}.\nScore: {}",
                        if same { "right" } else { "wrong" },
                        if same { 5 } else { 1 }
                    )
                }
            };
            Ok(Completion::from_text(
                content,
                Usage { prompt_tokens: 10, completion_tokens: 3, cached_prompt_tokens: 0 },
                "grader",
                "grader",
            ))
        })
    }
}

fn grader(reply: Option<&'static str>) -> Arc<Grader> {
    Arc::new(Grader { calls: AtomicU64::new(0), reply })
}

fn task() -> (Program, Vec<Example>, Vec<Example>) {
    let data = datasets::questions();
    let signature = Signature::parse("question -> label").unwrap();
    (Program::single("classify", Predictor::predict(signature)), data[..40].to_vec(), data[40..70].to_vec())
}

fn program_model() -> Arc<dyn LanguageModel> {
    Arc::new(SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, seed: 3, ..Default::default() }))
}

fn judged_by(model: &str) -> Metric {
    Metric::Judge(Judge::new(
        "label",
        "The type of answer the question asks for, in one word.",
        Some(model.into()),
    ))
}

#[tokio::test]
async fn a_judge_scores_like_its_judgements_and_fails_examples_it_cannot_judge() {
    let (program, train, val) = task();
    let few_shot = optimizers::LabeledFewShot { k: 16 }.compile(&program, &train, 1);
    let lm = program_model();
    let exact = evaluate(&few_shot, &val, lm.clone(), &Metric::ExactMatch("label".into()), 4).await;
    // Judged by a model of the node's, bound by name: the same scores as exact match (the
    // grader grades equality), one judge call per example.
    let good = grader(None);
    let models = LanguageModels::new().register("grader", good.clone());
    let mut metric = judged_by("grader");
    assert!(!metric.available(), "a named judge must be bound first");
    metric.bind_judge(&models).unwrap();
    assert!(metric.available());
    assert_eq!(metric.name(), "judge:label");
    let judged = evaluate(&few_shot, &val, lm.clone(), &metric, 4).await;
    assert_eq!(good.calls.load(Ordering::Relaxed), val.len() as u64);
    assert_eq!(judged.failures, 0);
    let scores =
        |e: &dspex_optimizer::evaluate::Evaluation| e.results.iter().map(|r| r.score).collect::<Vec<_>>();
    assert_eq!(scores(&judged), scores(&exact));
    assert!(judged.mean > 0.0);
    // A malformed judgement: every example fails with the reason, scored 0.
    let models = LanguageModels::new().register("grader", grader(Some("Looks right to me, 4/5.")));
    let mut metric = judged_by("grader");
    metric.bind_judge(&models).unwrap();
    let malformed = evaluate(&few_shot, &val, lm.clone(), &metric, 4).await;
    assert_eq!((malformed.failures, malformed.mean), (val.len(), 0.0));
    let error = malformed.results[0].error.as_deref().unwrap();
    assert!(error.contains("malformed judgement") && error.contains("Looks right to me"), "{error}");
    // A judge model this node does not have: refused at binding, and unbound it fails examples.
    let error = judged_by("missing").bind_judge(&models).unwrap_err();
    assert!(error.contains("missing"), "{error}");
    let unbound = evaluate(&few_shot, &val, lm.clone(), &judged_by("missing"), 4).await;
    assert!(unbound.results[0].error.as_deref().unwrap().contains("`missing` is not registered"));
    // Bootstrapping accepts the traces the judge accepts: all of them with a judge that always
    // says 5, none with one that always says 1.
    let bootstrap = optimizers::BootstrapFewShot {
        max_bootstrapped_demos: 4,
        max_labeled_demos: 0,
        ..Default::default()
    };
    for (reply, demos) in [("Score: 5", 4), ("Score: 1", 0)] {
        let models = LanguageModels::new().register("grader", grader(Some(reply)));
        let mut judge = judged_by("grader");
        judge.bind_judge(&models).unwrap();
        let compiled = bootstrap.compile(&program, None, &train, lm.as_ref(), &judge, 1).await;
        assert_eq!(compiled.predictors[0].1.demos.len(), demos, "{reply}");
    }
}
