//! The model layer as the APIs define it, over real HTTP on loopback: both clients (OpenAI's
//! chat completions and Anthropic's Messages) against the simulated provider server — tool
//! calls and their results, JSON-schema answers, stop sequences, usage with cached tokens,
//! streaming (pieces that add up to the whole answer), a dropped stream that cancels the
//! request and settles the limiter with what was used, and bad requests refused before any
//! provider sees them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::time::Duration;

use foundation_actors::providers::*;
use foundation_core::rate_limit::ProviderLimits;
use serde_json::json;

fn sim(stream_interval: Duration, completion_tokens: Option<u64>) -> SimServerConfig {
    SimServerConfig {
        limits: ProviderLimits::default(),
        model: SimulatedConfig {
            latency: Duration::from_millis(1),
            stream_interval,
            completion_tokens,
            ..Default::default()
        },
    }
}

async fn server(config: SimServerConfig) -> SimulatedProvider {
    SimulatedProvider::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

/// Both clients of the same server: (name, model).
fn clients(server: &SimulatedProvider) -> Vec<(&'static str, Arc<dyn LanguageModel>)> {
    let timeout = Duration::from_secs(10);
    vec![
        (
            "openai",
            Arc::new(OpenAiClient::new(
                "openai",
                "gpt-sim",
                Some(server.base_url()),
                Some("k".into()),
                timeout,
            )),
        ),
        (
            "anthropic",
            Arc::new(AnthropicClient::new(
                "anthropic",
                "claude-sim",
                Some(server.base_url()),
                Some("k".into()),
                timeout,
            )),
        ),
    ]
}

fn weather_tool() -> ToolSpec {
    ToolSpec::new(
        "get_weather",
        "Current weather for a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
               "required": ["city", "unit"]}),
    )
}

#[tokio::test]
async fn tools_are_called_and_their_results_answered_through_both_apis() {
    let server = server(sim(Duration::ZERO, None)).await;
    for (name, client) in clients(&server) {
        let ask = ChatRequest::new(vec![
            ChatMessage::system("You help with weather."),
            ChatMessage::user("What is the weather in Paris, in celsius?"),
        ])
        .tool(weather_tool())
        .tool(ToolSpec::new(
            "send_email",
            "Send an email to someone",
            json!({"type": "object", "properties": {"to": {"type": "string"}}}),
        ));
        let first = client.complete(&ask).await.unwrap();
        assert_eq!(first.finish_reason, FinishReason::ToolCalls, "{name}: {first:?}");
        assert_eq!(first.tool_calls.len(), 1, "{name}");
        let call = &first.tool_calls[0];
        assert_eq!(call.name, "get_weather", "{name}");
        let args = call.arguments_json().unwrap();
        assert_eq!(
            (args["city"].as_str(), args["unit"].as_str()),
            (Some("Paris"), Some("celsius")),
            "{name}: {args}"
        );
        assert!(!call.id.is_empty());
        // The tool's answer goes back with the call; the model answers in text.
        let mut follow = ask.clone();
        follow.messages.push(first.message());
        follow.messages.push(ChatMessage::tool_result(&call.id, "18 degrees and sunny"));
        let second = client.complete(&follow).await.unwrap();
        assert_eq!(second.finish_reason, FinishReason::Stop, "{name}");
        assert!(second.tool_calls.is_empty());
        assert!(second.content.contains("18 degrees and sunny"), "{name}: {}", second.content);
        // `none` forbids tools; naming one forces it.
        let none = ask.clone().tool_choice(ToolChoice::None);
        assert!(client.complete(&none).await.unwrap().tool_calls.is_empty(), "{name}");
        let forced = ask.clone().tool_choice(ToolChoice::Tool("send_email".into()));
        assert_eq!(client.complete(&forced).await.unwrap().tool_calls[0].name, "send_email", "{name}");
        // A greeting calls nothing on its own.
        let hello = ChatRequest::prompt("Hello there!").tool(weather_tool());
        assert!(client.complete(&hello).await.unwrap().tool_calls.is_empty(), "{name}");
    }
    assert!(server.stats().tool_calls >= 4);
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Capital {
    country: String,
    capital: String,
    population_millions: f64,
}

#[tokio::test]
async fn json_schema_answers_parse_into_the_type_they_describe() {
    let server = server(sim(Duration::ZERO, None)).await;
    let schema = json!({
        "type": "object",
        "properties": {"country": {"type": "string"}, "capital": {"type": "string"}, "population_millions": {"type": "number", "minimum": 0}},
        "required": ["country", "capital", "population_millions"],
        "additionalProperties": false,
    });
    let prompt = "Capitals.\n---\nCountry: France\nCapital: Paris\n---\nCountry: Italy\nCapital: Rome\n---\nCountry: France\nCapital:";
    for (name, client) in clients(&server) {
        let request = ChatRequest::prompt(prompt)
            .response_format(ResponseFormat::json_schema("capital", schema.clone()));
        let answer = client.complete(&request).await.unwrap();
        let parsed: Capital = answer.json().unwrap_or_else(|e| panic!("{name}: {e} in {:?}", answer.content));
        assert_eq!(parsed.capital, "Paris", "{name}");
        assert_eq!(answer.finish_reason, FinishReason::Stop, "{name}");
        // Streamed, the same JSON.
        let streamed = client.stream(&request).await.unwrap().collect().await.unwrap();
        assert_eq!(streamed.content, answer.content, "{name}");
    }
}

#[tokio::test]
async fn stop_sequences_seed_and_usage_travel_and_bad_requests_are_refused_before_sending() {
    let server = server(sim(Duration::ZERO, Some(30))).await;
    for (name, client) in clients(&server) {
        let whole = client.complete(&ChatRequest::prompt("Tell me a story").seed(3)).await.unwrap();
        assert!(whole.content.contains("more"), "{name}: {}", whole.content);
        let stopped = client.complete(&ChatRequest::prompt("Tell me a story").stop(" more")).await.unwrap();
        assert!(
            !stopped.content.contains("more") && !stopped.content.is_empty(),
            "{name}: {}",
            stopped.content
        );
        assert!(
            whole.usage.prompt_tokens > 0 && whole.usage.completion_tokens == 30,
            "{name}: {:?}",
            whole.usage
        );
        let cut = client.complete(&ChatRequest::prompt("Tell me a story").max_tokens(5)).await.unwrap();
        assert_eq!((cut.finish_reason, cut.usage.completion_tokens), (FinishReason::Length, 5), "{name}");
        // Refused here, with the reason, and the server never hears of it.
        let before = server.stats();
        let bad = ChatRequest::prompt("x").tool_choice(ToolChoice::Tool("nope".into()));
        match client.complete(&bad).await {
            Err(LmError::InvalidRequest { reason }) => assert!(reason.contains("nope"), "{reason}"),
            other => panic!("{name}: {other:?}"),
        }
        let twice = ChatRequest::prompt("x").tool(weather_tool()).tool(weather_tool());
        assert!(matches!(client.stream(&twice).await, Err(LmError::InvalidRequest { .. })), "{name}");
        assert_eq!(server.stats().served, before.served);
    }
}

#[tokio::test]
async fn a_stream_yields_pieces_that_add_up_to_the_whole_answer() {
    let server = server(sim(Duration::ZERO, Some(40))).await;
    for (name, client) in clients(&server) {
        for request in [
            ChatRequest::prompt("Tell me a story about a lighthouse"),
            ChatRequest::prompt("What is the weather in Rome?").tool(weather_tool()),
        ] {
            let whole = client.complete(&request).await.unwrap();
            let mut stream = client.stream(&request).await.unwrap();
            let (mut text, mut pieces, mut args) = (String::new(), 0, String::new());
            let done = loop {
                match stream.next().await.expect("a stream ends with its answer").unwrap() {
                    StreamEvent::Text(t) => {
                        text.push_str(&t);
                        pieces += 1;
                    }
                    StreamEvent::ToolCall(d) => args.push_str(&d.arguments),
                    StreamEvent::Done(c) => break c,
                }
            };
            assert!(stream.next().await.is_none(), "nothing after the end");
            assert_eq!(text, whole.content, "{name}");
            assert_eq!(done.content, whole.content, "{name}");
            assert_eq!(done.tool_calls, whole.tool_calls, "{name}");
            assert_eq!(done.finish_reason, whole.finish_reason, "{name}");
            assert_eq!(done.usage, whole.usage, "{name}: the usage comes at the end");
            if whole.tool_calls.is_empty() {
                assert!(pieces >= 10, "{name}: {pieces} pieces");
            } else {
                assert_eq!(args, whole.tool_calls[0].arguments, "{name}");
            }
        }
    }
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_request_and_settles_the_limiter_with_what_was_used() {
    // Pieces 20 ms apart: the stream is still running when it is dropped.
    let server = server(sim(Duration::from_millis(20), Some(2000))).await;
    for (i, (name, client)) in clients(&server).into_iter().enumerate() {
        // 6 000 output tokens a minute; the request reserves 5 000 of them.
        let limits = ProviderLimits { output_tpm: Some(6000), ..Default::default() };
        let options = ProviderOptions { limits, ..Default::default() };
        struct Shared(Arc<dyn LanguageModel>);
        impl LanguageModel for Shared {
            fn model(&self) -> &str {
                self.0.model()
            }
            fn complete<'a>(&'a self, r: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
                self.0.complete(r)
            }
            fn stream<'a>(&'a self, r: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
                self.0.stream(r)
            }
        }
        let provider = Provider::new(name, Shared(client), options).unwrap();
        let request = ChatRequest::prompt("Tell me a long story").max_tokens(5000);
        let mut stream = provider.stream(&request).await.unwrap();
        let mut received = 0;
        while received < 3 {
            if let StreamEvent::Text(_) = stream.next().await.unwrap().unwrap() {
                received += 1;
            }
        }
        let reserved = output_level(&provider);
        assert!(reserved < 1500.0, "{name}: 5 000 tokens reserved while streaming, {reserved} left");
        drop(stream);
        // Settled with the few tokens received: nearly all of the 5 000 are back at once (the
        // bucket refills 100 a second, so only a very slow machine could blur this).
        let settled = output_level(&provider);
        assert!(settled > 5000.0, "{name}: {settled} left after the drop");
        // The server saw its client go away.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while server.stats().streams_cancelled < i as u64 + 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: the server never saw the cancel: {:?}",
                server.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(server.stats().served, 0, "no stream ran to its end");
}

fn output_level(provider: &Provider) -> f64 {
    let available = provider.limiter().unwrap().available();
    available.iter().find(|(n, _)| n.contains("output")).map(|(_, l)| *l).unwrap()
}

#[tokio::test]
async fn the_router_and_the_call_cache_stream_too() {
    let server = server(sim(Duration::ZERO, Some(12))).await;
    let client = OpenAiClient::new("sim", "gpt-sim", Some(server.base_url()), None, Duration::from_secs(10));
    let router = LlmRouter::new(ModelRegistry::with_defaults())
        .provider(Provider::new("sim", client, ProviderOptions::default()).unwrap());
    let cache = CallCache::new(CallCacheConfig::default());
    let cached = cache.wrap("sim", Arc::new(router.clone()));
    let request = ChatRequest::prompt("Tell me about rivers").tenant("acme");
    let first = cached.stream(&request).await.unwrap().collect().await.unwrap();
    assert!(!first.cached);
    let again = cached.stream(&request).await.unwrap().collect().await.unwrap();
    assert!(
        again.cached && again.content == first.content,
        "{first:?} then {again:?}; {:?} {:?}",
        cache.stats(),
        server.stats()
    );
    assert_eq!(server.stats().streams, 1, "the second came from the cache");
    let acme = router.usage().totals(&UsageFilter { tenant: Some("acme".into()), ..Default::default() });
    assert_eq!((acme.requests, acme.completion_tokens), (1, 12));
    // A stream dropped before its end is not cached.
    let other = ChatRequest::prompt("Tell me about lakes");
    let mut stream = cached.stream(&other).await.unwrap();
    let _ = stream.next().await;
    drop(stream);
    let cut = router.usage().totals(&UsageFilter::default());
    assert_eq!(
        (cut.requests, cut.cut, cut.failures),
        (1, 1, 0),
        "the dropped stream is cut, not served: {cut:?}"
    );
    assert!(cut.prompt_tokens > acme.prompt_tokens, "its prompt is counted: {cut:?}");
    let _ = cached.stream(&other).await.unwrap().collect().await.unwrap();
    assert_eq!(server.stats().streams, 3);
}

/// Strict schemas from Rust types: closed objects, every property required (options nullable),
/// no formats strict mode does not know; and the simulated model answers them.
#[tokio::test]
async fn response_formats_of_rust_types_are_strict_and_answered() {
    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code, reason = "read through the schema")]
    struct Inner {
        count: u64,
        properties: Option<String>,
    }
    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code, reason = "read through the schema")]
    struct Report {
        city: String,
        note: Option<String>,
        inner: Inner,
    }
    let ResponseFormat::JsonSchema { schema, strict, .. } = ResponseFormat::of::<Report>("report") else {
        panic!()
    };
    assert!(strict);
    let text = schema.to_string();
    assert!(!text.contains("\"format\""), "{text}");
    assert_eq!(schema["additionalProperties"], false, "{text}");
    assert_eq!(schema["required"], json!(["city", "inner", "note"]), "{text}");
    let inner = &schema["$defs"]["Inner"];
    assert_eq!(
        (inner["required"].clone(), inner["additionalProperties"].clone()),
        (json!(["count", "properties"]), json!(false)),
        "{text}"
    );
    let server = server(sim(Duration::ZERO, None)).await;
    for (name, client) in clients(&server) {
        let request =
            ChatRequest::prompt("A report on Oslo.").response_format(ResponseFormat::of::<Report>("report"));
        let answer = client.complete(&request).await.unwrap();
        let report: Report = answer.json().unwrap_or_else(|e| panic!("{name}: {e} in {}", answer.content));
        assert_eq!(report.city, "Oslo", "{name}");
    }
}

/// `[llm.providers.NAME] kind = "anthropic"` makes an Anthropic provider in the chain.
#[tokio::test]
async fn an_anthropic_provider_from_configuration_serves_through_the_router() {
    let server = server(sim(Duration::ZERO, None)).await;
    let mut config = foundation_core::config::LlmConfig::default();
    let provider = foundation_core::config::ProviderConfig {
        kind: foundation_core::config::ProviderKind::Anthropic,
        model: "claude-sim".into(),
        base_url: Some(server.base_url()),
        api_key: Some("k".into()),
        ..Default::default()
    };
    config.providers.insert("claude".into(), provider);
    let router = LlmRouter::from_config(&config, 7).unwrap();
    let answer = router
        .complete(&ChatRequest::prompt("What is the weather in Paris?").tool(weather_tool()))
        .await
        .unwrap();
    assert_eq!((answer.provider.as_str(), answer.tool_calls[0].name.as_str()), ("claude", "get_weather"));
    let streamed = router.stream(&ChatRequest::prompt("Hello there")).await.unwrap().collect().await.unwrap();
    assert_eq!(streamed.model, "claude-sim");
    assert_eq!(router.usage().totals(&UsageFilter::default()).requests, 2);
}

/// A conversation resent with a long shared beginning (an agent's system prompt and history):
/// the simulated server reports the beginning's tokens as cached, in 128-token blocks from 1 024
/// on, through both APIs, and the ledger prices them at the cached rate.
#[tokio::test]
async fn a_repeated_long_prefix_is_reported_and_priced_as_cached() {
    let server = server(sim(Duration::ZERO, None)).await;
    let system = "You are a careful assistant who answers questions about the weather. ".repeat(100);
    for (name, client) in clients(&server) {
        // A beginning of its own per client (the server's cache is shared by both APIs).
        let first = ChatRequest::new(vec![
            ChatMessage::system(format!("{name}. {system}")),
            ChatMessage::user("Is it cold?"),
        ]);
        let answer = client.complete(&first).await.unwrap();
        assert_eq!(answer.usage.cached_prompt_tokens, 0, "{name}: nothing seen yet");
        let mut second = first.clone();
        second.messages.push(answer.message());
        second.messages.push(ChatMessage::user("And tomorrow?"));
        let again = client.complete(&second).await.unwrap();
        let cached = again.usage.cached_prompt_tokens;
        assert!(
            cached >= 1024 && cached % 128 == 0 && cached < again.usage.prompt_tokens,
            "{name}: {:?}",
            again.usage
        );
        // Priced at the cached rate.
        let spec = ModelSpec::new("p", "m", 100_000, 1.0, 2.0).cached(0.1);
        let mut full = again.usage;
        full.cached_prompt_tokens = 0;
        assert!(spec.cost(again.usage) < spec.cost(full), "{name}");
    }
}

/// Embeddings over HTTP are the simulated embedder's vectors, in the inputs' order, of the
/// dimensions asked; the limits hold; bad requests are refused before sending.
#[tokio::test]
async fn embeddings_come_from_the_server_as_the_simulated_embedder_makes_them() {
    let mut config = sim(Duration::ZERO, None);
    config.limits = ProviderLimits { rpm: Some(2), ..Default::default() };
    let server = server(config).await;
    let client =
        OpenAiEmbeddings::new("sim", "embed-sim", Some(server.base_url()), None, Duration::from_secs(10));
    let texts: Vec<String> =
        ["What is the capital of France?", "capital of France", "How many legs has a spider?"]
            .map(String::from)
            .to_vec();
    let got = client.embed(&texts).await.unwrap();
    let here = SimulatedEmbeddings::new("embed-sim", 256).embed(&texts).await.unwrap();
    assert_eq!(got.vectors, here.vectors);
    assert_eq!((got.usage, got.model.as_str()), (here.usage, "embed-sim"));
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cosine(&got.vectors[0], &got.vectors[1]) > cosine(&got.vectors[0], &got.vectors[2]));
    let short = client.clone().dimensions(32).embed(&texts[..1]).await.unwrap();
    assert_eq!(short.vectors[0].len(), 32);
    assert!(matches!(client.embed(&[]).await, Err(LmError::InvalidRequest { .. })));
    // The third request of the minute (rpm 2; the empty one never left) is refused with the
    // API's 429.
    match client.embed(&texts).await {
        Err(LmError::RateLimited { retry_after, .. }) => assert!(retry_after.is_some()),
        other => panic!("{other:?}"),
    }
}
