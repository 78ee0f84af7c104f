//! LLM providers: a flaky provider and a healthy backup, both simulated HTTP servers on
//! loopback. Requests fall back when the first fails, its circuit opens, and usage and cost are
//! counted per provider and tenant. Then a streamed answer printed as its tokens arrive, and a
//! tool call answered and sent back, through the same chain.
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
    let model = SimulatedConfig {
        latency: Duration::from_millis(5),
        completion_tokens: Some(24),
        stream_interval: Duration::from_millis(15),
        ..Default::default()
    };
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

    // Streaming: pieces as they arrive, then the whole answer with its usage.
    print!("streamed: ");
    let mut stream = router.stream(&ChatRequest::prompt("Tell me about lighthouses").tenant("acme")).await?;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Text(piece) => {
                print!("{piece}");
                std::io::Write::flush(&mut std::io::stdout())?;
            }
            StreamEvent::ToolCall(_) => {}
            StreamEvent::Done(answer) => println!(
                "\n  ({} completion tokens, {:?})",
                answer.usage.completion_tokens, answer.finish_reason
            ),
        }
    }

    // Tools: the model asks for one, we run it and send the result back.
    let weather = ToolSpec::new(
        "get_weather",
        "Current weather for a city",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let mut request = ChatRequest::prompt("What is the weather in Lisbon?").tool(weather);
    let asked = router.complete(&request).await?;
    for call in &asked.tool_calls {
        let city = call.arguments_json()?["city"].as_str().unwrap_or("?").to_string();
        println!("tool call {}({city})", call.name);
        request.messages.push(asked.message());
        request.messages.push(ChatMessage::tool_result(&call.id, format!("21 degrees in {city}")));
    }
    println!("answer: {}", router.complete(&request).await?.content);
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
