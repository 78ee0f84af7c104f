//! Providers against the simulated provider server: real HTTP on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_actors::providers::*;
use foundation_core::circuit_breaker::{BreakerConfig, BreakerState};
use foundation_core::rate_limit::ProviderLimits;
use foundation_core::retry::RetryPolicy;

const QA: &str = "Answer questions.\n---\nQuestion: What is the capital of France?\nAnswer: Paris\n---\n\
                  Question: What is the capital city of France?\nAnswer:";

async fn server(limits: ProviderLimits) -> SimulatedProvider {
    let model = SimulatedConfig {
        latency: Duration::from_millis(2),
        completion_tokens: Some(20),
        ..Default::default()
    };
    SimulatedProvider::start("127.0.0.1:0".parse().unwrap(), SimServerConfig { limits, model }).await.unwrap()
}

fn client(name: &str, server: &SimulatedProvider) -> OpenAiClient {
    OpenAiClient::new(name, "simulated", Some(server.base_url()), None, Duration::from_secs(10))
}

fn options(limits: ProviderLimits, attempts: u32) -> ProviderOptions {
    ProviderOptions {
        limits,
        retry: RetryPolicy::new(attempts).backoff(Duration::from_millis(5), Duration::from_millis(20)),
        breaker: BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(60) },
        ..Default::default()
    }
}

#[tokio::test]
async fn the_client_speaks_chat_completions_and_reads_usage_and_headers() {
    let limits = ProviderLimits { rpm: Some(600), tpm: Some(40_000), ..Default::default() };
    let server = server(limits).await;
    let provider = Provider::new("sim", client("sim", &server), options(limits, 1)).unwrap();
    let answer = provider.complete(&ChatRequest::prompt(QA)).await.unwrap();
    assert_eq!(answer.content, "Answer: Paris");
    assert_eq!(answer.provider, "sim");
    let stats = server.stats();
    assert_eq!(stats.served, 1);
    assert_eq!(
        (answer.usage.prompt_tokens, answer.usage.completion_tokens),
        (stats.prompt_tokens, stats.completion_tokens)
    );
    // The server's headers reached the limiter: it believes no more than the server said.
    let remaining: u64 = answer
        .rate_headers
        .iter()
        .find(|(n, _)| n == "x-ratelimit-remaining-requests")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(remaining, 599);
    let requests = provider.limiter().unwrap().available()[0].1;
    assert!(requests <= 599.5, "{requests}");
}

#[tokio::test]
async fn the_server_answers_429_with_real_headers_and_a_provider_waits_them_out() {
    // 3 000 tokens a minute (50 a second) and no limiter on our side: the server must refuse.
    let server = server(ProviderLimits { tpm: Some(3_000), ..Default::default() }).await;
    let raw = client("raw", &server);
    let mut refused = None;
    for _ in 0..200 {
        match raw.complete(&ChatRequest::prompt("Tell me a story").max_tokens(20)).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    match refused {
        Some(LmError::RateLimited { provider, retry_after: Some(wait), rate_headers }) => {
            assert_eq!(provider, "raw");
            assert!(wait > Duration::ZERO && wait < Duration::from_secs(2), "{wait:?}");
            assert!(
                rate_headers
                    .iter()
                    .any(|(n, v)| n == "x-ratelimit-remaining-tokens" && v.parse::<u64>().is_ok())
            );
            assert!(rate_headers.iter().any(|(n, _)| n == "x-ratelimit-reset-tokens"));
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    // A provider retries after `retry-after` and is served.
    let provider =
        Provider::new("patient", client("patient", &server), options(ProviderLimits::default(), 5)).unwrap();
    provider.complete(&ChatRequest::prompt("Tell me a story").max_tokens(20)).await.unwrap();
    assert!(server.stats().rate_limited >= 1);
}

#[tokio::test]
async fn a_provider_within_its_limits_never_sees_a_429_and_counts_what_the_server_counts() {
    // 30 requests a minute: 40 requests take about 20 s without the limiter's burst... so only the
    // burst of 30 and a few more (one every 2 s) are sent; the rest of the load is tokens.
    let limits = ProviderLimits { rpm: Some(30), tpm: Some(3_000), ..Default::default() };
    let server = server(limits).await;
    let provider = Provider::new("sim", client("sim", &server), options(limits, 1)).unwrap();
    let router = LlmRouter::new(ModelRegistry::with_defaults()).provider(provider);
    let mut calls = Vec::new();
    for i in 0..34 {
        let router = router.clone();
        let tenant = if i % 2 == 0 { "even" } else { "odd" };
        calls.push(tokio::spawn(async move {
            router
                .complete(&ChatRequest::prompt(format!("Tell me story {i}")).max_tokens(40).tenant(tenant))
                .await
        }));
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let stats = server.stats();
    assert_eq!((stats.served, stats.rate_limited), (34, 0));
    let all = router.usage().totals(&UsageFilter::default());
    assert_eq!(all.requests, 34);
    assert_eq!((all.prompt_tokens, all.completion_tokens), (stats.prompt_tokens, stats.completion_tokens));
    let even = router.usage().totals(&UsageFilter { tenant: Some("even".into()), ..Default::default() });
    assert_eq!(even.requests, 17);
    let spec = router.models().get("sim", "simulated").unwrap();
    let expected = spec.cost(Usage {
        prompt_tokens: stats.prompt_tokens,
        completion_tokens: stats.completion_tokens,
        cached_prompt_tokens: 0,
    });
    assert!((all.cost_usd - expected).abs() < 1e-12, "{} vs {expected}", all.cost_usd);
}

#[tokio::test]
async fn repeated_5xx_open_the_circuit_and_the_fallback_serves() {
    let flaky = server(ProviderLimits::default()).await;
    let backup = server(ProviderLimits::default()).await;
    flaky.fail_next(1_000);
    let router = LlmRouter::new(ModelRegistry::with_defaults())
        .provider(
            Provider::new("flaky", client("flaky", &flaky), options(ProviderLimits::default(), 2)).unwrap(),
        )
        .provider(
            Provider::new("backup", client("backup", &backup), options(ProviderLimits::default(), 2))
                .unwrap(),
        );
    for _ in 0..5 {
        let answer = router.complete(&ChatRequest::prompt(QA)).await.unwrap();
        assert_eq!(answer.provider, "backup");
    }
    // The first request failed there after two attempts; the router's observed health then
    // put it after the backup, so it was not called again (its breaker, threshold 3, did not
    // even need to open).
    assert_eq!(flaky.stats().faults, 2);
    assert_eq!(backup.stats().served, 5);
    let flaky_usage =
        router.usage().totals(&UsageFilter { provider: Some("flaky".into()), ..Default::default() });
    assert_eq!((flaky_usage.requests, flaky_usage.failures), (0, 1));
    assert!(!router.observed().iter().find(|(n, _)| n == "flaky").unwrap().1.healthy());

    // With the backup gone too, the flaky provider is still tried (last), until its breaker
    // opens: the circuit still protects it.
    backup.fail_next(1_000);
    for _ in 0..2 {
        assert!(router.complete(&ChatRequest::prompt(QA)).await.is_err());
    }
    assert!(matches!(router.get("flaky").unwrap().breaker().state(), BreakerState::Open { .. }));
}

#[tokio::test]
async fn a_malformed_response_or_a_dead_endpoint_is_an_error_that_names_the_provider() {
    let server = server(ProviderLimits::default()).await;
    server.malformed_next(1);
    let provider =
        Provider::new("garbled", client("garbled", &server), options(ProviderLimits::default(), 3)).unwrap();
    let err = provider.complete(&ChatRequest::prompt(QA)).await.unwrap_err();
    assert!(matches!(&err, LmError::Malformed { provider, .. } if provider == "garbled"), "{err:?}");
    assert!(err.to_string().contains("`garbled`"), "{err}");
    // Not retried: garbage is not transient. The next call is fine.
    assert_eq!(server.stats().malformed, 1);
    assert_eq!(provider.complete(&ChatRequest::prompt(QA)).await.unwrap().content, "Answer: Paris");

    let addr = server.addr();
    drop(server);
    let gone = OpenAiClient::new(
        "gone",
        "simulated",
        Some(format!("http://{addr}/v1")),
        None,
        Duration::from_secs(5),
    );
    let err = gone.complete(&ChatRequest::prompt("hello")).await.unwrap_err();
    assert!(matches!(&err, LmError::Transport { provider, .. } if provider == "gone"), "{err:?}");
}

#[tokio::test]
async fn a_provider_over_budget_falls_back_and_a_long_prompt_skips_a_small_model() {
    // One request a minute, already spent: the next would wait a minute, longer than max_wait.
    let limits = ProviderLimits { rpm: Some(1), ..Default::default() };
    let tight = ProviderOptions { max_wait: Duration::from_millis(100), ..options(limits, 1) };
    let fast = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
    let mut models = ModelRegistry::with_defaults();
    models.add(ModelSpec::new("tiny", "tiny-model", 50, 0.0, 0.0));
    let tiny_model = SimulatedModel::new(SimulatedConfig {
        model: "tiny-model".into(),
        latency: Duration::ZERO,
        ..Default::default()
    });
    let router = LlmRouter::new(models)
        .provider(Provider::new("tiny", tiny_model, options(ProviderLimits::default(), 1)).unwrap())
        .provider(Provider::new("metered", fast.clone(), tight).unwrap())
        .provider(Provider::new("spare", fast, options(ProviderLimits::default(), 1)).unwrap());
    let long = ChatRequest::prompt("word ".repeat(60));
    assert_eq!(router.complete(&long).await.unwrap().provider, "metered");
    assert_eq!(router.complete(&long).await.unwrap().provider, "spare");
    let short = ChatRequest::prompt("hi").max_tokens(10);
    assert_eq!(router.complete(&short).await.unwrap().provider, "tiny");
}

#[tokio::test]
async fn a_chain_is_built_from_llm_config_with_profiles_and_endpoints() {
    let server = server(ProviderLimits::default()).await;
    let toml = format!(
        "[llm]\nchain = [\"remote\", \"local\"]\n\
         [llm.providers.remote]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n\
         profile = \"openai-tier-1\"\nlimits = {{ tpm = 40000 }}\n\
         [llm.providers.local]\nprofile = \"local\"\n",
        server.base_url()
    );
    let config = foundation_core::config::ConfigLoader::new().toml_str(&toml).load().unwrap();
    let router = LlmRouter::from_config(&config.llm, 7).unwrap();
    let names: Vec<&str> = router.providers().iter().map(|p| p.name()).collect();
    assert_eq!(names, ["remote", "local"]);
    assert_eq!(router.get("remote").unwrap().limits().tpm, Some(40_000));
    assert_eq!(router.get("remote").unwrap().limits().rpm, Some(500));
    let answer = router.complete(&ChatRequest::prompt(QA)).await.unwrap();
    assert_eq!((answer.provider.as_str(), answer.content.as_str()), ("remote", "Answer: Paris"));
    assert_eq!(server.stats().served, 1);
    // With the endpoint gone, the simulated provider behind it serves.
    drop(server);
    let answer = router.complete(&ChatRequest::prompt(QA)).await.unwrap();
    assert_eq!(answer.provider, "local");
}

/// A model that counts the calls in flight at once (and the most so far) around the simulated one.
struct Counting {
    inner: SimulatedModel,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LanguageModel for Counting {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            let answer = self.inner.complete(request).await;
            self.in_flight.fetch_sub(1, SeqCst);
            self.done.fetch_add(1, SeqCst);
            answer
        })
    }
}

/// Waits (up to 30 s, polling) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..3_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_lowers_a_limit_under_load_takes_effect_at_once() {
    use foundation_core::config::{FoundationConfig, LiveConfig, ProviderConfig};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    let mut config = FoundationConfig::default();
    let limits = ProviderLimits { concurrent: Some(8), ..Default::default() };
    config.llm.providers.insert("sim".into(), ProviderConfig { limits, ..Default::default() });
    let live = LiveConfig::new(config).unwrap();
    let (in_flight, most, done) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sim = SimulatedConfig { latency: Duration::from_millis(5), ..Default::default() };
    let model = Counting {
        inner: SimulatedModel::new(sim),
        in_flight: in_flight.clone(),
        most: most.clone(),
        done: done.clone(),
    };
    let options = ProviderOptions {
        limits: live.current().llm.providers["sim"].effective_limits(),
        max_wait: Duration::from_secs(120),
        ..Default::default()
    };
    let router = LlmRouter::new(ModelRegistry::with_defaults())
        .provider(Provider::new("sim", model, options).unwrap());
    let follower = router.follow(&live).unwrap();

    // 32 callers, as fast as the limits let them.
    let (stop, failures) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let callers: Vec<_> = (0..32)
        .map(|i| {
            let (router, stop, failures) = (router.clone(), stop.clone(), failures.clone());
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    let request = ChatRequest::prompt(format!("question {i}")).max_tokens(8);
                    if router.complete(&request).await.is_err() {
                        failures.fetch_add(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    eventually("8 calls in flight at once", || most.load(SeqCst) >= 8).await;
    assert_eq!(most.load(SeqCst), 8, "the limit of 8 at once held before the reload");

    // The reload lowers the limit to 2 while 32 callers wait on it.
    let changed =
        live.update(|c| c.llm.providers.get_mut("sim").unwrap().limits.concurrent = Some(2)).unwrap();
    assert_eq!(changed, ["llm.providers.sim.limits.concurrent"]);
    eventually("the reload applied", || follower.changes_applied() >= 2).await;
    assert_eq!(router.get("sim").unwrap().limits().concurrent, Some(2));
    // The calls admitted before it finish; from then on, never more than 2 at once.
    eventually("the calls admitted before the reload drained", || in_flight.load(SeqCst) <= 2).await;
    most.store(in_flight.load(SeqCst), SeqCst);
    let before = done.load(SeqCst);
    eventually("100 more calls", || done.load(SeqCst) >= before + 100).await;
    assert!(most.load(SeqCst) <= 2, "{} calls at once after lowering the limit to 2", most.load(SeqCst));

    // A reload that adds a kind of limit is refused for this provider, which keeps serving.
    live.update(|c| c.llm.providers.get_mut("sim").unwrap().limits.rpm = Some(6_000)).unwrap();
    eventually("the second reload handled", || follower.changes_applied() >= 2).await;
    assert_eq!(
        router.get("sim").unwrap().limits(),
        ProviderLimits { concurrent: Some(2), ..Default::default() }
    );
    let before = done.load(SeqCst);
    eventually("10 more calls", || done.load(SeqCst) >= before + 10).await;

    stop.store(true, SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(failures.load(SeqCst), 0);
}
