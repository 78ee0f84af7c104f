//! The agents' tool-calling loop: checks before running (unknown tool, bad JSON, schema
//! violations go back to the model), concurrent calls, own then served tools, the step limit,
//! structured final answers, streaming to an observer, memory and spans; and the schema check
//! against what serde accepts for the types whose schemas it checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::agents::{
    Agent, AgentContext, AgentError, AgentSpec, LoopEvent, MAX_CALLS_PER_STEP, ToolError, ToolLoop,
    ToolOutcome, ToolPlace, ToolRun, ToolServer, Tools,
};
use foundation_actors::providers::{
    BoxFuture, ChatRequest, Completion, FinishReason, LanguageModel, LmError, ResponseFormat, Role,
    SimulatedConfig, SimulatedModel, ToolCall, Usage, check_against_schema, schema_of,
};
use foundation_actors::registry::ServiceRegistry;
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const ASK: Duration = Duration::from_secs(30);

/// A model that gives scripted answers in order (then a final "done"), keeping every request.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Completion>>>,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
}

impl Script {
    fn new(answers: impl IntoIterator<Item = Completion>) -> Self {
        Script { answers: Arc::new(Mutex::new(answers.into_iter().collect())), ..Default::default() }
    }

    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn calls(list: &[(&str, &str)]) -> Completion {
    let mut c = Completion::from_text(
        "",
        Usage { prompt_tokens: 10, completion_tokens: 5, ..Default::default() },
        "script",
        "test",
    );
    c.finish_reason = FinishReason::ToolCalls;
    c.tool_calls = list
        .iter()
        .enumerate()
        .map(|(i, (name, args))| ToolCall {
            id: format!("c{i}"),
            name: name.to_string(),
            arguments: args.to_string(),
        })
        .collect();
    c
}

impl LanguageModel for Script {
    fn model(&self) -> &str {
        "script"
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        self.requests.lock().unwrap().push(request.clone());
        let next = self.answers.lock().unwrap().pop_front();
        Box::pin(async move {
            Ok(next.unwrap_or_else(|| {
                Completion::from_text(
                    "done",
                    Usage { prompt_tokens: 10, completion_tokens: 1, ..Default::default() },
                    "script",
                    "test",
                )
            }))
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Nothing {}

#[derive(Debug, Deserialize, JsonSchema)]
struct Shout {
    text: String,
}

fn own_tools(barrier: Arc<tokio::sync::Barrier>) -> Tools {
    let mut tools = Tools::new();
    tools
        .register("add", "adds two integers", |x: Add| async move {
            x.a.checked_add(x.b).ok_or_else(|| "overflow".into())
        })
        .unwrap()
        .register(
            "fail",
            "always fails",
            |_: Nothing| async move { Err::<(), _>("the disk is on fire".into()) },
        )
        .unwrap()
        .register("explode", "panics", |_: ()| async move {
            if "a".len() == 1 {
                panic!("the tool blew up");
            }
            Ok::<_, foundation_core::BoxError>(())
        })
        .unwrap()
        .register("huge", "returns a lot", |_: Nothing| async move {
            Ok::<_, foundation_core::BoxError>("x".repeat(100_000))
        })
        .unwrap()
        // Answers only once another call of it is running too: calls run one after the other
        // never both get there.
        .register("meet", "waits for a second caller", move |_: Nothing| {
            let barrier = barrier.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(2), barrier.wait())
                    .await
                    .map_err(|_| "nobody else came: the calls did not run at the same time")?;
                Ok::<_, foundation_core::BoxError>("met")
            }
        })
        .unwrap();
    tools
}

/// Runs the loop on each prompt and answers with the run and its memory (`role: text`).
struct Looper {
    options: ToolLoop,
}

#[derive(Debug, Serialize, Deserialize)]
struct Looped {
    run: ToolRun,
    memory: Vec<(Role, String, Option<String>)>,
}

impl Agent for Looper {
    type Input = String;
    type Output = Result<Looped, String>;

    async fn step(&mut self, ctx: &mut AgentContext, prompt: String) -> Result<Self::Output, AgentError> {
        let result = ctx.run_tools(prompt, &self.options).await;
        let memory =
            ctx.memory().messages().iter().map(|m| (m.role, m.text(), m.tool_call_id.clone())).collect();
        Ok(result.map(|run| Looped { run, memory }).map_err(|e| {
            // The memory is reported with the error too: a failed run leaves what it did.
            let kinds = match &e {
                AgentError::StepLimit { run, .. } => {
                    run.calls().map(|c| c.outcome.kind()).collect::<Vec<_>>().join(", ")
                }
                _ => String::new(),
            };
            format!("{e} | memory: {} | kinds: {kinds}", ctx.memory().len())
        }))
    }
}

async fn looper(
    registry: &ServiceRegistry,
    name: &str,
    model: impl LanguageModel,
    options: ToolLoop,
    remote: &[&str],
) -> foundation_actors::agents::AgentHandle<Looper> {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    AgentSpec::new(name, move || Looper { options: options.clone() })
        .model(model)
        .tools(own_tools(barrier.clone()))
        .remote_tools(remote.iter().copied())
        .start(registry)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_calls_go_back_to_the_model_as_tool_errors_and_the_run_goes_on() {
    let registry = ServiceRegistry::start().await.unwrap();
    let mut served = Tools::new();
    served
        .register("shout", "upper-cases a text", |s: Shout| async move {
            Ok::<_, foundation_core::BoxError>(s.text.to_uppercase())
        })
        .unwrap();
    let server = ToolServer::new(served).start(&registry).await.unwrap();
    let script = Script::new([
        calls(&[
            ("add", r#"{"a": 2, "b": 3}"#),
            ("subtract", r#"{"a": 2}"#),
            ("add", r#"{"a": 2, "b": "#),
            ("add", r#"{"a": "two", "b": 3}"#),
            ("add", r#"{"a": 2}"#),
            ("fail", ""),
            ("huge", "{}"),
            ("shout", r#"{"text": "hi"}"#),
        ]),
        calls(&[("add", r#"{"a": 40, "b": 2}"#)]),
    ]);
    let agent = looper(&registry, "checker", script.clone(), ToolLoop::new(), &["shout", "not_served"]).await;
    let out = agent.ask("compute".into(), ASK).await.unwrap().unwrap();
    let run = &out.run;

    // What the model was offered: its own tools and the served one, with their schemas; the
    // named tool nobody serves is not offered, and the run says so.
    let requests = script.requests();
    assert_eq!(requests.len(), 3, "two tool steps and the final answer");
    let offered: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(offered, ["add", "explode", "fail", "huge", "meet", "shout"]);
    assert_eq!(requests[0].tools[0].parameters["required"], json!(["a", "b"]));
    assert_eq!(requests[0].tools[5].parameters["properties"]["text"]["type"], "string");
    // A tool without arguments is offered an empty object (model APIs take only objects).
    assert_eq!(
        requests[0].tools[1].parameters,
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    );
    assert_eq!(run.unavailable, ["not_served"]);

    let outcomes: Vec<(&str, ToolPlace, &str)> =
        run.steps[0].calls.iter().map(|r| (r.name.as_str(), r.place, r.outcome.kind())).collect();
    assert_eq!(
        outcomes,
        [
            ("add", ToolPlace::Own, "done"),
            ("subtract", ToolPlace::Nowhere, "unknown_tool"),
            ("add", ToolPlace::Own, "invalid_json"),
            ("add", ToolPlace::Own, "schema_violation"),
            ("add", ToolPlace::Own, "schema_violation"),
            ("fail", ToolPlace::Own, "failed"),
            ("huge", ToolPlace::Own, "failed"),
            ("shout", ToolPlace::Served, "done"),
        ]
    );
    let records = &run.steps[0].calls;
    assert_eq!(records[0].outcome, ToolOutcome::Done(json!(5)));
    assert_eq!(records[7].outcome, ToolOutcome::Done(json!("HI")));
    let ToolOutcome::SchemaViolation(v) = &records[3].outcome else { panic!() };
    assert_eq!(v.pointer, "/a");
    let ToolOutcome::SchemaViolation(v) = &records[4].outcome else { panic!() };
    assert!(v.expected.contains("`b`"), "{v}");
    assert!(matches!(&records[6].outcome, ToolOutcome::Failed(ToolError::BadResult { .. })));

    // The model read every result in its call's place, errors as {"error": …} it can act on.
    let second = &requests[1].messages;
    let results: Vec<(&str, Value)> = second
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| (m.tool_call_id.as_deref().unwrap(), serde_json::from_str(&m.text()).unwrap()))
        .collect();
    assert_eq!(results.len(), 8);
    assert_eq!(results[0], ("c0", json!(5)));
    assert!(
        results[1].1["error"]
            .as_str()
            .unwrap()
            .contains("no tool `subtract`; the tools are: add, explode, fail")
    );
    assert!(results[2].1["error"].as_str().unwrap().contains("not JSON"));
    assert!(
        results[3].1["error"].as_str().unwrap().contains("at `/a`: an integer, not \"two\""),
        "{results:?}"
    );
    assert!(results[5].1["error"].as_str().unwrap().contains("the disk is on fire"));
    assert!(results[6].1["error"].as_str().unwrap().contains("over the 65536-byte limit"));
    assert_eq!(results[7], ("c7", json!("HI")));
    assert_eq!(second[1].role, Role::Assistant, "the assistant's calls come before their results");
    assert_eq!(second[1].tool_calls.len(), 8);

    // Then a second step, then the final answer; usage summed over the three model calls.
    assert_eq!(run.steps.len(), 3);
    assert_eq!(run.steps[1].calls[0].outcome, ToolOutcome::Done(json!(42)));
    assert_eq!(run.answer.content, "done");
    assert_eq!(run.usage.prompt_tokens, 30);
    assert_eq!(run.usage.completion_tokens, 11);
    // The memory holds the whole exchange: prompt, calls, results, answer.
    let roles: Vec<Role> = out.memory.iter().map(|m| m.0).collect();
    assert_eq!(roles.len(), 1 + 1 + 8 + 1 + 1 + 1, "{roles:?}");
    assert_eq!(roles[0], Role::User);
    assert_eq!(out.memory.last().unwrap().1, "done");
    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_of_one_answer_run_concurrently_unless_sequential() {
    let registry = ServiceRegistry::start().await.unwrap();
    let both = || Script::new([calls(&[("meet", "{}"), ("meet", "{}")])]);
    let agent = looper(&registry, "parallel", both(), ToolLoop::new(), &[]).await;
    let run = agent.ask("meet".into(), ASK).await.unwrap().unwrap().run;
    assert!(run.steps[0].calls.iter().all(|r| r.outcome == ToolOutcome::Done(json!("met"))), "{run:?}");
    agent.stop().await;

    let agent = looper(&registry, "sequential", both(), ToolLoop::new().sequential(), &[]).await;
    let run = agent.ask("meet".into(), ASK).await.unwrap().unwrap().run;
    // The first waited alone until its own timeout (the second had not started).
    assert!(matches!(run.steps[0].calls[0].outcome, ToolOutcome::Failed(_)), "{run:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_stops_at_its_step_limit_and_at_most_so_many_calls_run_per_answer() {
    let registry = ServiceRegistry::start().await.unwrap();
    let forever = Script::new((0..10).map(|_| calls(&[("add", r#"{"a": 1, "b": 1}"#)])));
    let agent = looper(&registry, "stubborn", forever.clone(), ToolLoop::new().max_steps(3), &[]).await;
    let err = agent.ask("loop".into(), ASK).await.unwrap().unwrap_err();
    assert!(err.contains("still calling tools after 3 steps"), "{err}");
    assert!(err.contains("memory: 7"), "prompt + 3 × (calls + result) stay remembered: {err}");
    // The last step's calls are not run: their results could not reach the model.
    assert!(err.contains("kinds: done, done, skipped"), "{err}");
    assert_eq!(forever.requests().len(), 3);
    agent.stop().await;

    let many: Vec<(&str, &str)> =
        (0..MAX_CALLS_PER_STEP + 2).map(|_| ("add", r#"{"a": 1, "b": 2}"#)).collect();
    let agent = looper(&registry, "greedy", Script::new([calls(&many)]), ToolLoop::new(), &[]).await;
    let run = agent.ask("many".into(), ASK).await.unwrap().unwrap().run;
    let kinds: Vec<&str> = run.steps[0].calls.iter().map(|r| r.outcome.kind()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "done").count(), MAX_CALLS_PER_STEP);
    assert_eq!(kinds[MAX_CALLS_PER_STEP..], ["skipped", "skipped"]);
    agent.stop().await;
}

#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
struct City {
    city: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
struct Forecast {
    summary: String,
    degrees: i64,
}

/// Answers with a structured forecast, streaming the model's text to `seen`.
struct Forecaster {
    seen: Arc<Mutex<Vec<LoopEvent>>>,
}

impl Agent for Forecaster {
    type Input = String;
    type Output = (Forecast, ToolRun);

    async fn step(&mut self, ctx: &mut AgentContext, prompt: String) -> Result<Self::Output, AgentError> {
        let seen = self.seen.clone();
        let options = ToolLoop::new().on_event(move |e| seen.lock().unwrap().push(e.clone()));
        ctx.run_tools_for::<Forecast>(prompt, &options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_structured_final_answer_decodes_into_the_output_type_and_streams_to_the_observer() {
    let registry = ServiceRegistry::start().await.unwrap();
    let mut tools = Tools::new();
    tools
        .register("get_weather", "the current weather in a city", |c: City| async move {
            Ok::<_, foundation_core::BoxError>(format!("degrees: 21, sunny in {}", c.city))
        })
        .unwrap();
    let model = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let events = seen.clone();
    let agent = AgentSpec::new("forecaster", move || Forecaster { seen: events.clone() })
        .model(model)
        .tools(tools)
        .start(&registry)
        .await
        .unwrap();
    let (forecast, run) = agent.ask("What is the weather in Lisbon?".into(), ASK).await.unwrap();
    assert_eq!(run.steps.len(), 2, "{run:?}");
    let call = &run.steps[0].calls[0];
    assert_eq!((call.name.as_str(), call.arguments.as_str()), ("get_weather", r#"{"city":"Lisbon"}"#));
    assert_eq!(forecast.degrees, 21, "filled from the tool's answer: {forecast:?}");
    assert_eq!(run.answer.json::<Forecast>().unwrap(), forecast);

    // The observer heard the call, its result, and the answer's text piece by piece.
    let seen = seen.lock().unwrap().clone();
    assert!(
        matches!(&seen[0], LoopEvent::ToolCall { step: 0, call } if call.name == "get_weather"),
        "{seen:?}"
    );
    assert!(matches!(&seen[1], LoopEvent::ToolResult { step: 0, record } if record.outcome.is_done()));
    let text: String = seen
        .iter()
        .filter_map(|e| if let LoopEvent::Text(t) = e { Some(t.as_str()) } else { None })
        .collect();
    assert_eq!(text, run.answer.content);
    assert!(seen.iter().any(|e| matches!(e, LoopEvent::Text(_))), "streamed: {seen:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_model_calls_several_tools_at_once_for_a_question_of_several_parts() {
    let registry = ServiceRegistry::start().await.unwrap();
    let mut tools = Tools::new();
    tools
        .register("get_weather", "the current weather in a city", |c: City| async move {
            Ok::<_, foundation_core::BoxError>(format!("sunny in {}", c.city))
        })
        .unwrap()
        .register("add", "adds two integers a and b, a sum", |x: Add| async move {
            Ok::<_, foundation_core::BoxError>(x.a + x.b)
        })
        .unwrap();
    let model = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
    let agent = AgentSpec::new("both", || Looper { options: ToolLoop::new() })
        .model(model)
        .tools(tools)
        .start(&registry)
        .await
        .unwrap();
    let run = agent
        .ask("What is the weather in Lisbon? Also add a=2, b=3.".into(), ASK)
        .await
        .unwrap()
        .unwrap()
        .run;
    let names: Vec<&str> = run.steps[0].calls.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["get_weather", "add"], "{run:?}");
    assert!(run.steps[0].calls.iter().all(|r| r.outcome.is_done()), "{run:?}");
    assert_eq!(run.steps[0].calls[1].outcome, ToolOutcome::Done(json!(5)), "a and b read from the question");
    assert!(run.answer.content.contains("sunny in Lisbon"), "{}", run.answer.content);
    agent.stop().await;
}

/// Records each span's name and its parent's name.
#[derive(Clone, Default)]
struct SpanTree(Arc<Mutex<Vec<NamedSpan>>>);

/// A span's name and its parent's.
type NamedSpan = (String, Option<String>);

impl<S> tracing_subscriber::Layer<S> for SpanTree
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let span = ctx.span(id).unwrap();
        let parent = span.parent().map(|p| p.name().to_string());
        self.0.lock().unwrap().push((span.name().to_string(), parent));
    }
}

#[tokio::test]
async fn each_step_and_each_call_is_a_span_of_the_agents_step() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = SpanTree::default();
    // This test's runtime is one thread: the agent's actor runs on it, under this subscriber.
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let registry = ServiceRegistry::start().await.unwrap();
    let script = Script::new([calls(&[("add", r#"{"a": 1, "b": 2}"#), ("add", r#"{"a": 3, "b": 4}"#)])]);
    let agent = looper(&registry, "traced", script, ToolLoop::new(), &[]).await;
    let step = tracing::info_span!("request");
    let run = tracing::Instrument::instrument(agent.ask("add".into(), ASK), step).await.unwrap().unwrap().run;
    assert_eq!(run.steps.len(), 2);
    let seen = spans.0.lock().unwrap().clone();
    let named = |name: &str| seen.iter().filter(|(n, _)| n == name).collect::<Vec<_>>();
    let steps = named("agent.tool_step");
    assert_eq!(steps.len(), 2, "{seen:?}");
    let calls = named("agent.tool_call");
    assert_eq!(calls.len(), 2, "{seen:?}");
    assert!(calls.iter().all(|(_, parent)| parent.as_deref() == Some("agent.tool_step")), "{seen:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_tool_a_forced_choice_and_repeated_call_ids_do_not_break_the_run() {
    let registry = ServiceRegistry::start().await.unwrap();
    let mut first = calls(&[("explode", ""), ("add", r#"{"a": 1, "b": 2}"#), ("add", r#"{"a": 3, "b": 4}"#)]);
    first.tool_calls[1].id = "c0".into(); // the same id as the first call
    first.tool_calls[2].id = String::new(); // none at all
    let script = Script::new([first]);
    let options = ToolLoop::new()
        .request(ChatRequest::prompt("").tool_choice(foundation_actors::providers::ToolChoice::Required));
    let agent = looper(&registry, "survivor", script.clone(), options, &[]).await;
    let out = agent.ask("go".into(), ASK).await.unwrap().unwrap();
    let records = &out.run.steps[0].calls;
    let ToolOutcome::Failed(ToolError::Failed { source, .. }) = &records[0].outcome else {
        panic!("{records:?}")
    };
    assert!(source.to_string().contains("it panicked: the tool blew up"), "{source}");
    assert_eq!(records[1].outcome, ToolOutcome::Done(json!(3)));
    // Every call has an id of its own, and its result answers it.
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["c0", "call_0_1", "call_0_2"]);
    let requests = script.requests();
    let answered: Vec<&str> = requests[1].messages.iter().filter_map(|m| m.tool_call_id.as_deref()).collect();
    assert_eq!(answered, ids);
    // `required` held for the first step only: the model could answer after it.
    assert!(matches!(requests[0].tool_choice, Some(foundation_actors::providers::ToolChoice::Required)));
    assert!(matches!(requests[1].tool_choice, Some(foundation_actors::providers::ToolChoice::Auto)));
    // The agent did not crash: it answers the next input.
    assert!(agent.ask("again".into(), ASK).await.unwrap().is_ok());
    assert_eq!(agent.supervisor().crashes().await.unwrap().len(), 0);
    agent.stop().await;
}

/// Runs the loop with a short approval timeout.
struct Gated;

impl Agent for Gated {
    type Input = String;
    type Output = ToolRun;

    async fn step(&mut self, ctx: &mut AgentContext, prompt: String) -> Result<ToolRun, AgentError> {
        ctx.run_tools(prompt, &ToolLoop::new().approval_timeout(Duration::from_secs(60))).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_tools_that_need_approval_wait_for_a_decision_own_and_served() {
    use foundation_actors::agents::{ApprovalDesk, Decision};
    let registry = ServiceRegistry::start().await.unwrap();
    let mut own = Tools::new();
    own.register("add", "adds", |x: Add| async move { Ok::<_, foundation_core::BoxError>(x.a + x.b) })
        .unwrap()
        .needs_approval("add")
        .unwrap();
    assert!(own.clone().needs_approval("nope").is_err(), "only registered tools");
    let mut served = Tools::new();
    served
        .register("shout", "upper-cases", |s: Shout| async move {
            Ok::<_, foundation_core::BoxError>(s.text.to_uppercase())
        })
        .unwrap()
        .needs_approval("shout")
        .unwrap();
    let server = ToolServer::new(served).start(&registry).await.unwrap();
    let desk = ApprovalDesk::new();
    let script = Script::new([
        calls(&[("add", r#"{"a": 1, "b": 2}"#), ("shout", r#"{"text": "hi"}"#), ("add", r#"{"a": "x"}"#)]),
        calls(&[("add", r#"{"a": 5, "b": 5}"#)]),
    ]);
    let agent = AgentSpec::new("gated", || Gated)
        .model(script)
        .tools(own)
        .remote_tools(["shout"])
        .approvals(desk.clone())
        .start(&registry)
        .await
        .unwrap();
    let asked = tokio::spawn({
        let agent_ref = agent.agent_ref().await.unwrap();
        async move { agent_ref.ask::<String, ToolRun>("go".into(), ASK).await }
    });
    // Both valid calls wait at the desk at once (the malformed one never gets there).
    let pending = loop {
        let pending = desk.pending();
        if pending.len() == 2 {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let tools: Vec<&str> = pending.iter().map(|p| p.tool.as_str()).collect();
    assert_eq!(tools, ["add", "shout"], "the served tool's mark travelled with its spec");
    assert_eq!(pending[0].agent, "gated");
    desk.approve(pending[0].id, "alice").unwrap();
    desk.deny(pending[1].id, "bob", "no shouting").unwrap();
    assert!(desk.approve(pending[0].id, "alice").is_err(), "decided once");
    // The second step's call waits in turn (a timeout is tested on a node process:
    // examples/tests/approvals.rs).
    let third = loop {
        if let Some(p) = desk.pending().into_iter().next() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(third.arguments, r#"{"a":5,"b":5}"#, "the arguments as they will run");
    desk.deny(third.id, "carol", "enough").unwrap();
    let run = asked.await.unwrap().unwrap();
    let first = &run.steps[0].calls;
    assert_eq!(first[0].outcome, ToolOutcome::Done(json!(3)));
    assert_eq!(first[0].approval.as_ref().unwrap().decision, Decision::Approved { by: "alice".into() });
    assert!(
        matches!(&first[1].outcome, ToolOutcome::Denied(r) if r.contains("bob denied this call: no shouting"))
    );
    assert_eq!(first[2].outcome.kind(), "schema_violation");
    assert!(first[2].approval.is_none());
    let second = &run.steps[1].calls[0];
    assert!(
        matches!(&second.approval.as_ref().unwrap().decision, Decision::Denied { by, .. } if by == "carol")
    );
    assert_eq!(second.outcome.kind(), "denied");
    let recent: Vec<&str> = desk.recent().iter().map(|r| r.decision.kind()).collect();
    assert_eq!(recent, ["approved", "denied", "denied"]);
    assert!(desk.pending().is_empty());
    agent.stop().await;
    server.stop().await;
}

#[test]
fn a_tool_whose_arguments_are_not_an_object_is_refused_at_registration() {
    let mut tools = Tools::new();
    let err = tools
        .register("shout", "", |s: String| async move { Ok::<_, foundation_core::BoxError>(s) })
        .unwrap_err();
    assert!(
        matches!(&err, ToolError::Registration { reason, .. } if reason.contains("of type \"string\"")),
        "{err}"
    );
    tools.register("anything", "", |v: Value| async move { Ok::<_, foundation_core::BoxError>(v) }).unwrap();
    assert_eq!(tools.spec("anything").unwrap().parameters, json!({"type": "object"}));
}

// ---------------------------------------------------------------------------------------------
// The schema check against serde: for types whose schemas schemars writes, a value the check
// accepts decodes into the type (the check never lets through what the tool would refuse
// anyway, for what it covers), and every value the type writes passes the check.

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
struct Order {
    id: u32,
    qty: u8,
    note: Option<String>,
    tags: Vec<String>,
    kind: Kind,
    price: f64,
    pair: (i16, bool),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Retail,
    Wholesale { discount: u8 },
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-300i64..70_000).prop_map(Value::from),
        prop::sample::select(vec![u32::MAX as i64 + 1, i64::from(i16::MIN) - 1, 256, -1])
            .prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        prop::sample::select(vec!["retail", "wholesale", "x", ""]).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "id",
                    "qty",
                    "note",
                    "tags",
                    "kind",
                    "price",
                    "pair",
                    "discount",
                    "wholesale",
                    "other"
                ]),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn arb_order() -> impl Strategy<Value = Order> {
    (
        any::<u32>(),
        any::<u8>(),
        prop::option::of("[a-z ]{0,8}"),
        prop::collection::vec("[a-z]{0,4}", 0..3),
        prop_oneof![Just(Kind::Retail), any::<u8>().prop_map(|discount| Kind::Wholesale { discount })],
        -1e6f64..1e6,
        (any::<i16>(), any::<bool>()),
    )
        .prop_map(|(id, qty, note, tags, kind, price, pair)| Order {
            id,
            qty,
            note,
            tags,
            kind,
            price,
            pair,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn what_the_check_accepts_decodes(order in arb_order(), noise in arb_json(), field in 0usize..7) {
        let schema = schema_of::<Order>();
        // A valid order passes, and stays decodable.
        let valid = serde_json::to_value(&order).unwrap();
        prop_assert!(check_against_schema(&schema, &valid).is_ok(), "{valid}");
        // One field replaced by noise: if the check accepts it, serde does too.
        let mut mutated = valid.clone();
        let key = ["id", "qty", "note", "tags", "kind", "price", "pair"][field];
        mutated[key] = noise.clone();
        if check_against_schema(&schema, &mutated).is_ok() {
            prop_assert!(serde_json::from_value::<Order>(mutated.clone()).is_ok(), "accepted but undecodable: {mutated}");
        }
        // Noise as the whole value: the same.
        if check_against_schema(&schema, &noise).is_ok() {
            prop_assert!(serde_json::from_value::<Order>(noise.clone()).is_ok(), "accepted but undecodable: {noise}");
        }
    }
}

#[test]
fn the_response_format_of_a_type_is_a_schema_its_values_pass() {
    let ResponseFormat::JsonSchema { schema, .. } = ResponseFormat::of::<Forecast>("forecast") else {
        panic!()
    };
    let value = json!({"summary": "sunny", "degrees": 21});
    assert!(check_against_schema(&schema, &value).is_ok());
    assert!(check_against_schema(&schema, &json!({"summary": "sunny"})).is_err());
}
