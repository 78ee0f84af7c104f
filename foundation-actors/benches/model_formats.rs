//! What reading a model's answer costs: a whole response and a streamed one (per response and
//! per piece), for OpenAI's chat completions and Anthropic's Messages, with the clients' own
//! parsers (`parse`, `parse_stream`) on bodies recorded from the simulated provider server (a
//! tool call and usage in the whole ones; a 200-token answer in one-word pieces, 193 of them, in the streamed ones).
//!
//! Run: `cargo bench -p foundation-actors --bench model_formats`; figures in docs/BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use foundation_actors::providers::*;
use serde_json::json;

/// Bodies recorded from the simulated server: (OpenAI whole, OpenAI stream, Anthropic whole,
/// Anthropic stream).
fn recorded() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let config = SimServerConfig {
            model: SimulatedConfig { latency: Duration::ZERO, completion_tokens: Some(200), ..Default::default() },
            ..Default::default()
        };
        let server = SimulatedProvider::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        let http = reqwest::Client::new();
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}}]);
        let post = |path: &str, body: serde_json::Value| {
            let request = http.post(format!("http://{}{path}", server.addr())).json(&body);
            async move { request.send().await.unwrap().bytes().await.unwrap().to_vec() }
        };
        let ask = "What is the weather in Paris, in celsius?";
        let openai_whole = post("/v1/chat/completions", json!({"model": "m", "messages": [{"role": "user", "content": ask}], "tools": tools})).await;
        let openai_stream = post("/v1/chat/completions", json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Tell me a story"}]})).await;
        let anthropic_tools = json!([{"name": "get_weather", "description": "Current weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
        let anthropic_whole = post("/v1/messages", json!({"model": "m", "max_tokens": 400, "messages": [{"role": "user", "content": ask}], "tools": anthropic_tools})).await;
        let anthropic_stream = post("/v1/messages", json!({"model": "m", "max_tokens": 400, "stream": true,
            "messages": [{"role": "user", "content": "Tell me a story"}]})).await;
        (openai_whole, openai_stream, anthropic_whole, anthropic_stream)
    })
}

fn formats(c: &mut Criterion) {
    let (openai_whole, openai_stream, anthropic_whole, anthropic_stream) = recorded();
    let openai =
        OpenAiClient::new("bench", "m", Some("http://127.0.0.1:9/v1".into()), None, Duration::from_secs(1));
    let anthropic =
        AnthropicClient::new("bench", "m", Some("http://127.0.0.1:9".into()), None, Duration::from_secs(1));
    let request = ChatRequest::prompt("x");
    // Sanity: the recorded bodies parse to what they hold.
    assert_eq!(openai.parse(&openai_whole).unwrap().tool_calls.len(), 1);
    assert_eq!(anthropic.parse(&request, &anthropic_whole).unwrap().tool_calls.len(), 1);
    let pieces = openai.parse_stream(&openai_stream).unwrap().len() - 1;
    assert!(pieces >= 150, "{pieces}");
    assert_eq!(anthropic.parse_stream(&request, &anthropic_stream).unwrap().len(), pieces + 1);

    let mut group = c.benchmark_group("parse_response");
    group.throughput(Throughput::Elements(1));
    group.bench_function("openai_whole_tool_call", |b| {
        b.iter(|| black_box(openai.parse(black_box(&openai_whole)).unwrap()))
    });
    group.bench_function("anthropic_whole_tool_call", |b| {
        b.iter(|| black_box(anthropic.parse(&request, black_box(&anthropic_whole)).unwrap()))
    });
    group.finish();
    let mut group = c.benchmark_group("parse_stream");
    group.throughput(Throughput::Elements(pieces as u64));
    group.bench_function("openai", |b| {
        b.iter(|| black_box(openai.parse_stream(black_box(&openai_stream)).unwrap()))
    });
    group.bench_function("anthropic", |b| {
        b.iter(|| black_box(anthropic.parse_stream(&request, black_box(&anthropic_stream)).unwrap()))
    });
    group.finish();
    println!(
        "bodies: openai whole {} B, stream {} B; anthropic whole {} B, stream {} B; {pieces} pieces",
        openai_whole.len(),
        openai_stream.len(),
        anthropic_whole.len(),
        anthropic_stream.len()
    );
}

criterion_group!(benches, formats);
criterion_main!(benches);
