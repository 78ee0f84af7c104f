//! LLM providers: a flaky provider and a healthy backup, both simulated HTTP servers on
//! loopback. Requests fall back when the first fails, its circuit opens, and usage and cost are
//! counted per provider and tenant.
//!
//! Run: `cargo run -p foundation-examples --example providers`. To call a real endpoint instead,
//! build an `OpenAiClient` with `None` for the URL and key: `OPENAI_BASE_URL` and
//! `OPENAI_API_KEY` are read.

use std::time::Duration;

use foundation_actors::providers::*;
use foundation_core::circuit_breaker::BreakerConfig;
use foundation_core::rate_limit::ProviderLimits;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limits = ProviderLimits { rpm: Some(600), tpm: Some(40_000), ..Default::default() };
    let model = SimulatedConfig { latency: Duration::from_millis(5), ..Default::default() };
    let config = SimServerConfig { limits, model };
    let flaky = SimulatedProvider::start("127.0.0.1:0".parse()?, config.clone()).await?;
    let backup = SimulatedProvider::start("127.0.0.1:0".parse()?, config).await?;
    flaky.fail_next(u64::MAX);

    let client = |name: &str, server: &SimulatedProvider| {
        OpenAiClient::new(name, "simulated", Some(server.base_url()), None, Duration::from_secs(10))
    };
    let options = ProviderOptions {
        limits,
        breaker: BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(30) },
        ..Default::default()
    };
    let router = LlmRouter::new(ModelRegistry::with_defaults())
        .provider(Provider::new("primary", client("primary", &flaky), options.clone())?)
        .provider(Provider::new("backup", client("backup", &backup), options)?);

    let prompt = "Answer questions about capitals.\n---\nQuestion: What is the capital of France?\nAnswer: Paris\n\
                  ---\nQuestion: What is the capital of Japan?\nAnswer: Tokyo\n---\n\
                  Question: Which city is the capital of Japan?\nAnswer:";
    for (i, tenant) in ["acme", "globex", "acme"].iter().enumerate() {
        let answer = router.complete(&ChatRequest::prompt(prompt).tenant(*tenant)).await?;
        println!("request {} for {tenant}: {:?} from {}", i + 1, answer.content, answer.provider);
    }
    println!("primary breaker: {:?}", router.get("primary").map(|p| p.breaker().state()));
    println!("primary saw {} failures; backup served {}", flaky.stats().faults, backup.stats().served);
    for (key, totals) in router.usage().summary(&UsageFilter::default()) {
        println!(
            "usage {}/{}/{}: {} ok, {} failed, {} tokens, ${:.6}",
            key.provider,
            key.model,
            key.tenant,
            totals.requests,
            totals.failures,
            totals.prompt_tokens + totals.completion_tokens,
            totals.cost_usd
        );
    }
    Ok(())
}
