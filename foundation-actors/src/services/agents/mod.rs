//! Agents (issue 9): supervised actors with a step function, a language model, a bounded
//! [`Memory`] and typed [`Tools`], that find each other by capability through the
//! [`ServiceRegistry`](crate::registry::ServiceRegistry) and ask each other on any node.
//!
//! - [`Agent`]: your state (the implementing struct) and an async `step` from a serde `Input` to
//!   a serde `Output`, with an [`AgentContext`] at hand: [`ask_model`](AgentContext::ask_model)
//!   and [`complete`](AgentContext::complete) (the exchange is remembered in its memory),
//!   [`call_tool`](AgentContext::call_tool) (its own tools, or tools served on any node),
//!   [`find`](AgentContext::find) (other agents by capability).
//! - [`AgentSpec`]: name, state factory, model, tools, memory, capabilities. It becomes a
//!   [`ChildSpec`](crate::supervision::ChildSpec) to put under any supervisor, or starts under a
//!   supervisor of its own ([`AgentSpec::start`] → [`AgentHandle`]). Every start builds a fresh
//!   state and memory and registers the agent under the service [`AGENT_SERVICE`] with its
//!   capabilities; a crashed agent's registration vanishes with its actor and the restarted
//!   one registers again.
//! - [`AgentRef`]: a handle to an agent found by capability or name, local or on another node;
//!   [`AgentRef::ask`] gives it one input and waits for the output, with a timeout. Errors are
//!   [`AgentError`]s that name the agent. Locally the values themselves are passed; to another
//!   node they travel as JSON within the frame limit.
//! - [`ToolServer`]: a set of tools served to the cluster by a small remotable actor, registered
//!   under [`TOOL_SERVICE`] with a [`tool_capability`] per tool.
//!
//! Steps of one agent run one at a time; an agent that asks another waits for it (an agent
//! asking itself, directly or in a cycle, waits until its timeout: [`AgentContext::find`]
//! never returns the agent itself).
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::agents::{Agent, AgentContext, AgentError, AgentRef, AgentSpec, Memory, Tools};
//! use foundation_actors::providers::{SimulatedConfig, SimulatedModel};
//! use foundation_actors::registry::ServiceRegistry;
//! use serde::{Deserialize, Serialize};
//!
//! /// What the agent is asked, and the tool's arguments (its JSON Schema is what a model is
//! /// offered).
//! #[derive(Serialize, Deserialize, schemars::JsonSchema)]
//! struct Question {
//!     country: String,
//! }
//!
//! /// Looks the capital up with a tool, has the model phrase the answer, counts its answers.
//! struct Geographer {
//!     answered: u64,
//! }
//!
//! impl Agent for Geographer {
//!     type Input = Question;
//!     type Output = String;
//!
//!     async fn step(&mut self, ctx: &mut AgentContext, q: Question) -> Result<String, AgentError> {
//!         let capital = ctx.call_tool("capital_of", serde_json::json!({ "country": q.country })).await?;
//!         self.answered += 1;
//!         ctx.ask_model(format!("Say that the capital of {} is {capital}.", q.country)).await
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let registry = ServiceRegistry::start().await.unwrap();
//! let mut tools = Tools::new();
//! tools.register("capital_of", "the capital of a country", |q: Question| async move {
//!     if q.country == "France" { Ok("Paris".to_string()) } else { Err(format!("no idea about {}", q.country).into()) }
//! }).unwrap();
//! let model = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
//!
//! let geographer = AgentSpec::new("geographer", || Geographer { answered: 0 })
//!     .model(model)
//!     .tools(tools)
//!     .memory(Memory::new(16).unwrap().with_system("You answer in one sentence."))
//!     .capabilities(["geography"])
//!     .start(&registry)
//!     .await?;
//!
//! // Anyone (another agent, another node) finds it by capability and asks.
//! let agent = AgentRef::find(&registry, "geography")?;
//! let question = Question { country: "France".into() };
//! let answer: String = agent.ask(question, Duration::from_secs(5)).await?;
//! assert!(answer.starts_with("Simulated answer"), "{answer}");
//!
//! // A step's error reaches the asker, naming the agent; the agent carries on.
//! let err = geographer.ask(Question { country: "Atlantis".into() }, Duration::from_secs(5)).await;
//! assert!(matches!(err, Err(AgentError::Failed { .. })), "{err:?}");
//! assert!(matches!(AgentRef::find(&registry, "cooking"), Err(AgentError::UnknownCapability { .. })));
//! geographer.stop().await;
//! # Ok::<(), AgentError>(())
//! # }).unwrap();
//! ```

mod agent;
mod approval;
mod context;
pub mod conversation;
mod error;
mod handle;
mod memory;
mod remote_tools;
mod tool_loop;
mod tools;

pub use agent::{Agent, AgentHandle, AgentSpec, DEFAULT_MEMORY_WINDOW};
pub use approval::{
    ApprovalDesk, ApprovalError, ApprovalRecord, DEFAULT_APPROVAL_TIMEOUT, Decision, MAX_PENDING_APPROVALS,
    PendingApproval, RECENT_DECISIONS,
};
pub use context::AgentContext;
pub use conversation::{
    Conversation, ConversationChange, ConversationError, ConversationStore, LocalConversations,
};
pub use error::AgentError;
pub use handle::{AGENT_NAME_KEY, AGENT_SERVICE, AgentRef};
pub use memory::{EmptyWindow, Memory};
pub use remote_tools::{
    DEFAULT_TOOL_TIMEOUT, MAX_CONCURRENT_TOOL_CALLS, TOOL_SERVICE, ToolServer, ToolServerHandle,
    tool_capability,
};
pub use tool_loop::{
    DEFAULT_MAX_TOOL_STEPS, LoopEvent, MAX_CALLS_PER_STEP, MAX_TOOL_RESULT_BYTES, SERVED_SPEC_TTL,
    ToolCallRecord, ToolLoop, ToolOutcome, ToolPlace, ToolRun, ToolStep,
};
pub use tools::{MAX_TOOL_NAME, ToolError, Tools};
