//! The [`Agent`] trait, [`AgentSpec`] (how to run one as a supervised actor) and
//! [`AgentHandle`] (a running agent under its own supervisor).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::approval::ApprovalDesk;
use super::context::AgentContext;
use super::conversation::{ConversationStore, check_conversation_id};
use super::error::AgentError;
use super::handle::{
    AGENT_NAME_KEY, AGENT_SERVICE, AgentMsg, AgentRef, LocalAsk, LocalOutput, Refusal, RemoteAgentMsg,
    WireReply, catch_panic, from_json, to_json,
};
use super::memory::Memory;
use super::remote_tools::DEFAULT_TOOL_TIMEOUT;
use super::tools::Tools;
use crate::providers::LanguageModel;
use crate::registry::{InstanceId, ServiceRegistry};
use crate::supervision::{ChildSpec, Strategy, Supervisor, SupervisorExit, SupervisorHandle, SupervisorSpec};
use crate::wire::Wire;
use foundation_core::Cause;
use foundation_core::config::DEFAULT_MAX_FRAME_BYTES;

/// Messages an agent's memory keeps by default (besides its system prompt).
pub const DEFAULT_MEMORY_WINDOW: usize = 32;

/// An agent: your state (the implementing struct) and a step that turns one input into one
/// output, with a model, memory, tools and other agents at hand through the [`AgentContext`].
///
/// Inputs and outputs are serde types, so that agents on other nodes can ask too. Steps of one
/// agent run one at a time, in the order the inputs arrived; write `async fn step` in the impl
/// (its future must be `Send`: hold no `!Send` value, such as a `std` mutex guard, across an
/// `.await`).
///
/// A panic in `step` crashes the agent's actor: the asker gets [`AgentError::Crashed`] and the
/// supervisor restarts the agent from its factory (see [`AgentSpec`]). An error returned by
/// `step` does not: the asker gets [`AgentError::Failed`] and the agent takes the next input.
pub trait Agent: Send + 'static {
    /// What the agent is asked.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What it answers.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Handles one input.
    fn step(
        &mut self,
        ctx: &mut AgentContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, AgentError>> + Send;
}

/// What every start of an agent shares: its configuration.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) model: Option<Arc<dyn LanguageModel>>,
    pub(crate) tools: Tools,
    pub(crate) memory: Memory,
    pub(crate) capabilities: Vec<String>,
    pub(crate) max_message_bytes: usize,
    pub(crate) tool_timeout: Duration,
    pub(crate) remote_tools: Vec<String>,
    pub(crate) approvals: ApprovalDesk,
    /// Where its conversation is kept, and under which id.
    pub(crate) durable: Option<(Arc<dyn ConversationStore>, String)>,
}

/// How to run an agent: its name, a factory for its state, its model, tools, memory and
/// capabilities.
///
/// Each start of the agent — the first, and every restart by its supervisor — calls the
/// factory for a fresh state and starts from a fresh copy of the configured [`Memory`] (its
/// system prompt kept, the conversation empty): a restart after a crash does not resume from a
/// state the crash may have left inconsistent. State worth keeping across crashes belongs
/// outside the agent (an event store, an aggregate, replicated state) and is read back by the
/// factory or the first step. The conversation is such state when the spec is
/// [`durable`](AgentSpec::durable): each start resumes it as of the last step that answered.
///
/// On each start the agent registers in the [`ServiceRegistry`] under the service
/// [`AGENT_SERVICE`], with its capabilities and its name (metadata [`AGENT_NAME_KEY`]), so
/// that agents on every node find it by capability; the registration goes when the actor stops.
/// Several instances may share a name (on several nodes, say); asks by capability or name take
/// them in turn.
pub struct AgentSpec<A: Agent> {
    name: String,
    factory: Arc<dyn Fn() -> A + Send + Sync>,
    model: Option<Arc<dyn LanguageModel>>,
    tools: Tools,
    memory: Option<Memory>,
    capabilities: Vec<String>,
    max_message_bytes: usize,
    tool_timeout: Duration,
    remote_tools: Vec<String>,
    approvals: ApprovalDesk,
    durable: Option<(Arc<dyn ConversationStore>, String)>,
}

impl<A: Agent> Clone for AgentSpec<A> {
    fn clone(&self) -> Self {
        AgentSpec {
            name: self.name.clone(),
            factory: self.factory.clone(),
            model: self.model.clone(),
            tools: self.tools.clone(),
            memory: self.memory.clone(),
            capabilities: self.capabilities.clone(),
            max_message_bytes: self.max_message_bytes,
            tool_timeout: self.tool_timeout,
            remote_tools: self.remote_tools.clone(),
            approvals: self.approvals.clone(),
            durable: self.durable.clone(),
        }
    }
}

impl<A: Agent> std::fmt::Debug for AgentSpec<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("name", &self.name)
            .field("model", &self.model.as_ref().map(|m| m.model().to_string()))
            .field("tools", &self.tools)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl<A: Agent> AgentSpec<A> {
    /// An agent called `name` whose state `factory` builds (on every start). No model, no tools,
    /// no capabilities, a memory of [`DEFAULT_MEMORY_WINDOW`] messages, the default frame limit
    /// and tool timeout, until set.
    pub fn new(name: impl Into<String>, factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        AgentSpec {
            name: name.into(),
            factory: Arc::new(factory),
            model: None,
            tools: Tools::new(),
            memory: None,
            capabilities: Vec::new(),
            max_message_bytes: DEFAULT_MAX_FRAME_BYTES,
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
            remote_tools: Vec::new(),
            approvals: ApprovalDesk::global(),
            durable: None,
        }
    }

    /// The language model its context calls (a [`SimulatedModel`](crate::providers::SimulatedModel),
    /// an [`LlmRouter`](crate::providers::LlmRouter), any [`LanguageModel`]).
    pub fn model(self, model: impl LanguageModel) -> Self {
        self.shared_model(Arc::new(model))
    }

    /// The language model, already shared.
    pub fn shared_model(mut self, model: Arc<dyn LanguageModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// Its local tools (tools served by other nodes are reached by name as well, see
    /// [`AgentContext::call_tool`]).
    pub fn tools(mut self, tools: Tools) -> Self {
        self.tools = tools;
        self
    }

    /// Adds tools served by [`ToolServer`](super::ToolServer)s on any node that its tool loop
    /// ([`AgentContext::run_tools`]) offers the model besides its own tools (an own tool of the
    /// same name wins). A named tool no live server offers when a loop starts is left out of
    /// that loop (and listed in its [`ToolRun::unavailable`](super::ToolRun::unavailable)).
    pub fn remote_tools<N: Into<String>>(mut self, names: impl IntoIterator<Item = N>) -> Self {
        self.remote_tools.extend(names.into_iter().map(Into::into));
        self
    }

    /// The desk its tool loops file approvals at (default [`ApprovalDesk::global`], the
    /// process's, which `foundation node`'s `approvals`, `approve` and `deny` act on).
    pub fn approvals(mut self, desk: ApprovalDesk) -> Self {
        self.approvals = desk;
        self
    }

    /// Keeps its conversation in `store` under the id `conversation` (see
    /// [`conversation`](super::conversation)): every start loads it before the first step, every
    /// step's new messages are saved before its answer is given. Without it, every start begins
    /// with the spec's memory (the default).
    pub fn durable(mut self, store: Arc<dyn ConversationStore>, conversation: impl Into<String>) -> Self {
        self.durable = Some((store, conversation.into()));
        self
    }

    /// Its memory as every start begins with it (typically empty, with a system prompt).
    pub fn memory(mut self, memory: Memory) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Adds capabilities it announces in the registry (what others find it by).
    pub fn capabilities<C: Into<String>>(mut self, capabilities: impl IntoIterator<Item = C>) -> Self {
        self.capabilities.extend(capabilities.into_iter().map(Into::into));
        self
    }

    /// The largest encoded message it sends to other nodes: its answers, and the inputs and tool
    /// calls of its own asks (default [`DEFAULT_MAX_FRAME_BYTES`], the cluster's default frame
    /// limit; set it to
    /// `cluster.max_frame_bytes`). An answer over it reaches the asker as
    /// [`AgentError::Failed`] saying so.
    pub fn max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// How long a call to a tool served by another actor may take (default
    /// [`DEFAULT_TOOL_TIMEOUT`]).
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout;
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn shared(&self) -> Result<Arc<Shared>, AgentError> {
        if self.name.is_empty() {
            return Err(AgentError::Start {
                agent: String::new(),
                source: "an agent's name is empty".into(),
            });
        }
        let memory = match &self.memory {
            Some(memory) => memory.clone(),
            // The window is not 0: cannot fail.
            None => Memory::new(DEFAULT_MEMORY_WINDOW)
                .map_err(|e| AgentError::Start { agent: self.name.clone(), source: Cause::new(e) })?,
        };
        if let Some((_, id)) = &self.durable {
            check_conversation_id(id)
                .map_err(|e| AgentError::Start { agent: self.name.clone(), source: Cause::new(e) })?;
        }
        let mut capabilities = self.capabilities.clone();
        capabilities.sort();
        capabilities.dedup();
        let mut remote_tools = self.remote_tools.clone();
        remote_tools.sort();
        remote_tools.dedup();
        Ok(Arc::new(Shared {
            name: self.name.clone(),
            model: self.model.clone(),
            tools: self.tools.clone(),
            memory,
            capabilities,
            max_message_bytes: self.max_message_bytes,
            tool_timeout: self.tool_timeout,
            remote_tools,
            approvals: self.approvals.clone(),
            durable: self.durable.clone(),
        }))
    }

    /// The agent as a child of a [`Supervisor`] (id: its name; permanent, so restarted whenever
    /// it stops unless changed with [`ChildSpec::restart`]). It registers in `registry` on every
    /// start. An empty name makes the child, so its supervisor, fail to start.
    pub fn child_spec(&self, registry: &ServiceRegistry) -> ChildSpec {
        let shared = self.shared();
        let factory = self.factory.clone();
        let registry = registry.clone();
        ChildSpec::new(self.name.clone(), move || {
            let actor = AgentActor::<A> { registry: registry.clone(), _agent: PhantomData };
            (actor, (shared.clone(), factory()))
        })
    }

    /// Starts the agent under a supervisor of its own (one-for-one, default intensity), named
    /// `agent:<name>`.
    pub async fn start(self, registry: &ServiceRegistry) -> Result<AgentHandle<A>, AgentError> {
        let shared = self.shared()?;
        let spec = SupervisorSpec::new(Strategy::OneForOne).child(self.child_spec(registry));
        let supervisor = Supervisor::start(format!("agent:{}", self.name), spec)
            .await
            .map_err(|e| AgentError::Start { agent: self.name.clone(), source: Cause::new(e) })?;
        Ok(AgentHandle { shared, supervisor, _agent: PhantomData })
    }
}

/// An agent running under its own supervisor (from [`AgentSpec::start`]).
pub struct AgentHandle<A: Agent> {
    shared: Arc<Shared>,
    supervisor: SupervisorHandle,
    _agent: PhantomData<fn() -> A>,
}

impl<A: Agent> std::fmt::Debug for AgentHandle<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle").field("name", &self.shared.name).finish_non_exhaustive()
    }
}

impl<A: Agent> AgentHandle<A> {
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A handle to the running instance (the current one after a restart);
    /// [`AgentError::Stopped`] between a crash and its restart, or after a stop.
    pub async fn agent_ref(&self) -> Result<AgentRef, AgentError> {
        let cell = self
            .supervisor
            .child(&self.shared.name)
            .await
            .ok_or_else(|| AgentError::Stopped { agent: self.shared.name.clone() })?;
        Ok(AgentRef::new(
            self.shared.name.clone(),
            self.shared.capabilities.clone(),
            cell,
            self.shared.max_message_bytes,
        ))
    }

    /// Gives the running instance one input and waits up to `timeout` for its output (see
    /// [`AgentRef::ask`]).
    pub async fn ask(&self, input: A::Input, timeout: Duration) -> Result<A::Output, AgentError> {
        self.agent_ref().await?.ask(input, timeout).await
    }

    /// Its supervisor (children, restarts, crash reports).
    pub fn supervisor(&self) -> &SupervisorHandle {
        &self.supervisor
    }

    /// Stops the agent and its supervisor.
    pub async fn stop(self) -> SupervisorExit {
        self.supervisor.stop().await
    }
}

/// The actor running an agent.
struct AgentActor<A> {
    registry: ServiceRegistry,
    _agent: PhantomData<fn() -> A>,
}

/// A running agent: its state, context and registration.
struct Running<A> {
    agent: A,
    ctx: AgentContext,
    instance: InstanceId,
}

impl<A: Agent> Running<A> {
    async fn step(&mut self, input: A::Input, span: tracing::Span) -> Result<A::Output, Refusal> {
        let started = Instant::now();
        let name = self.ctx.name().to_string();
        if let Err(e) = self.ctx.resume().await {
            metrics::counter!("foundation_agent_steps_total", "agent" => name.clone(), "outcome" => "unloaded")
                .increment(1);
            return Err(Refusal::Failed(format!("its conversation could not be loaded: {e}")));
        }
        let result = match catch_panic(self.agent.step(&mut self.ctx, input).instrument(span)).await {
            Ok(result) => result,
            Err(panic) => {
                metrics::counter!("foundation_agent_steps_total", "agent" => name.clone(), "outcome" => "panic")
                    .increment(1);
                return Err(Refusal::Crashed(panic));
            }
        };
        // The answer is given only once what the step remembered is kept.
        if let Err(e) = self.ctx.save().await {
            metrics::counter!("foundation_agent_steps_total", "agent" => name.clone(), "outcome" => "unsaved")
                .increment(1);
            tracing::warn!(agent = %name, error = %e, "an agent's conversation could not be saved: its answer is withheld, the conversation reloaded before the next step");
            return Err(Refusal::Failed(format!("its answer could not be kept in its conversation: {e}")));
        }
        metrics::histogram!("foundation_agent_step_seconds", "agent" => name.clone())
            .record(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("foundation_agent_steps_total", "agent" => name.clone(), "outcome" => outcome)
            .increment(1);
        result.map_err(|e| {
            tracing::debug!(agent = %name, error = %e, "an agent's step failed");
            Refusal::Failed(e.to_string())
        })
    }

    fn bad_input(&self, reason: String) -> Refusal {
        metrics::counter!("foundation_agent_steps_total", "agent" => self.ctx.name().to_string(), "outcome" => "bad_input")
            .increment(1);
        Refusal::BadInput(reason)
    }
}

impl<A: Agent> Actor for AgentActor<A> {
    type Msg = AgentMsg;
    type State = Running<A>;
    type Arguments = (Result<Arc<Shared>, AgentError>, A);

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        (shared, agent): Self::Arguments,
    ) -> Result<Running<A>, ActorProcessingErr> {
        let shared = shared?;
        let instance = self
            .registry
            .register_service(
                AGENT_SERVICE,
                myself.get_cell(),
                shared.capabilities.iter().cloned(),
                [(AGENT_NAME_KEY, shared.name.clone())],
            )
            .map_err(|e| AgentError::Start { agent: shared.name.clone(), source: Cause::new(e) })?;
        tracing::debug!(agent = %shared.name, %instance, "agent started and registered");
        let ctx = AgentContext::new(shared, self.registry.clone(), myself.get_cell());
        Ok(Running { agent, ctx, instance })
    }

    async fn post_stop(
        &self,
        _: ActorRef<AgentMsg>,
        running: &mut Running<A>,
    ) -> Result<(), ActorProcessingErr> {
        // After a crash this is not called: the registration goes when pg sees the actor gone.
        let _ = self.registry.deregister(running.instance);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<AgentMsg>,
        msg: AgentMsg,
        running: &mut Running<A>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Local(LocalAsk { input, to_json: input_json, parent, reply }) => {
                let span = foundation_core::trace_context::continue_trace!(
                    parent,
                    "agent.step",
                    agent = running.ctx.name()
                );
                let input = match input.downcast::<A::Input>() {
                    Ok(input) => Ok(*input),
                    // The caller's type is not ours: converted through JSON.
                    Err(input) => input_json(&*input).and_then(|json| from_json::<A::Input>(&json)),
                };
                let answer = match input {
                    Ok(input) => running
                        .step(input, span)
                        .await
                        .map(|output| LocalOutput { value: Box::new(output), to_json: to_json::<A::Output> }),
                    Err(reason) => Err(running.bad_input(reason)),
                };
                let crashed = crash_reason(answer.as_ref().err());
                // The asker may have given up (timed out): nobody to tell.
                let _ = reply.send(answer);
                if let Some(reason) = crashed {
                    return Err(reason.into());
                }
            }
            AgentMsg::Remote(RemoteAgentMsg::Ask(frame, reply)) => {
                let span = frame.span();
                let input = frame.into_inner().map_err(|e| e.to_string()).and_then(|json| from_json(&json));
                let mut crashed = None;
                let answer = match input {
                    Ok(input) => match running.step(input, span).await {
                        Ok(output) => match serde_json::to_string(&output) {
                            Ok(json) => WireReply::Output(json),
                            Err(e) => {
                                WireReply::Refused(Refusal::Failed(format!("cannot encode the output: {e}")))
                            }
                        },
                        Err(refusal) => {
                            crashed = crash_reason(Some(&refusal));
                            WireReply::Refused(refusal)
                        }
                    },
                    Err(reason) => WireReply::Refused(running.bad_input(reason)),
                };
                let frame = Wire::encode_or(&answer, running.ctx.max_message_bytes(), |e| {
                    WireReply::Refused(Refusal::Failed(format!("the answer could not be sent: {e}")))
                });
                let _ = reply.send(frame);
                if let Some(reason) = crashed {
                    return Err(reason.into());
                }
            }
        }
        Ok(())
    }
}

/// After a step panicked (its asker was answered): the actor's failure, so that its
/// supervisor restarts it with a fresh state.
fn crash_reason(refusal: Option<&Refusal>) -> Option<String> {
    match refusal {
        Some(Refusal::Crashed(panic)) => Some(format!("the step panicked: {panic}")),
        _ => None,
    }
}
