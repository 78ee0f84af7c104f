//! The tool-calling loop: the model proposes tool calls, the runtime checks and runs them and
//! feeds the results back, until the model gives a final answer or the step limit is reached.
//!
//! [`AgentContext::run_tools`] (and [`run_tools_for`](AgentContext::run_tools_for), whose final
//! answer is structured) runs it with the agent's model, memory and tools:
//!
//! - **Offered tools**: the agent's own [`Tools`](super::Tools) and the
//!   [`remote_tools`](super::AgentSpec::remote_tools) its spec names, each with its JSON Schema
//!   (generated from the Rust argument type). A served tool is offered only while a live server
//!   offers it in the registry; its spec is asked of that server (within [`SPEC_TIMEOUT`]) and
//!   kept for [`SERVED_SPEC_TTL`] (a failure for [`SPEC_RETRY`]); a named tool not offered is
//!   listed in [`ToolRun::unavailable`].
//! - **Each step** is one model call, then the tool calls it asked for: at most
//!   [`MAX_CALLS_PER_STEP`] (further calls are answered [`ToolOutcome::Skipped`]), run
//!   concurrently unless the loop is [`sequential`](ToolLoop::sequential). A call is checked
//!   before it runs: a tool not offered ([`ToolOutcome::UnknownTool`]), arguments that are not
//!   JSON ([`ToolOutcome::InvalidJson`]) or do not satisfy the tool's schema
//!   ([`ToolOutcome::SchemaViolation`]) go back to the model as a tool error, as does a tool
//!   that fails, panics or outlives the tool timeout, or whose server does not answer
//!   ([`ToolOutcome::Failed`]); none of them ends the run or stops the agent. A result larger
//!   than [`MAX_TOOL_RESULT_BYTES`] is an error too (the model's context is not flooded). Calls
//!   without an id, or repeating one, get one of their own.
//! - **Where a tool runs**: the agent's own tool of that name if it has one, else one served by
//!   a [`ToolServer`](super::ToolServer) on any node (within the spec's tool timeout).
//! - **The end**: an answer without tool calls ends the run ([`ToolRun::answer`]); a model
//!   still calling tools at its [`max_steps`](ToolLoop::max_steps)th call is
//!   [`AgentError::StepLimit`] (those last calls are not run; the error carries the run). A
//!   model error ends the run with that error.
//! - **Recorded and traced**: every exchange (the prompt, the assistant's calls, each tool
//!   result, the answer) is remembered in the agent's memory as it happens, so a failed run
//!   leaves what it did; the [`ToolRun`] lists each step's usage, time and calls with their
//!   outcomes; each step is a span `agent.tool_step` (a child of the agent's step span) and
//!   each call a span `agent.tool_call` (a child of its step; a call to another node carries
//!   the trace context); metrics `foundation_agent_tool_steps_total` and `foundation_agent_tool_calls_checked_total`
//!   (by outcome).
//! - **Streaming**: with an [`on_event`](ToolLoop::on_event) observer the model's answers are
//!   streamed and each text piece, tool call and tool result is reported as it happens.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use super::approval::{ApprovalRecord, DEFAULT_APPROVAL_TIMEOUT, Decision, PendingApproval};
use super::context::AgentContext;
use super::error::AgentError;
use super::handle::catch_panic;
use super::remote_tools;
use super::tools::ToolError;
use crate::providers::{
    ChatMessage, ChatRequest, Completion, ResponseFormat, SchemaViolation, StreamEvent, ToolCall, ToolChoice,
    ToolSpec, Usage, check_against_schema,
};

/// Model calls a loop makes at most by default (8).
pub const DEFAULT_MAX_TOOL_STEPS: usize = 8;
/// Tool calls of one model answer that are run (16); further calls are answered
/// [`ToolOutcome::Skipped`].
pub const MAX_CALLS_PER_STEP: usize = 16;
/// The largest tool result (as JSON text) given back to the model (64 KiB).
pub const MAX_TOOL_RESULT_BYTES: usize = 64 * 1024;
/// How long the spec of a tool served elsewhere is used before it is asked for again (30 s).
pub const SERVED_SPEC_TTL: Duration = Duration::from_secs(30);
/// How long a failure to get a served tool's spec stands before it is asked for again (5 s).
pub const SPEC_RETRY: Duration = Duration::from_secs(5);
/// The longest wait for a tool server's specs (5 s, or the tool timeout if shorter).
pub const SPEC_TIMEOUT: Duration = Duration::from_secs(5);

type Observer = Arc<dyn Fn(&LoopEvent) + Send + Sync>;

/// How a tool loop runs: its step limit, whether calls run concurrently, the parameters of its
/// model requests, and an optional observer.
///
/// ```
/// use foundation_actors::agents::ToolLoop;
/// use foundation_actors::providers::ChatRequest;
///
/// let options = ToolLoop::new()
///     .max_steps(4)
///     .request(ChatRequest::prompt("").max_tokens(512).tenant("acme"))
///     .on_event(|event| println!("{event:?}"));
/// assert_eq!(options.steps(), 4);
/// ```
#[derive(Clone)]
pub struct ToolLoop {
    max_steps: usize,
    parallel: bool,
    template: ChatRequest,
    observer: Option<Observer>,
    approval_timeout: Duration,
}

impl std::fmt::Debug for ToolLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolLoop")
            .field("max_steps", &self.max_steps)
            .field("parallel", &self.parallel)
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ToolLoop {
    fn default() -> Self {
        ToolLoop {
            max_steps: DEFAULT_MAX_TOOL_STEPS,
            parallel: true,
            template: ChatRequest::new(Vec::new()),
            observer: None,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
        }
    }
}

impl ToolLoop {
    /// [`DEFAULT_MAX_TOOL_STEPS`] steps, calls of a step run concurrently, default request
    /// parameters, no observer.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a call of a tool that needs approval waits for a decision (default
    /// [`DEFAULT_APPROVAL_TIMEOUT`]); past it, the call does not run.
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.approval_timeout = timeout;
        self
    }

    /// At most this many model calls (at least 1).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// The step limit.
    pub fn steps(&self) -> usize {
        self.max_steps
    }

    /// Runs the calls of a step one after the other, in the model's order.
    pub fn sequential(mut self) -> Self {
        self.parallel = false;
        self
    }

    /// The parameters of every model request (max tokens, temperature, tenant, cache policy,
    /// stop sequences, seed, tool choice); its messages, tools and response format are the
    /// loop's own.
    pub fn request(mut self, template: ChatRequest) -> Self {
        self.template = template;
        self
    }

    /// Reports each event as it happens (text pieces as the model streams them, tool calls,
    /// tool results). With an observer the model's answers are streamed.
    pub fn on_event(mut self, observer: impl Fn(&LoopEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }
}

/// What a loop's observer hears, in order for each step: the model's text pieces, then each
/// call as it starts and each result as it comes (results of concurrent calls in the order
/// they finish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LoopEvent {
    /// More of the model's text.
    Text(String),
    /// A tool call about to be checked and run.
    ToolCall {
        /// The step (0 for the first model call).
        step: usize,
        /// The call.
        call: ToolCall,
    },
    /// A call of a tool that needs approval waits at the desk (its id is what `approve` and
    /// `deny` take).
    ApprovalRequested(PendingApproval),
    /// A call's record, once it is done.
    ToolResult {
        /// The step.
        step: usize,
        /// What happened.
        record: Box<ToolCallRecord>,
    },
}

/// What a finished loop did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRun {
    /// The final answer (no tool calls).
    pub answer: Completion,
    /// Each step: its model call and the tool calls the model asked for.
    pub steps: Vec<ToolStep>,
    /// Tokens used by all the run's model calls.
    pub usage: Usage,
    /// Tools named by the spec's `remote_tools` that no live server offered, so were not
    /// offered to the model.
    pub unavailable: Vec<String>,
}

impl ToolRun {
    /// Every tool call of the run, in order.
    pub fn calls(&self) -> impl Iterator<Item = &ToolCallRecord> {
        self.steps.iter().flat_map(|s| s.calls.iter())
    }
}

/// One step: a model call and the tool calls it asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolStep {
    /// The model that answered.
    pub model: String,
    /// Tokens of this model call.
    pub usage: Usage,
    /// How long the model call took.
    pub model_time: Duration,
    /// The calls, in the model's order.
    pub calls: Vec<ToolCallRecord>,
}

/// One tool call and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The call's id (what its result answers).
    pub id: String,
    /// The tool the model named.
    pub name: String,
    /// The arguments as the model wrote them.
    pub arguments: String,
    /// Where it ran (or would have).
    pub place: ToolPlace,
    /// What came of it.
    pub outcome: ToolOutcome,
    /// How long it took (checks included).
    pub took: Duration,
    /// The decision it waited for, if its tool needs approval and it got that far.
    #[serde(default)]
    pub approval: Option<ApprovalRecord>,
}

/// Where a tool of the loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolPlace {
    /// One of the agent's own tools, in its process.
    Own,
    /// A tool served by a tool server (in this process or on another node).
    Served,
    /// Nowhere: the model named a tool it was not offered.
    Nowhere,
}

/// What came of a tool call. Everything but [`Done`](ToolOutcome::Done) goes back to the
/// model as `{"error": "…"}` (see [`to_model`](ToolOutcome::to_model)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolOutcome {
    /// The tool's result.
    Done(Value),
    /// The model named a tool it was not offered.
    UnknownTool {
        /// The tools it was offered.
        offered: Vec<String>,
    },
    /// The arguments are not JSON (what the parser said).
    InvalidJson(String),
    /// The arguments do not satisfy the tool's schema.
    SchemaViolation(SchemaViolation),
    /// The tool ran and failed, did not answer, or its result was too large.
    Failed(ToolError),
    /// Not run, and why: beyond [`MAX_CALLS_PER_STEP`] calls in one answer, or asked for at
    /// the run's last step (its result could not reach the model).
    Skipped(String),
    /// Its tool needs approval and the call was denied, or no decision came in time: not run.
    Denied(String),
}

impl ToolOutcome {
    /// Whether the tool ran and answered.
    pub fn is_done(&self) -> bool {
        matches!(self, ToolOutcome::Done(_))
    }

    /// A short name of the outcome (`done`, `unknown_tool`, `invalid_json`,
    /// `schema_violation`, `failed`, `skipped`): the metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolOutcome::Done(_) => "done",
            ToolOutcome::UnknownTool { .. } => "unknown_tool",
            ToolOutcome::InvalidJson(_) => "invalid_json",
            ToolOutcome::SchemaViolation(_) => "schema_violation",
            ToolOutcome::Failed(_) => "failed",
            ToolOutcome::Skipped(_) => "skipped",
            ToolOutcome::Denied(_) => "denied",
        }
    }

    /// The tool message's text the model reads: the result as JSON, or `{"error": "…"}`.
    pub fn to_model(&self, tool: &str) -> String {
        let error = match self {
            ToolOutcome::Done(value) => return value.to_string(),
            ToolOutcome::UnknownTool { offered } => {
                format!("there is no tool `{tool}`; the tools are: {}", offered.join(", "))
            }
            ToolOutcome::InvalidJson(e) => format!("the arguments of `{tool}` are not JSON: {e}"),
            ToolOutcome::SchemaViolation(v) => {
                format!("the arguments of `{tool}` do not satisfy its parameters' schema: {v}")
            }
            ToolOutcome::Failed(e) => e.to_string(),
            ToolOutcome::Skipped(reason) => format!("not run: {reason}"),
            ToolOutcome::Denied(reason) => format!("not run: {reason}"),
        };
        serde_json::json!({ "error": error }).to_string()
    }
}

impl AgentContext {
    /// Runs the tool-calling loop on `prompt` (see the [module docs](self)): sends the memory's
    /// conversation and the prompt with the offered tools, runs the tools the model calls and
    /// gives it their results, until it answers without calling tools.
    pub async fn run_tools(
        &mut self,
        prompt: impl Into<String>,
        options: &ToolLoop,
    ) -> Result<ToolRun, AgentError> {
        self.tool_loop(prompt.into(), options, None).await
    }

    /// [`run_tools`](Self::run_tools) with a structured final answer: every request asks for
    /// JSON satisfying `T`'s schema (a strict `response_format`), and the final answer is
    /// decoded into `T` ([`AgentError::BadOutput`] if it does not decode).
    pub async fn run_tools_for<T: DeserializeOwned + schemars::JsonSchema>(
        &mut self,
        prompt: impl Into<String>,
        options: &ToolLoop,
    ) -> Result<(T, ToolRun), AgentError> {
        let name = T::schema_name();
        let name: String =
            name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')).take(64).collect();
        let mut name = if name.is_empty() { "answer".to_string() } else { name };
        // Anthropic answers in a format as a forced tool of its name: never a tool's name.
        while self.shared.tools.contains(&name) || self.shared.remote_tools.contains(&name) {
            name = format!("{}_answer", name.chars().take(56).collect::<String>());
        }
        let format = ResponseFormat::of::<T>(name);
        let run = self.tool_loop(prompt.into(), options, Some(format)).await?;
        let value = run.answer.json::<T>().map_err(|e| AgentError::BadOutput {
            agent: self.name().to_string(),
            reason: format!("the final answer does not decode: {e}"),
        })?;
        Ok((value, run))
    }

    async fn tool_loop(
        &mut self,
        prompt: String,
        options: &ToolLoop,
        format: Option<ResponseFormat>,
    ) -> Result<ToolRun, AgentError> {
        let agent = self.shared.name.clone();
        let model = self.shared.model.clone().ok_or_else(|| AgentError::NoModel { agent: agent.clone() })?;
        let (offered, approvals, unavailable) = self.offered_tools().await;
        let offer = Offer {
            specs: offered.iter().map(|s| (s.name.as_str(), s)).collect(),
            names: offered.iter().map(|s| s.name.clone()).collect(),
            approvals,
        };

        let prompt = ChatMessage::user(prompt);
        let mut conversation = self.memory.messages();
        conversation.push(prompt.clone());
        self.memory.remember(prompt);
        let mut steps = Vec::new();
        let mut usage = Usage::default();
        // `max_steps` is at least 1: the loop ends at an answer or at the last step.
        let mut step = 0;
        loop {
            let last = step + 1 >= options.max_steps;
            let span = tracing::info_span!("agent.tool_step", agent = %agent, step);
            let mut request = options.template.clone();
            request.messages = conversation.clone();
            request.tools = offered.clone();
            request.response_format = format.clone();
            if step > 0 && matches!(request.tool_choice, Some(ToolChoice::Required | ToolChoice::Tool(_))) {
                // A choice that forces a call holds for the first step only: after it the model
                // must be free to answer.
                request.tool_choice = Some(ToolChoice::Auto);
            }
            let started = Instant::now();
            let mut completion =
                ask(&*model, &request, options.observer.as_ref()).instrument(span.clone()).await?;
            let model_time = started.elapsed();
            usage += completion.usage;
            metrics::counter!("foundation_agent_tool_steps_total", "agent" => agent.clone()).increment(1);
            unique_call_ids(&mut completion.tool_calls, step);
            let assistant = completion.message();
            conversation.push(assistant.clone());
            self.memory.remember(assistant);
            if completion.tool_calls.is_empty() {
                steps.push(ToolStep {
                    model: completion.model.clone(),
                    usage: completion.usage,
                    model_time,
                    calls: Vec::new(),
                });
                return Ok(ToolRun { answer: completion, steps, usage, unavailable });
            }
            let calls = completion.tool_calls.iter().enumerate().map(|(i, call)| {
                let span = tracing::info_span!(parent: &span, "agent.tool_call", tool = %call.name, call_id = %call.id);
                let run = if last {
                    Err(format!("the run reached its limit of {} steps", options.max_steps))
                } else if i >= MAX_CALLS_PER_STEP {
                    Err(format!("at most {MAX_CALLS_PER_STEP} tool calls are run per answer"))
                } else {
                    Ok(())
                };
                self.tool_call(step, call, run, &offer, options).instrument(span)
            });
            let records: Vec<ToolCallRecord> = if options.parallel {
                futures::future::join_all(calls).await
            } else {
                let mut records = Vec::new();
                for call in calls {
                    records.push(call.await);
                }
                records
            };
            for record in &records {
                metrics::counter!(
                    "foundation_agent_tool_calls_checked_total",
                    "agent" => agent.clone(),
                    "outcome" => record.outcome.kind()
                )
                .increment(1);
                // Every call gets its result (a skipped one too): APIs refuse a call unanswered.
                let message =
                    ChatMessage::tool_result(record.id.clone(), record.outcome.to_model(&record.name));
                conversation.push(message.clone());
                self.memory.remember(message);
            }
            steps.push(ToolStep {
                model: completion.model.clone(),
                usage: completion.usage,
                model_time,
                calls: records,
            });
            if last {
                let run = ToolRun { answer: completion, steps, usage, unavailable };
                return Err(AgentError::StepLimit { agent, steps: options.max_steps, run: Box::new(run) });
            }
            step += 1;
        }
    }

    /// The tools offered to the model: its own, then the served ones its spec names (specs
    /// asked for when not known or older than [`SERVED_SPEC_TTL`]); and the named ones no
    /// server offers.
    async fn offered_tools(&mut self) -> (Vec<ToolSpec>, HashSet<String>, Vec<String>) {
        let own = &self.shared.tools;
        let mut offered = own.specs();
        let mut approvals: HashSet<String> =
            offered.iter().filter(|s| own.requires_approval(&s.name)).map(|s| s.name.clone()).collect();
        let wanted: Vec<String> =
            self.shared.remote_tools.iter().filter(|n| !own.contains(n)).cloned().collect();
        // Only tools a live server offers now: the registry drops a server's registration when
        // its actor or its node goes (a cached spec does not keep a dead server's tool offered).
        let live: Vec<String> =
            wanted.iter().filter(|n| remote_tools::is_served(&self.registry, n)).cloned().collect();
        let stale: Vec<String> = live
            .iter()
            .filter(|n| {
                self.served_specs.get(*n).is_none_or(|(spec, at)| {
                    at.elapsed() > if spec.is_some() { SERVED_SPEC_TTL } else { SPEC_RETRY }
                })
            })
            .cloned()
            .collect();
        if !stale.is_empty() {
            let timeout = self.shared.tool_timeout.min(SPEC_TIMEOUT);
            let fresh = remote_tools::served_specs(&self.registry, &stale, timeout).await;
            let now = Instant::now();
            for name in stale {
                let spec = fresh.iter().find(|s| s.spec.name == name).cloned();
                // A failure is remembered too (for SPEC_RETRY): a dead or old server does not
                // cost every run the timeout.
                self.served_specs.insert(name, (spec, now));
            }
        }
        let mut unavailable = Vec::new();
        for name in wanted {
            match self.served_specs.get(&name) {
                Some((Some(served), _)) if live.contains(&name) => {
                    if served.needs_approval {
                        approvals.insert(name.clone());
                    }
                    offered.push(served.spec.clone());
                }
                _ => unavailable.push(name),
            }
        }
        (offered, approvals, unavailable)
    }

    /// Checks and runs one call (unless `run` is false: beyond the per-step limit).
    async fn tool_call(
        &self,
        step: usize,
        call: &ToolCall,
        run: Result<(), String>,
        offer: &Offer<'_>,
        options: &ToolLoop,
    ) -> ToolCallRecord {
        if let Some(observer) = &options.observer {
            observer(&LoopEvent::ToolCall { step, call: call.clone() });
        }
        let started = Instant::now();
        let own = self.shared.tools.contains(&call.name);
        let place = match offer.specs.contains_key(call.name.as_str()) {
            false => ToolPlace::Nowhere,
            true if own => ToolPlace::Own,
            true => ToolPlace::Served,
        };
        let gate = offer.approvals.contains(&call.name).then_some(options);
        let (outcome, approval) = match (run, offer.specs.get(call.name.as_str())) {
            (Err(reason), _) => (ToolOutcome::Skipped(reason), None),
            (Ok(()), None) => (ToolOutcome::UnknownTool { offered: offer.names.clone() }, None),
            (Ok(()), Some(spec)) => self.checked_call(call, spec, own, gate).await,
        };
        let record = ToolCallRecord {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            place,
            outcome,
            took: started.elapsed(),
            approval,
        };
        if let Some(observer) = &options.observer {
            observer(&LoopEvent::ToolResult { step, record: Box::new(record.clone()) });
        }
        record
    }

    /// Checks a call, waits for its approval if `gate` (the loop's options) is given, runs it.
    async fn checked_call(
        &self,
        call: &ToolCall,
        spec: &ToolSpec,
        own: bool,
        gate: Option<&ToolLoop>,
    ) -> (ToolOutcome, Option<ApprovalRecord>) {
        // Models write `""` for a call without arguments now and then.
        let text = if call.arguments.trim().is_empty() { "{}" } else { call.arguments.as_str() };
        let args: Value = match serde_json::from_str(text) {
            Ok(args) => args,
            Err(e) => return (ToolOutcome::InvalidJson(e.to_string()), None),
        };
        if let Err(violation) = check_against_schema(&spec.parameters, &args) {
            return (ToolOutcome::SchemaViolation(violation), None);
        }
        let mut approval = None;
        if let Some(options) = gate {
            let request = PendingApproval {
                id: 0,
                agent: self.shared.name.clone(),
                tool: call.name.clone(),
                // What will run, exactly (a repeated key in the model's text keeps its last
                // value: the person sees that one).
                arguments: args.to_string(),
                call_id: call.id.clone(),
                requested_at_ms: 0,
            };
            let observer = options.observer.clone();
            let record = self
                .shared
                .approvals
                .ask(request, options.approval_timeout, |filed| {
                    if let Some(observer) = &observer {
                        observer(&LoopEvent::ApprovalRequested(filed.clone()));
                    }
                })
                .await;
            let refused = match &record.decision {
                Decision::Approved { .. } => None,
                Decision::Denied { by, reason } => Some(format!("{by} denied this call: {reason}")),
                Decision::TimedOut => {
                    Some(format!("nobody approved this call within {:?}", options.approval_timeout))
                }
            };
            if let Some(reason) = refused {
                return (ToolOutcome::Denied(reason), Some(record));
            }
            approval = Some(record);
        }
        (self.run_checked(call, args, own).await, approval)
    }

    /// Runs a checked (and, if need be, approved) call.
    async fn run_checked(&self, call: &ToolCall, args: Value, own: bool) -> ToolOutcome {
        let result = if own {
            // As a tool server runs its tools: a panic or a tool past the timeout is the tool's
            // failure, not the agent's.
            let timeout = self.shared.tool_timeout;
            match tokio::time::timeout(timeout, catch_panic(self.shared.tools.call(&call.name, args))).await {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => Err(ToolError::Failed {
                    tool: call.name.clone(),
                    source: format!("it panicked: {panic}").into(),
                }),
                Err(_) => Err(ToolError::Failed {
                    tool: call.name.clone(),
                    source: format!("it ran past the tool timeout ({timeout:?})").into(),
                }),
            }
        } else {
            remote_tools::call_served(
                &self.registry,
                &call.name,
                args,
                self.shared.tool_timeout,
                self.shared.max_message_bytes,
                &self.shared.tools,
            )
            .await
            .map_err(|e| match e {
                AgentError::Tool(e) => e,
                other => ToolError::Unreachable { tool: call.name.clone(), reason: other.to_string() },
            })
        };
        match result {
            Ok(value) => {
                let size = value.to_string().len();
                if size > MAX_TOOL_RESULT_BYTES {
                    ToolOutcome::Failed(ToolError::BadResult {
                        tool: call.name.clone(),
                        // It ran: said so, so that the model does not run it again for nothing.
                        source: format!(
                            "it ran, but its result is {size} bytes, over the {MAX_TOOL_RESULT_BYTES}-byte limit of what is given back"
                        )
                        .into(),
                    })
                } else {
                    ToolOutcome::Done(value)
                }
            }
            Err(e) => ToolOutcome::Failed(e),
        }
    }
}

/// What a run offers the model: the specs by name, their names, and which need approval.
struct Offer<'a> {
    specs: HashMap<&'a str, &'a ToolSpec>,
    names: Vec<String>,
    approvals: HashSet<String>,
}

/// Gives calls without an id, or with the id of an earlier call of the answer, one of their
/// own (`call_<step>_<index>`): each result must say which call it answers.
fn unique_call_ids(calls: &mut [ToolCall], step: usize) {
    let mut seen = std::collections::HashSet::new();
    for (i, call) in calls.iter_mut().enumerate() {
        if call.id.is_empty() || !seen.insert(call.id.clone()) {
            let mut id = format!("call_{step}_{i}");
            while !seen.insert(id.clone()) {
                id.push('_');
            }
            call.id = id;
        }
    }
}

/// One model call: whole, or streamed to the observer.
async fn ask(
    model: &dyn crate::providers::LanguageModel,
    request: &ChatRequest,
    observer: Option<&Observer>,
) -> Result<Completion, AgentError> {
    let Some(observer) = observer else { return Ok(model.complete(request).await?) };
    let mut stream = model.stream(request).await?;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Text(text) => observer(&LoopEvent::Text(text)),
            StreamEvent::ToolCall(_) => {}
            StreamEvent::Done(completion) => return Ok(completion),
        }
    }
    // A stream always ends with `Done` or an error (CompletionStream's contract).
    Err(AgentError::Model(crate::providers::LmError::Malformed {
        provider: stream.provider().to_string(),
        source: "the stream ended without its answer".into(),
    }))
}
