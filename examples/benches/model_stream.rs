//! Streaming throughput, in completion tokens a second, of a 20 000-token answer in one-word
//! pieces: through each HTTP client from the simulated provider server on loopback (against the
//! same answer whole, and the simulated model streamed in-process), then forwarded from a model
//! served on another node process (against the same server asked from its own node).
//!
//! Run: `cargo bench -p foundation-examples --bench model_stream` (about a minute); figures in
//! docs/BENCHMARKS.md. Each figure is the median of 5 runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation_actors::providers::*;
use foundation_cluster::testkit::{NodeProcess, free_port};
use support::{json, seen, start_node, wait, wait_n};

const TOKENS: u64 = 20_000;
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Tokens a second of `RUNS` streams (or whole answers) of `model`.
async fn rate(model: &dyn LanguageModel, stream: bool) -> f64 {
    let request = ChatRequest::prompt("Tell me a story").max_tokens(TOKENS);
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let answer = if stream {
            model.stream(&request).await.unwrap().collect().await.unwrap()
        } else {
            model.complete(&request).await.unwrap()
        };
        assert_eq!(answer.usage.completion_tokens, TOKENS);
        rates.push(TOKENS as f64 / started.elapsed().as_secs_f64());
    }
    median(rates)
}

fn timed(node: &mut NodeProcess) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let before = seen(node, json!({"event": "model_timed"})).len();
        node.send_line(&format!("model-time sim {TOKENS} Tell me a story")).unwrap();
        let timed = wait_n(node, json!({"event": "model_timed"}), before + 1).swap_remove(before);
        assert_eq!(timed["completion_tokens"], TOKENS, "{timed}");
        rates.push(TOKENS as f64 / (timed["micros"].as_u64().unwrap() as f64 / 1e6));
    }
    median(rates)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let model = SimulatedConfig {
            latency: Duration::ZERO,
            completion_tokens: Some(TOKENS),
            ..Default::default()
        };
        let config = SimServerConfig { model: model.clone(), ..Default::default() };
        let server = SimulatedProvider::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        let timeout = Duration::from_secs(60);
        let openai = OpenAiClient::new("sim", "m", Some(server.base_url()), None, timeout);
        let anthropic = AnthropicClient::new("sim", "m", Some(server.base_url()), None, timeout);
        let local = SimulatedModel::new(model);
        println!("in-process simulated model, streamed: {:>9.0} tokens/s", rate(&local, true).await);
        println!("OpenAI client, whole answer:          {:>9.0} tokens/s", rate(&openai, false).await);
        println!("OpenAI client, streamed:              {:>9.0} tokens/s", rate(&openai, true).await);
        println!("Anthropic client, whole answer:       {:>9.0} tokens/s", rate(&anthropic, false).await);
        println!("Anthropic client, streamed:           {:>9.0} tokens/s", rate(&anthropic, true).await);
        let registry = foundation_actors::registry::ServiceRegistry::start().await.unwrap();
        let served =
            ModelServer::new().serve("sim", Arc::new(openai.clone())).start(&registry).await.unwrap();
        let through = RemoteModel::new(&registry, "sim");
        println!("OpenAI client behind a model server:  {:>9.0} tokens/s", rate(&through, true).await);
        served.stop().await;
    });

    let (pm, pc) = (free_port(), free_port());
    let serve = ["--serve-model", "sim", "--model-tokens", "20000", "--model-interval-ms", "0"];
    let mut m = start_node("m", pm, &[], &serve);
    let mut c = start_node("c", pc, &[pm], &[]);
    wait(&c, json!({"event": "member_up", "name": "m"}));
    // The server is visible to `c` a moment after the nodes meet.
    support::until(
        || {
            let before = seen(&c, json!({"event": "model_timed"})).len();
            c.send_line("model-time sim 10 warm up").unwrap();
            std::thread::sleep(Duration::from_millis(200));
            seen(&c, json!({"event": "model_timed"})).len() > before
        },
        || "the model server never answered".into(),
    );
    println!("served on its own node (no network):  {:>9.0} tokens/s", timed(&mut m));
    println!("forwarded from another node:          {:>9.0} tokens/s", timed(&mut c));
}
