//! Cost-aware routing and the model registry's lifecycle: the cheapest model whose context
//! fits, the fastest observed provider, unhealthy providers tried last, models disabled and
//! enabled at run time, deprecated (called with a warning) and retired (not called).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use foundation_actors::providers::*;
use foundation_core::retry::RetryPolicy;

fn sim(provider: &str, model: &str, latency: Duration) -> Provider {
    let config = SimulatedConfig {
        provider: provider.into(),
        model: model.into(),
        latency,
        latency_jitter: 0.0,
        ..Default::default()
    };
    Provider::new(provider, SimulatedModel::new(config), ProviderOptions::default()).unwrap()
}

fn registry() -> ModelRegistry {
    let mut models = ModelRegistry::with_defaults();
    models.add(ModelSpec::new(ANY_PROVIDER, "tiny", 1_000, 0.01, 0.02));
    models
}

#[tokio::test]
async fn the_cheapest_model_whose_context_fits_answers() {
    let router = LlmRouter::new(registry())
        .provider(sim("big", "gpt-4o", Duration::ZERO))
        .provider(sim("mid", "gpt-4o-mini", Duration::ZERO))
        .provider(sim("small", "tiny", Duration::ZERO))
        .routing(Routing::Cheapest);
    let short = router.complete(&ChatRequest::prompt("Hello?").max_tokens(100)).await.unwrap();
    assert_eq!(short.provider, "small");
    // Too long for the tiny model's window: the next cheapest.
    let long = router.complete(&ChatRequest::prompt("word ".repeat(2_000)).max_tokens(100)).await.unwrap();
    assert_eq!(long.provider, "mid");
    // The chain's order otherwise.
    let chained = LlmRouter::new(registry()).provider(sim("big", "gpt-4o", Duration::ZERO)).provider(sim(
        "small",
        "tiny",
        Duration::ZERO,
    ));
    assert_eq!(chained.complete(&ChatRequest::prompt("Hello?")).await.unwrap().provider, "big");
}

#[tokio::test]
async fn the_fastest_observed_provider_answers_once_each_was_observed() {
    let router = LlmRouter::new(registry())
        .provider(sim("slow", "gpt-4o-mini", Duration::from_millis(150)))
        .provider(sim("quick", "gpt-4o-mini", Duration::ZERO))
        .routing(Routing::Fastest);
    let mut answered = Vec::new();
    for i in 0..5 {
        answered.push(router.complete(&ChatRequest::prompt(format!("question {i}"))).await.unwrap().provider);
    }
    // Unobserved first (in chain order), then by observed latency.
    assert_eq!(answered, ["slow", "quick", "quick", "quick", "quick"]);
    let observed = router.observed();
    assert_eq!(observed.len(), 2);
    assert!(observed[0].1.latency_ms.unwrap() < observed[1].1.latency_ms.unwrap(), "{observed:?}");
}

/// Fails every call with a 503, counting them.
#[derive(Clone, Default)]
struct Down {
    calls: Arc<AtomicU64>,
}

impl LanguageModel for Down {
    fn model(&self) -> &str {
        "gpt-4o-mini"
    }

    fn complete<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(LmError::Server { provider: "down".into(), status: 503, body: "down".into() }) })
    }
}

#[tokio::test]
async fn a_provider_whose_calls_fail_is_tried_after_the_healthy_ones() {
    let down = Down::default();
    let options = ProviderOptions { retry: RetryPolicy::new(1), ..Default::default() };
    let router = LlmRouter::new(registry())
        .provider(Provider::new("down", down.clone(), options).unwrap())
        .provider(sim("backup", "gpt-4o-mini", Duration::ZERO));
    for i in 0..4 {
        let answer = router.complete(&ChatRequest::prompt(format!("q{i}"))).await.unwrap();
        assert_eq!(answer.provider, "backup");
    }
    // Its breaker is still closed (5 failures open it): its health put it last, after one call.
    assert_eq!(down.calls.load(Ordering::SeqCst), 1);
    let observed = router.observed();
    let (name, health) = &observed[1];
    assert_eq!(name, "down");
    assert!(!health.healthy() && health.failure_rate == 1.0, "{observed:?}");
}

#[tokio::test]
async fn models_are_disabled_and_enabled_at_run_time_deprecated_then_retired() {
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let mut models = registry();
    models.add(
        ModelSpec::new("old", "legacy", 8_000, 1.0, 2.0).version("2024-01").deprecated(now - day, now + day),
    );
    models.add(ModelSpec::new("gone", "ancient", 8_000, 1.0, 2.0).deprecated(now - 2 * day, now - day));
    let router = LlmRouter::new(models.clone())
        .provider(sim("gone", "ancient", Duration::ZERO))
        .provider(sim("old", "legacy", Duration::ZERO))
        .provider(sim("new", "gpt-4o-mini", Duration::ZERO));
    assert_eq!(models.status("gone", "ancient", now), ModelStatus::Retired);
    assert!(matches!(models.status("old", "legacy", now), ModelStatus::Deprecated { .. }));
    // The retired model is not called; the deprecated one is (with a warning).
    assert_eq!(router.complete(&ChatRequest::prompt("hi")).await.unwrap().provider, "old");
    // Disabled on a clone of the registry (the operator's): the router sees it at once.
    models.disable("old", "legacy");
    assert_eq!(models.status("old", "legacy", now), ModelStatus::Disabled);
    assert!(
        !models.status("old", "legacy", now).callable()
            && models.status("new", "gpt-4o-mini", now).callable()
    );
    assert_eq!(router.complete(&ChatRequest::prompt("hi")).await.unwrap().provider, "new");
    models.disable("new", "gpt-4o-mini");
    match router.complete(&ChatRequest::prompt("hi")).await {
        Err(LmError::Exhausted { tried }) => {
            assert!(tried.iter().all(|e| matches!(e, LmError::ModelUnavailable { .. })), "{tried:?}");
            assert!(tried[0].to_string().contains("past its retirement date"), "{}", tried[0]);
            assert!(tried[1].to_string().contains("disabled"), "{}", tried[1]);
        }
        other => panic!("{other:?}"),
    }
    models.enable("old", "legacy");
    assert_eq!(router.complete(&ChatRequest::prompt("hi")).await.unwrap().provider, "old");
}

#[test]
fn the_routing_is_configured_and_a_bad_one_refused() {
    use foundation_core::config::ConfigLoader;
    let config = ConfigLoader::new().toml_str("[llm]\nrouting = \"cheapest\"").load().unwrap();
    assert_eq!(config.llm.routing, Routing::Cheapest);
    let err = ConfigLoader::new().toml_str("[llm]\nrouting = \"random\"").load().unwrap_err().to_string();
    assert!(err.contains("llm.routing"), "{err}");
}

#[tokio::test]
async fn the_usage_ledger_is_saved_and_loaded_whole_and_a_bad_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.json");
    assert!(UsageLedger::load(&path).unwrap().summary(&UsageFilter::default()).is_empty(), "no file: empty");
    let router = LlmRouter::new(registry()).provider(sim("sim", "gpt-4o-mini", Duration::ZERO));
    for tenant in ["acme", "acme", "globex"] {
        router.complete(&ChatRequest::prompt("hi").tenant(tenant)).await.unwrap();
    }
    router.usage().save(&path).unwrap();
    // A restarted process carries on from the saved totals.
    let restarted = LlmRouter::new(registry())
        .provider(sim("sim", "gpt-4o-mini", Duration::ZERO))
        .usage_ledger(UsageLedger::load(&path).unwrap());
    restarted.complete(&ChatRequest::prompt("hi").tenant("acme")).await.unwrap();
    let acme = UsageFilter { tenant: Some("acme".into()), ..Default::default() };
    assert_eq!(restarted.usage().totals(&acme).requests, 3);
    let before = router.usage().totals(&UsageFilter::default());
    let after = restarted.usage().totals(&UsageFilter::default());
    assert_eq!(after.requests, before.requests + 1);
    assert!(after.cost_usd > before.cost_usd);
    // Garbage is an error naming the file, which is left as it was.
    std::fs::write(&path, b"{ not a ledger").unwrap();
    let err = UsageLedger::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("usage.json") && err.to_string().contains("not a usage ledger"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"{ not a ledger");
    std::fs::write(&path, br#"{"version": 9, "rows": []}"#).unwrap();
    assert!(UsageLedger::load(&path).unwrap_err().to_string().contains("version 9"));
}
