//! The tool-calling loop's own cost per step, without model latency: an instant model that
//! asks for one tool call and then answers, driven through an agent, with the tool local (the
//! agent's own) and served by another node process on loopback, against the baselines measured
//! in the same run:
//!
//! - **model only**: the same agent making the same two model calls with no tools (the ask, the
//!   actor, the memory, the model calls): what a loop step adds is the difference;
//! - **tool direct**: the tool called without the loop (`Tools::call` locally, `ToolServer::call`
//!   across nodes): what the loop adds around the call itself (offering, checking the arguments
//!   against the schema, records, spans, the tool message).
//!
//! Each mode runs N asks one after the other; the modes alternate over rounds and the median
//! round is reported. Run: `cargo bench -p foundation-examples --bench tool_step` (figures in
//! docs/BENCHMARKS.md). The benchmark starts a copy of itself as the tool node
//! (`FOUNDATION_BENCH_ROLE=tools`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::{Duration, Instant};

use foundation_actors::agents::{
    Agent, AgentContext, AgentError, AgentHandle, AgentSpec, Memory, ToolLoop, ToolServer, Tools,
};
use foundation_actors::providers::{
    BoxFuture, ChatMessage, ChatRequest, Completion, FinishReason, LanguageModel, LmError, Role, ToolCall,
    Usage,
};
use foundation_actors::registry::{Query, ServiceRegistry};
use foundation_cluster::Cluster;
use foundation_cluster::testkit::{NodeProcess, free_port};
use foundation_core::config::ClusterConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const ASKS: usize = 2_000;
const ROUNDS: usize = 5;
const WAIT: Duration = Duration::from_secs(60);
const COOKIE: &str = "tool-step-bench";

#[derive(Deserialize, JsonSchema)]
struct Echo {
    /// The text to give back.
    text: String,
}

fn echo_tools(name: &str) -> Tools {
    let mut tools = Tools::new();
    tools
        .register(
            name,
            "gives its text back",
            |e: Echo| async move { Ok::<_, foundation_core::BoxError>(e.text) },
        )
        .unwrap();
    tools
}

/// Answers a user message with a call of `tool`, and a tool result with "ok": instantly.
struct InstantModel {
    tool: String,
}

impl LanguageModel for InstantModel {
    fn model(&self) -> &str {
        "instant"
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        let usage = Usage { prompt_tokens: 10, completion_tokens: 2, cached_prompt_tokens: 0 };
        let mut answer = Completion::from_text("ok", usage, "instant", "bench");
        let last = request.messages.last().map(|m| m.role);
        if last == Some(Role::User) && !request.tools.is_empty() {
            answer.content.clear();
            answer.finish_reason = FinishReason::ToolCalls;
            answer.tool_calls.push(ToolCall {
                id: "call_1".into(),
                name: self.tool.clone(),
                arguments: r#"{"text": "hello"}"#.into(),
            });
        }
        Box::pin(async move { Ok(answer) })
    }
}

#[derive(Serialize, Deserialize)]
enum Mode {
    /// Two model calls, no tools.
    ModelOnly,
    /// The loop: a model call asking for the tool, the tool, a model call answering.
    Loop,
}

struct Stepper;

impl Agent for Stepper {
    type Input = Mode;
    type Output = usize;

    async fn step(&mut self, ctx: &mut AgentContext, mode: Mode) -> Result<usize, AgentError> {
        match mode {
            Mode::ModelOnly => {
                let first = ctx.complete(ChatRequest::new(vec![ChatMessage::user("go")])).await?;
                ctx.complete(ChatRequest::new(vec![ChatMessage::tool_result("call_1", first.content)]))
                    .await?;
                Ok(2)
            }
            Mode::Loop => {
                let run = ctx.run_tools("go", &ToolLoop::new()).await?;
                assert!(run.calls().all(|c| c.outcome.is_done()), "{run:?}");
                Ok(run.steps.len())
            }
        }
    }
}

async fn start_agent(registry: &ServiceRegistry, name: &str, tool: &str, own: bool) -> AgentHandle<Stepper> {
    let spec = AgentSpec::new(name, || Stepper)
        .model(InstantModel { tool: tool.into() })
        .memory(Memory::new(4).unwrap());
    let spec = if own { spec.tools(echo_tools(tool)) } else { spec.remote_tools([tool]) };
    spec.start(registry).await.unwrap()
}

/// Microseconds per ask over `ASKS` asks.
async fn per_ask(agent: &AgentHandle<Stepper>, mode: fn() -> Mode) -> f64 {
    for _ in 0..50 {
        agent.ask(mode(), WAIT).await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..ASKS {
        agent.ask(mode(), WAIT).await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / ASKS as f64
}

/// Microseconds per call of `call` over `ASKS` calls.
async fn per_call<F: Future<Output = ()>>(mut call: impl FnMut() -> F) -> f64 {
    for _ in 0..50 {
        call().await;
    }
    let started = Instant::now();
    for _ in 0..ASKS {
        call().await;
    }
    started.elapsed().as_secs_f64() * 1e6 / ASKS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The tool node: serves `echo_remote` until its standard input closes.
async fn tool_node() {
    let listen = std::env::var("BENCH_LISTEN").unwrap();
    let seed = std::env::var("BENCH_SEED").unwrap();
    let config = ClusterConfig {
        listen: listen.parse().unwrap(),
        seeds: vec![seed.parse().unwrap()],
        cookie: COOKIE.into(),
        ..Default::default()
    };
    let cluster = Cluster::start("tools", &config, None).await.unwrap();
    let registry = ServiceRegistry::start().await.unwrap();
    let _server = ToolServer::new(echo_tools("echo_remote")).start(&registry).await.unwrap();
    println!("ready");
    let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
    cluster.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if std::env::var("FOUNDATION_BENCH_ROLE").as_deref() == Ok("tools") {
        runtime.block_on(tool_node());
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs benchmarks as tests: nothing to check here.
        return;
    }
    runtime.block_on(async {
        let listen = format!("127.0.0.1:{}", free_port());
        let config = ClusterConfig { listen: listen.parse().unwrap(), cookie: COOKIE.into(), ..Default::default() };
        let cluster = Cluster::start("agent", &config, None).await.unwrap();
        let registry = ServiceRegistry::start().await.unwrap();
        let exe = std::env::current_exe().unwrap();
        let node = NodeProcess::spawn_with_env(
            "tools",
            &exe,
            ["--bench"],
            [
                ("FOUNDATION_BENCH_ROLE", "tools".to_string()),
                ("BENCH_LISTEN", format!("127.0.0.1:{}", free_port())),
                ("BENCH_SEED", listen.clone()),
            ],
        )
        .unwrap();
        node.wait_for("ready", WAIT).unwrap();
        let deadline = Instant::now() + WAIT;
        while registry.discover(&Query::new().name("tools").capability("tool:echo_remote")).is_empty() {
            assert!(Instant::now() < deadline, "the tool node's server never reached this node");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let local = start_agent(&registry, "local", "echo", true).await;
        let remote = start_agent(&registry, "remote", "echo_remote", false).await;
        let tools = echo_tools("echo");
        let (mut model_only, mut local_loop, mut remote_loop, mut direct_local, mut direct_remote) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            model_only.push(per_ask(&local, || Mode::ModelOnly).await);
            local_loop.push(per_ask(&local, || Mode::Loop).await);
            remote_loop.push(per_ask(&remote, || Mode::Loop).await);
            direct_local.push(per_call(|| async { tools.call("echo", json!({"text": "hello"})).await.unwrap(); }).await);
            direct_remote.push(
                per_call(|| async {
                    ToolServer::call(&registry, "echo_remote", json!({"text": "hello"}), WAIT).await.unwrap();
                })
                .await,
            );
        }
        let (base, local_loop, remote_loop) = (median(model_only), median(local_loop), median(remote_loop));
        let (direct_local, direct_remote) = (median(direct_local), median(direct_remote));
        println!("tool_step: {ASKS} asks per mode, median of {ROUNDS} rounds; the model answers instantly");
        println!("{:<34} {:>10}", "mode", "µs/ask");
        println!("{:<34} {:>10.1}", "model only (2 model calls)", base);
        println!("{:<34} {:>10.1}", "loop, local tool (2 calls + tool)", local_loop);
        println!("{:<34} {:>10.1}", "loop, remote tool", remote_loop);
        println!("{:<34} {:>10.1}", "tool direct, local", direct_local);
        println!("{:<34} {:>10.1}", "tool direct, remote (1 round trip)", direct_remote);
        println!(
            "a tool step adds {:.1} µs with a local tool ({:.1} µs beyond the call itself), {:.1} µs with a remote one ({:.1} µs beyond the round trip)",
            local_loop - base,
            local_loop - base - direct_local,
            remote_loop - base,
            remote_loop - base - direct_remote,
        );
        local.stop().await;
        remote.stop().await;
        drop(node);
        cluster.shutdown().await;
    });
}
