//! Agent building blocks: typed tools by name (JSON in and out, errors that name the tool and
//! the field) and the bounded conversation memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_actors::agents::{Memory, ToolError, Tools};
use foundation_actors::providers::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
struct Search {
    query: String,
    limit: usize,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Hit {
    title: String,
    score: f64,
}

fn tools() -> Tools {
    let mut tools = Tools::new();
    tools
        .register("search", "finds documents by keyword", |s: Search| async move {
            if s.query.is_empty() {
                return Err("an empty query finds nothing".into());
            }
            Ok((0..s.limit)
                .map(|i| Hit { title: format!("{} #{i}", s.query), score: 1.0 / (i + 1) as f64 })
                .collect::<Vec<_>>())
        })
        .unwrap()
        .register("clock_now", "the time, as a fixed string in tests", |_: ()| async {
            Ok::<_, foundation_core::BoxError>("12:00")
        })
        .unwrap();
    tools
}

#[tokio::test]
async fn tools_are_called_by_name_with_json_or_typed_arguments() {
    let tools = tools();
    assert_eq!(tools.names(), ["clock_now", "search"]);
    assert_eq!(
        tools.describe(),
        "clock_now: the time, as a fixed string in tests\nsearch: finds documents by keyword"
    );

    let hits = tools.call("search", json!({"query": "crdt", "limit": 2})).await.unwrap();
    assert_eq!(hits, json!([{"title": "crdt #0", "score": 1.0}, {"title": "crdt #1", "score": 0.5}]));
    let typed: Vec<Hit> =
        tools.call_typed("search", &Search { query: "raft".into(), limit: 1 }).await.unwrap();
    assert_eq!(typed, [Hit { title: "raft #0".into(), score: 1.0 }]);
    assert_eq!(tools.call("clock_now", json!(null)).await.unwrap(), "12:00");
    // A clone shares the tools.
    assert_eq!(tools.clone().call("clock_now", json!(null)).await.unwrap(), "12:00");
}

#[tokio::test]
async fn bad_calls_get_errors_that_name_the_tool_and_the_field() {
    let tools = tools();
    match tools.call("serach", json!({})).await {
        Err(ToolError::Unknown { name, known }) => {
            assert_eq!((name.as_str(), known), ("serach", vec!["clock_now".into(), "search".into()]))
        }
        other => panic!("expected an unknown tool, got {other:?}"),
    }
    let bad = tools.call("search", json!({"query": "x", "limit": "three"})).await.unwrap_err();
    assert!(matches!(&bad, ToolError::BadArguments { tool, .. } if tool == "search"), "{bad:?}");
    assert!(bad.to_string().contains("limit"), "the field is named: {bad}");
    let failed = tools.call("search", json!({"query": "", "limit": 1})).await.unwrap_err();
    assert_eq!(failed.to_string(), "tool `search` failed: an empty query finds nothing");
    let wrong_result: Result<u32, _> = tools.call_typed("clock_now", &()).await;
    assert!(matches!(wrong_result, Err(ToolError::BadResult { .. })));

    let mut more = tools.clone();
    for name in ["", "has space", &"x".repeat(65), "search"] {
        let refused =
            more.register(name, "", |_: ()| async { Ok::<_, foundation_core::BoxError>(()) }).unwrap_err();
        assert!(matches!(refused, ToolError::Registration { .. }), "{name:?}: {refused:?}");
    }
}

#[test]
fn memory_never_starts_its_window_with_tool_results_whose_call_it_forgot() {
    use foundation_actors::providers::ToolCall;
    let mut memory = Memory::new(3).unwrap().with_system("sys");
    let call = |id: &str| ToolCall { id: id.into(), name: "t".into(), arguments: "{}".into() };
    memory.remember(ChatMessage::user("q"));
    memory.remember(ChatMessage::assistant_tool_calls("", vec![call("a"), call("b")]));
    memory.remember(ChatMessage::tool_result("a", "1"));
    memory.remember(ChatMessage::tool_result("b", "2"));
    // The window holds the assistant's calls and both results: all kept.
    let roles: Vec<Role> = memory.messages().iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::Assistant, Role::Tool, Role::Tool]);
    // One more message pushes the calls out: their results go from the conversation too.
    memory.remember(ChatMessage::assistant("done"));
    let roles: Vec<Role> = memory.messages().iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::Assistant]);
}

#[test]
fn memory_keeps_the_system_prompt_and_a_bounded_window() {
    assert!(Memory::new(0).is_err());
    let mut memory = Memory::new(3).unwrap().with_system("You plan.");
    for i in 0..10 {
        memory.remember(ChatMessage::user(format!("u{i}")));
        memory.remember(ChatMessage::assistant(format!("a{i}")));
        assert!(memory.len() <= 3);
    }
    let messages = memory.messages();
    assert_eq!(messages[0].role, Role::System);
    let recent: Vec<_> = messages[1..].iter().map(|m| m.text()).collect();
    assert_eq!(recent, ["a8", "u9", "a9"]);
    assert_eq!(memory.forgotten(), 17);
}

// ---------------------------------------------------------------------------------------------
// The agent runtime: steps with a model, memory and tools; discovery by capability; asks;
// supervision; tools served through the registry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundation_actors::agents::{
    AGENT_NAME_KEY, AGENT_SERVICE, Agent, AgentContext, AgentError, AgentRef, AgentSpec, ToolServer,
};
use foundation_actors::providers::{BoxFuture, ChatRequest, Completion, LanguageModel, LmError, Usage};
use foundation_actors::registry::{Query, ServiceRegistry};

/// Generous: only reached when something is broken (a loaded 2-core machine is slow, not stuck).
const ASK: Duration = Duration::from_secs(20);

/// A model that answers `echo: <last message>` and keeps every request it was sent.
#[derive(Clone, Default)]
struct Echo {
    requests: Arc<Mutex<Vec<ChatRequest>>>,
}

impl LanguageModel for Echo {
    fn model(&self) -> &str {
        "echo"
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        self.requests.lock().unwrap().push(request.clone());
        let last = request.messages.last().map(|m| m.text()).unwrap_or_default();
        Box::pin(async move {
            Ok(Completion::from_text(format!("echo: {last}"), Usage::default(), "echo", "test"))
        })
    }
}

/// Polls `check` until it returns `Some`, failing after a generous deadline.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Sum {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Explained {
    sum: i64,
    answer: String,
    /// The memory after the step: `role: content` per message.
    memory: Vec<String>,
    steps: u64,
}

/// Adds with a tool, has the model explain, and reports its memory.
struct Explainer {
    steps: u64,
}

impl Agent for Explainer {
    type Input = Sum;
    type Output = Explained;

    async fn step(&mut self, ctx: &mut AgentContext, input: Sum) -> Result<Explained, AgentError> {
        self.steps += 1;
        let sum = ctx.call_tool("add", json!({"a": input.a, "b": input.b})).await?;
        let sum = sum.as_i64().ok_or_else(|| AgentError::step(format!("`add` gave {sum}")))?;
        let answer = ctx.ask_model(format!("{} + {} = {sum}", input.a, input.b)).await?;
        let memory = ctx.memory().messages().iter().map(|m| format!("{:?}: {}", m.role, m.text())).collect();
        Ok(Explained { sum, answer, memory, steps: self.steps })
    }
}

fn adder() -> Tools {
    let mut tools = Tools::new();
    tools
        .register("add", "adds two integers", |s: Sum| async move {
            s.a.checked_add(s.b).ok_or_else(|| "overflow".into())
        })
        .unwrap();
    tools
}

#[tokio::test]
async fn an_agent_steps_with_its_model_and_a_tool_and_remembers_the_exchange() {
    let registry = ServiceRegistry::start().await.unwrap();
    let model = Echo::default();
    let agent = AgentSpec::new("explainer", || Explainer { steps: 0 })
        .model(model.clone())
        .tools(adder())
        .memory(Memory::new(3).unwrap().with_system("Explain sums."))
        .capabilities(["math", "explain"])
        .start(&registry)
        .await
        .unwrap();
    assert_eq!(agent.name(), "explainer");

    let first = agent.ask(Sum { a: 2, b: 3 }, ASK).await.unwrap();
    assert_eq!(first.sum, 5);
    assert_eq!(first.answer, "echo: 2 + 3 = 5");
    assert_eq!(first.memory, ["System: Explain sums.", "User: 2 + 3 = 5", "Assistant: echo: 2 + 3 = 5"]);

    // The conversation carries on from memory, within its window (3), system prompt pinned.
    let second = agent.ask(Sum { a: 10, b: -4 }, ASK).await.unwrap();
    assert_eq!((second.sum, second.steps), (6, 2), "the state lives across steps");
    assert_eq!(
        second.memory,
        [
            "System: Explain sums.",
            "Assistant: echo: 2 + 3 = 5",
            "User: 10 + -4 = 6",
            "Assistant: echo: 10 + -4 = 6"
        ]
    );
    let sent = model.requests.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    let contents: Vec<_> = sent[1].messages.iter().map(|m| m.text()).collect();
    assert_eq!(contents, ["Explain sums.", "2 + 3 = 5", "echo: 2 + 3 = 5", "10 + -4 = 6"]);

    // A tool's error is the step's error, which reaches the asker naming agent and tool.
    let err = agent.ask(Sum { a: i64::MAX, b: 1 }, ASK).await.unwrap_err();
    let AgentError::Failed { agent: name, reason } = &err else { panic!("{err:?}") };
    assert_eq!((name.as_str(), reason.as_str()), ("explainer", "tool `add` failed: overflow"));

    // Registered once, under the agents service, with its capabilities and name.
    let found = registry.discover(&Query::new().name(AGENT_SERVICE).capability("explain"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].metadata[AGENT_NAME_KEY], "explainer");
    assert!(found[0].capabilities.contains("math"));
    agent.stop().await;
    assert!(registry.discover(&Query::new().name(AGENT_SERVICE)).is_empty(), "gone when stopped");
    assert_eq!(registry.len(), 0, "deregistered when stopped");
}

#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    goal: String,
    a: i64,
    b: i64,
}

/// The math agent's input as the planner writes it: its own type, of the same JSON form.
#[derive(Debug, Serialize, Deserialize)]
struct MathQuestion {
    a: i64,
    b: i64,
}

/// Delegates arithmetic to whichever agent offers `math`.
struct Planner;

impl Agent for Planner {
    type Input = Plan;
    type Output = String;

    async fn step(&mut self, ctx: &mut AgentContext, plan: Plan) -> Result<String, AgentError> {
        // Never finds itself.
        let myself = ctx.find("planning").unwrap_err();
        assert!(matches!(myself, AgentError::UnknownCapability { .. }), "{myself:?}");
        let math = ctx.find("math")?;
        let explained: Explained = math.ask(MathQuestion { a: plan.a, b: plan.b }, ASK).await?;
        Ok(format!("{}: {} (by {})", plan.goal, explained.sum, math.name()))
    }
}

#[tokio::test]
async fn agents_find_each_other_by_capability_and_ask() {
    let registry = ServiceRegistry::start().await.unwrap();
    let explainer = AgentSpec::new("explainer", || Explainer { steps: 0 })
        .model(Echo::default())
        .tools(adder())
        .capabilities(["math"])
        .start(&registry)
        .await
        .unwrap();
    let planner =
        AgentSpec::new("planner", || Planner).capabilities(["planning"]).start(&registry).await.unwrap();

    let found = AgentRef::find(&registry, "planning").unwrap();
    assert_eq!(
        (found.name(), found.capabilities(), found.is_local()),
        ("planner", &["planning".to_string()][..], true)
    );
    let answer: String = found.ask(Plan { goal: "budget".into(), a: 40, b: 2 }, ASK).await.unwrap();
    assert_eq!(answer, "budget: 42 (by explainer)");
    assert_eq!(AgentRef::named(&registry, "explainer").unwrap().name(), "explainer");
    assert_eq!(AgentRef::find_all(&registry, "math").len(), 1);

    planner.stop().await;
    explainer.stop().await;
}

#[derive(Debug, Serialize, Deserialize)]
enum Command {
    Count,
    Panic,
}

/// Counts its steps; panics when told to.
struct Fragile {
    count: u64,
}

impl Agent for Fragile {
    type Input = Command;
    type Output = u64;

    async fn step(&mut self, _: &mut AgentContext, command: Command) -> Result<u64, AgentError> {
        self.count += 1;
        match command {
            Command::Count => Ok(self.count),
            Command::Panic => panic!("told to panic after {} steps", self.count),
        }
    }
}

#[tokio::test]
async fn a_panicking_step_is_an_error_for_the_asker_and_the_agent_restarts_registered_again() {
    let registry = ServiceRegistry::start().await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let spec = AgentSpec::new("fragile", move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Fragile { count: 0 }
    })
    .capabilities(["fragile"]);
    let agent = spec.start(&registry).await.unwrap();
    assert_eq!(agent.ask(Command::Count, ASK).await.unwrap(), 1);
    let before = AgentRef::find(&registry, "fragile").unwrap();

    let crashed = before.ask::<_, u64>(Command::Panic, ASK).await.unwrap_err();
    assert_eq!(crashed, AgentError::Crashed { agent: "fragile".into() });
    // The old handle names the stopped instance.
    assert_eq!(
        before.ask::<_, u64>(Command::Count, ASK).await,
        Err(AgentError::Stopped { agent: "fragile".into() })
    );

    // The supervisor restarts it from its factory (fresh state), and it registers again: found
    // by capability, a new actor, the only live registration.
    let after = eventually("the agent to be registered again", || async {
        AgentRef::find(&registry, "fragile").ok().filter(|a| a.cell().get_id() != before.cell().get_id())
    })
    .await;
    assert_eq!(
        after.ask::<_, u64>(Command::Count, ASK).await.unwrap(),
        1,
        "a restart starts from a fresh state"
    );
    assert_eq!(agent.ask(Command::Count, ASK).await.unwrap(), 2);
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert_eq!(registry.discover(&Query::new().name(AGENT_SERVICE)).len(), 1);
    // The crashed instance's registration itself is gone (not only hidden from discovery).
    eventually("the crashed registration to be removed", || async { (registry.len() == 1).then_some(()) })
        .await;
    let children = agent.supervisor().children().await.unwrap();
    assert_eq!((children[0].id.as_str(), children[0].restarts), ("fragile", 1));
    let crashes = agent.supervisor().crashes().await.unwrap();
    assert!(crashes[0].error.contains("told to panic after 2 steps"), "{crashes:?}");
    agent.stop().await;
}

/// Waits for a signal before answering; refuses negative numbers; has no model.
struct Slow {
    go: Arc<tokio::sync::Notify>,
}

impl Agent for Slow {
    type Input = Sum;
    type Output = i64;

    async fn step(&mut self, ctx: &mut AgentContext, input: Sum) -> Result<i64, AgentError> {
        if input.a < 0 {
            return Err(AgentError::step("negative numbers are not my thing"));
        }
        if input.b < 0 {
            ctx.ask_model("hello?").await?;
        }
        if input.a == 0 {
            self.go.notified().await;
        }
        Ok(input.a + input.b)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct WrongSum {
    a: String,
    b: i64,
}

#[tokio::test]
async fn unknown_capabilities_and_bad_inputs_get_clear_errors() {
    let registry = ServiceRegistry::start().await.unwrap();
    let go = Arc::new(tokio::sync::Notify::new());
    let signal = go.clone();
    let agent = AgentSpec::new("slow", move || Slow { go: signal.clone() })
        .capabilities(["add", "wait"])
        .start(&registry)
        .await
        .unwrap();
    let slow = AgentRef::find(&registry, "wait").unwrap();

    let unknown = AgentRef::find(&registry, "fly").unwrap_err();
    assert_eq!(
        unknown,
        AgentError::UnknownCapability {
            capability: "fly".into(),
            offered: vec!["add".into(), "wait".into()]
        }
    );
    assert!(unknown.to_string().contains("`fly`") && unknown.to_string().contains("add, wait"), "{unknown}");
    assert_eq!(AgentRef::named(&registry, "ghost").unwrap_err(), AgentError::UnknownAgent("ghost".into()));

    // An input that does not fit: the field is named, and the agent carries on.
    let bad = slow.ask::<_, i64>(WrongSum { a: "one".into(), b: 2 }, ASK).await.unwrap_err();
    let AgentError::BadInput { agent: name, source } = &bad else { panic!("{bad:?}") };
    assert_eq!(name, "slow");
    let reason = source.to_string();
    assert!(reason.contains('a') && reason.contains("invalid type"), "{bad}");
    // An output read as the wrong type.
    let bad = slow.ask::<_, String>(Sum { a: 1, b: 2 }, ASK).await.unwrap_err();
    assert!(matches!(&bad, AgentError::BadOutput { agent, .. } if agent == "slow"), "{bad:?}");
    // The step's own error, and a model that is not there.
    let failed = slow.ask::<_, i64>(Sum { a: -1, b: 0 }, ASK).await.unwrap_err();
    assert_eq!(failed.to_string(), "agent `slow` failed: negative numbers are not my thing");
    let no_model = slow.ask::<_, i64>(Sum { a: 1, b: -1 }, ASK).await.unwrap_err();
    assert!(no_model.to_string().contains("agent `slow` has no language model"), "{no_model}");

    // No answer in time: a timeout, and the agent answers later asks once it is done.
    let timeout = Duration::from_millis(50);
    let late = slow.ask::<_, i64>(Sum { a: 0, b: 1 }, timeout).await.unwrap_err();
    assert_eq!(late, AgentError::Timeout { agent: "slow".into(), after: timeout });
    go.notify_one();
    assert_eq!(slow.ask::<_, i64>(Sum { a: 2, b: 2 }, ASK).await.unwrap(), 4);

    // An empty name is refused at start.
    let err = AgentSpec::new("", || Slow { go: Default::default() }).start(&registry).await.unwrap_err();
    assert!(matches!(err, AgentError::Start { .. }), "{err:?}");
    agent.stop().await;
    assert_eq!(
        slow.ask::<_, i64>(Sum { a: 1, b: 1 }, ASK).await,
        Err(AgentError::Stopped { agent: "slow".into() })
    );
}

#[derive(Debug, Serialize, Deserialize)]
struct UseTool {
    tool: String,
    args: serde_json::Value,
}

/// Calls whatever tool it is told to, wherever it is served.
struct ToolUser;

impl Agent for ToolUser {
    type Input = UseTool;
    type Output = serde_json::Value;

    async fn step(
        &mut self,
        ctx: &mut AgentContext,
        input: UseTool,
    ) -> Result<serde_json::Value, AgentError> {
        ctx.call_tool(&input.tool, input.args).await
    }
}

#[tokio::test]
async fn tools_served_by_a_tool_server_are_called_by_name_through_the_registry() {
    let registry = ServiceRegistry::start().await.unwrap();
    let server = ToolServer::new(tools()).start(&registry).await.unwrap();
    // The server is registered with a capability per tool.
    let servers = registry.discover(&Query::new().capability("tool:search"));
    assert_eq!(servers.len(), 1);
    assert!(servers[0].capabilities.contains("tool:clock_now"));

    let agent = AgentSpec::new("librarian", || ToolUser).tools(adder()).start(&registry).await.unwrap();
    let call = |tool: &str, args| agent.ask(UseTool { tool: tool.into(), args }, ASK);

    let hits = call("search", json!({"query": "crdt", "limit": 1})).await.unwrap();
    assert_eq!(hits, json!([{"title": "crdt #0", "score": 1.0}]));
    assert_eq!(call("add", json!({"a": 1, "b": 2})).await.unwrap(), 3, "its own tools too");
    let failed = call("search", json!({"query": "", "limit": 1})).await.unwrap_err();
    assert_eq!(
        failed.to_string(),
        "agent `librarian` failed: tool `search` failed: an empty query finds nothing"
    );
    let bad = call("search", json!({"query": "x", "limit": "three"})).await.unwrap_err();
    assert!(bad.to_string().contains("bad arguments") && bad.to_string().contains("limit"), "{bad}");
    let unknown = call("serach", json!({})).await.unwrap_err();
    assert!(
        unknown.to_string().contains("unknown tool `serach`; known tools: add, clock_now, search"),
        "{unknown}"
    );

    // Any code may call a served tool; once the server stops, the tool is unknown.
    let now = ToolServer::call(&registry, "clock_now", json!(null), ASK).await.unwrap();
    assert_eq!(now, "12:00");
    server.stop().await;
    let gone = ToolServer::call(&registry, "clock_now", json!(null), ASK).await.unwrap_err();
    assert!(
        matches!(&gone, AgentError::Tool(ToolError::Unknown { name, .. }) if name == "clock_now"),
        "{gone:?}"
    );
    agent.stop().await;
}
