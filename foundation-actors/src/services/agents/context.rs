//! [`AgentContext`]: what an agent's step has at hand.

use std::sync::Arc;

use ractor::ActorCell;
use serde_json::Value;

use super::agent::Shared;
use super::conversation::{ConversationChange, ConversationError};
use super::error::AgentError;
use super::handle::{AgentRef, live_agents, pick, unknown_capability};
use super::memory::Memory;
use super::remote_tools;
use super::tools::Tools;
use crate::providers::{ChatMessage, ChatRequest, Completion};
use crate::registry::ServiceRegistry;

/// What a step has at hand: the agent's name, model, memory, tools (its own and those served
/// by tool servers anywhere in the cluster) and the other agents.
///
/// One context per start of the agent: its memory starts as the spec's and lives until the
/// agent stops or crashes.
pub struct AgentContext {
    pub(super) shared: Arc<Shared>,
    pub(super) memory: Memory,
    pub(super) registry: ServiceRegistry,
    myself: ActorCell,
    /// Specs of tools served elsewhere, by name, with when they were asked for (see
    /// [`run_tools`](Self::run_tools)).
    pub(super) served_specs:
        std::collections::HashMap<String, (Option<super::remote_tools::ServedSpec>, std::time::Instant)>,
    /// With a durable conversation: where the memory stands against the store (`None`: to be
    /// loaded before the next step).
    synced: Option<Synced>,
}

/// The memory as last loaded from or saved to the conversation store.
#[derive(Debug, Clone, Copy)]
struct Synced {
    /// The conversation's version then.
    version: u64,
    /// The memory's identity then (another means the step replaced it).
    memory: u64,
    /// Messages it had remembered then.
    remembered: u64,
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext")
            .field("name", &self.shared.name)
            .field("memory", &self.memory.len())
            .finish_non_exhaustive()
    }
}

impl AgentContext {
    pub(crate) fn new(shared: Arc<Shared>, registry: ServiceRegistry, myself: ActorCell) -> Self {
        AgentContext {
            memory: shared.memory.clone(),
            shared,
            registry,
            myself,
            served_specs: std::collections::HashMap::new(),
            synced: None,
        }
    }

    /// With a durable conversation not loaded since the start or the last failed save: loads
    /// it into a fresh copy of the spec's memory.
    pub(super) async fn resume(&mut self) -> Result<(), ConversationError> {
        let Some((store, id)) = &self.shared.durable else { return Ok(()) };
        if self.synced.is_some() {
            return Ok(());
        }
        let conversation = store.load(id).await?;
        let mut memory = self.shared.memory.clone();
        let stored = conversation.messages.len();
        for message in conversation.messages {
            memory.remember(message);
        }
        tracing::debug!(agent = %self.shared.name, conversation = %id, version = conversation.version, stored, "conversation loaded");
        self.synced = Some(Synced {
            version: conversation.version,
            memory: memory.identity(),
            remembered: memory.remembered(),
        });
        self.memory = memory;
        Ok(())
    }

    /// With a durable conversation: appends what the memory gained since it was loaded or last
    /// saved (all of it, as a reset, if the step replaced the memory). A failure leaves the
    /// memory to be loaded again before the next step.
    pub(super) async fn save(&mut self) -> Result<(), ConversationError> {
        let Some((store, id)) = &self.shared.durable else { return Ok(()) };
        let Some(synced) = self.synced.take() else { return Ok(()) };
        let (identity, remembered) = (self.memory.identity(), self.memory.remembered());
        let replaced = identity != synced.memory || remembered < synced.remembered;
        let change = if replaced {
            ConversationChange {
                after: synced.version,
                messages: self.memory.latest(usize::MAX),
                reset: true,
            }
        } else {
            let gained = usize::try_from(remembered - synced.remembered).unwrap_or(usize::MAX);
            if gained == 0 {
                self.synced = Some(synced);
                return Ok(());
            }
            // More than the window gained in one step: what the memory forgot is not kept either.
            ConversationChange { after: synced.version, messages: self.memory.latest(gained), reset: false }
        };
        let version = store.append(id, change).await?;
        self.synced = Some(Synced { version, memory: identity, remembered });
        Ok(())
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The capabilities it announces, sorted.
    pub fn capabilities(&self) -> &[String] {
        &self.shared.capabilities
    }

    /// Its conversation memory.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Its conversation memory, to add to or replace.
    pub fn memory_mut(&mut self) -> &mut Memory {
        &mut self.memory
    }

    /// Its local tools.
    pub fn tools(&self) -> &Tools {
        &self.shared.tools
    }

    /// The registry it is registered in (to find services other than agents).
    pub fn registry(&self) -> &ServiceRegistry {
        &self.registry
    }

    pub(crate) fn max_message_bytes(&self) -> usize {
        self.shared.max_message_bytes
    }

    /// Sends `request` to the agent's model as it is, and remembers the exchange: the request's
    /// last message and the answer (as an assistant message). A failed call remembers nothing.
    pub async fn complete(&mut self, request: ChatRequest) -> Result<Completion, AgentError> {
        let model = self
            .shared
            .model
            .as_ref()
            .ok_or_else(|| AgentError::NoModel { agent: self.shared.name.clone() })?;
        let completion = model.complete(&request).await?;
        if let Some(last) = request.messages.last() {
            self.memory.remember(last.clone());
        }
        self.memory.remember(completion.message());
        Ok(completion)
    }

    /// Continues the conversation: sends the memory's messages and `prompt` (as a user message)
    /// to the model, remembers both the prompt and the answer, and returns the answer's text.
    /// A failed call remembers nothing.
    pub async fn ask_model(&mut self, prompt: impl Into<String>) -> Result<String, AgentError> {
        let prompt = ChatMessage::user(prompt);
        let mut messages = self.memory.messages();
        messages.push(prompt.clone());
        let model = self
            .shared
            .model
            .as_ref()
            .ok_or_else(|| AgentError::NoModel { agent: self.shared.name.clone() })?;
        let completion = model.complete(&ChatRequest::new(messages)).await?;
        self.memory.remember(prompt);
        self.memory.remember(completion.message());
        Ok(completion.content)
    }

    /// Calls a tool by name with JSON arguments: one of the agent's own tools if it has one of
    /// that name, else one served by a [`ToolServer`](super::ToolServer) on any node (found
    /// through the registry; the call waits up to the spec's tool timeout). An unknown name is
    /// [`ToolError::Unknown`](super::ToolError::Unknown), listing the tools known here and
    /// served anywhere.
    pub async fn call_tool(&self, name: &str, args: Value) -> Result<Value, AgentError> {
        if self.shared.tools.names().contains(&name) {
            return Ok(self.shared.tools.call(name, args).await?);
        }
        remote_tools::call_served(
            &self.registry,
            name,
            args,
            self.shared.tool_timeout,
            self.shared.max_message_bytes,
            &self.shared.tools,
        )
        .await
    }

    /// Another live, healthy agent with `capability` (never this one; if several, each in
    /// turn). [`AgentError::UnknownCapability`] names the capabilities there are.
    pub fn find(&self, capability: &str) -> Result<AgentRef, AgentError> {
        pick(self.find_all(capability)).ok_or_else(|| unknown_capability(&self.registry, capability))
    }

    /// Every other live, healthy agent with `capability`, in registration order.
    pub fn find_all(&self, capability: &str) -> Vec<AgentRef> {
        live_agents(&self.registry, Some(capability))
            .into_iter()
            .filter(|i| i.actor.get_id() != self.myself.get_id())
            .map(|i| AgentRef::from_instance(i, self.shared.max_message_bytes))
            .collect()
    }
}
