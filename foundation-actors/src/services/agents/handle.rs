//! [`AgentRef`]: a handle to a running agent, found by capability or name through the service
//! registry, on this node or another; and the agent actor's messages.
//!
//! An ask to an agent in this process sends the input itself (boxed, never encoded) and gets
//! the output itself back; when the caller's types are not the agent's own (a mirror type in
//! another crate, say), the value is converted through JSON, so that a mismatch is a clear
//! [`AgentError::BadInput`] or [`AgentError::BadOutput`] naming the field. An ask to another
//! node sends the input as JSON in a [`Wire`] frame, refused before sending if it exceeds the
//! frame limit; the answer comes back the same way.

use foundation_core::config::DEFAULT_MAX_FRAME_BYTES;
use std::any::Any;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use foundation_core::Cause;
use foundation_core::trace_context::{self, TraceParent};
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::AgentError;
use crate::registry::{Query, ServiceInstance, ServiceRegistry};
use crate::wire::Wire;

/// The registry service every agent instance is registered under; its capabilities are the
/// ones its spec gives, and its metadata holds its name under [`AGENT_NAME_KEY`].
pub const AGENT_SERVICE: &str = "agents";
/// The metadata key of an agent instance's name in the registry.
pub const AGENT_NAME_KEY: &str = "agent";

/// Converts a boxed value to JSON; monomorphized per value type (the box always holds that
/// type: the function is chosen where the box is made).
pub(crate) type ToJson = fn(&(dyn Any + Send)) -> Result<String, String>;

pub(crate) fn to_json<T: Serialize + 'static>(value: &(dyn Any + Send)) -> Result<String, String> {
    let value = value
        .downcast_ref::<T>()
        .ok_or_else(|| format!("internal: the value is not a {}", std::any::type_name::<T>()))?;
    serde_json::to_string(value).map_err(|e| e.to_string())
}

/// Reads JSON as a `T`; the error names the field.
pub(crate) fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// An ask from this process: the input itself.
pub(crate) struct LocalAsk {
    pub(crate) input: Box<dyn Any + Send>,
    pub(crate) to_json: ToJson,
    pub(crate) parent: Option<TraceParent>,
    pub(crate) reply: RpcReplyPort<Result<LocalOutput, Refusal>>,
}

/// An answer to this process: the output itself.
pub(crate) struct LocalOutput {
    pub(crate) value: Box<dyn Any + Send>,
    pub(crate) to_json: ToJson,
}

/// An answer other than an output.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// The input did not decode as the agent's input type.
    BadInput(String),
    /// The step failed (its error, as it printed).
    Failed(String),
    /// The step panicked (its message); the agent restarts.
    Crashed(String),
}

impl Refusal {
    fn into_error(self, agent: &str) -> AgentError {
        let agent = agent.to_string();
        match self {
            Refusal::BadInput(reason) => AgentError::BadInput { agent, source: reason.into() },
            Refusal::Failed(reason) => AgentError::Failed { agent, reason },
            Refusal::Crashed(_) => AgentError::Crashed { agent },
        }
    }
}

/// An answer on the wire: the output as JSON, or a refusal.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireReply {
    Output(String),
    Refused(Refusal),
}

/// What crosses nodes: the input as JSON.
#[derive(RactorClusterMessage)]
pub(crate) enum RemoteAgentMsg {
    #[rpc]
    Ask(Wire<String>, RpcReplyPort<Wire<WireReply>>),
}

/// The agent actor's messages.
pub(crate) enum AgentMsg {
    /// From this process.
    Local(LocalAsk),
    /// From another node.
    Remote(RemoteAgentMsg),
}

// Written by hand: `Local` carries a boxed value, which only ever goes to actors in this process
// (ractor boxes it without encoding); `Remote` crosses nodes with the derived encoding.
impl ractor::Message for AgentMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            AgentMsg::Remote(msg) => ractor::Message::serialize(msg),
            AgentMsg::Local(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        <RemoteAgentMsg as ractor::Message>::deserialize(message).map(AgentMsg::Remote)
    }
}

/// A handle to one running agent instance, on this node or another. Cheap to clone.
///
/// Found by capability ([`AgentRef::find`]) or name ([`AgentRef::named`]) among the registry's
/// live, healthy agents; an agent's own [`AgentContext`](super::AgentContext) finds others the
/// same way. A handle names one instance: if that instance stops (a crash, its node going),
/// asks fail with [`AgentError::Stopped`] or [`AgentError::Crashed`], and a new handle is found
/// again (a supervised agent re-registers when it restarts).
#[derive(Clone)]
pub struct AgentRef {
    name: String,
    capabilities: Vec<String>,
    actor: ActorRef<AgentMsg>,
    max_message_bytes: usize,
}

impl std::fmt::Debug for AgentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRef")
            .field("name", &self.name)
            .field("capabilities", &self.capabilities)
            .field("actor", &self.actor.get_id())
            .finish()
    }
}

/// Turns for picking among several instances.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// One of `found`, in turn (so that several instances share the asks).
pub(crate) fn pick<T>(mut found: Vec<T>) -> Option<T> {
    if found.is_empty() {
        return None;
    }
    let i = TURN.fetch_add(1, Ordering::Relaxed) % found.len();
    Some(found.swap_remove(i))
}

/// Live, healthy agent instances (optionally with `capability`), in registration order.
pub(crate) fn live_agents(registry: &ServiceRegistry, capability: Option<&str>) -> Vec<ServiceInstance> {
    let mut query = Query::new().name(AGENT_SERVICE);
    if let Some(capability) = capability {
        query = query.capability(capability);
    }
    registry.discover(&query).into_iter().filter(|i| i.healthy).collect()
}

/// The error for a capability no live agent has: names the ones there are.
pub(crate) fn unknown_capability(registry: &ServiceRegistry, capability: &str) -> AgentError {
    let offered: BTreeSet<String> =
        live_agents(registry, None).into_iter().flat_map(|i| i.capabilities).collect();
    AgentError::UnknownCapability {
        capability: capability.to_string(),
        offered: offered.into_iter().collect(),
    }
}

impl AgentRef {
    pub(crate) fn new(
        name: String,
        capabilities: Vec<String>,
        actor: ActorCell,
        max_message_bytes: usize,
    ) -> Self {
        AgentRef { name, capabilities, actor: actor.into(), max_message_bytes }
    }

    pub(crate) fn from_instance(instance: ServiceInstance, max_message_bytes: usize) -> Self {
        let name = instance.metadata.get(AGENT_NAME_KEY).cloned().unwrap_or_default();
        Self::new(name, instance.capabilities.into_iter().collect(), instance.actor, max_message_bytes)
    }

    /// A live, healthy agent with `capability` (if several, each in turn).
    pub fn find(registry: &ServiceRegistry, capability: &str) -> Result<AgentRef, AgentError> {
        pick(Self::find_all(registry, capability)).ok_or_else(|| unknown_capability(registry, capability))
    }

    /// Every live, healthy agent with `capability`, in registration order.
    pub fn find_all(registry: &ServiceRegistry, capability: &str) -> Vec<AgentRef> {
        live_agents(registry, Some(capability))
            .into_iter()
            .map(|i| Self::from_instance(i, DEFAULT_MAX_FRAME_BYTES))
            .collect()
    }

    /// A live, healthy agent named `name` (if several instances, each in turn).
    pub fn named(registry: &ServiceRegistry, name: &str) -> Result<AgentRef, AgentError> {
        let found = live_agents(registry, None)
            .into_iter()
            .filter(|i| i.metadata.get(AGENT_NAME_KEY).is_some_and(|n| n == name))
            .map(|i| Self::from_instance(i, DEFAULT_MAX_FRAME_BYTES))
            .collect();
        pick(found).ok_or_else(|| AgentError::UnknownAgent(name.to_string()))
    }

    /// Sets the largest encoded input sent to an agent on another node (default
    /// [`DEFAULT_MAX_FRAME_BYTES`](foundation_core::config::DEFAULT_MAX_FRAME_BYTES), the
    /// cluster's default frame limit; set it to
    /// `cluster.max_frame_bytes`, which the receiving node enforces by dropping the connection).
    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The capabilities it announced, sorted.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether it runs in this process.
    pub fn is_local(&self) -> bool {
        self.actor.get_id().is_local()
    }

    /// Its actor (to monitor it).
    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// Gives the agent one input and waits up to `timeout` for its output.
    ///
    /// `I` and `O` are the agent's `Input` and `Output` types, or types with the same JSON form.
    /// Errors: [`AgentError::Timeout`] (the agent may still finish the step),
    /// [`AgentError::Failed`] (its step returned an error), [`AgentError::Crashed`] (it stopped
    /// while handling this input, e.g. a panic), [`AgentError::Stopped`] (not running),
    /// [`AgentError::BadInput`]/[`AgentError::BadOutput`] (types that do not fit), and
    /// [`AgentError::Wire`] (another node's agent: input over the frame limit, or an answer that
    /// did not decode).
    pub async fn ask<I, O>(&self, input: I, timeout: Duration) -> Result<O, AgentError>
    where
        I: Serialize + Send + 'static,
        O: DeserializeOwned + Send + 'static,
    {
        let started = Instant::now();
        let result = if self.is_local() {
            self.ask_local(input, timeout).await
        } else {
            self.ask_remote(&input, timeout).await
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(AgentError::Timeout { .. }) => "timeout",
            Err(_) => "error",
        };
        metrics::counter!("foundation_agent_asks_total", "agent" => self.name.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("foundation_agent_ask_seconds", "agent" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn ask_local<I, O>(&self, input: I, timeout: Duration) -> Result<O, AgentError>
    where
        I: Serialize + Send + 'static,
        O: DeserializeOwned + Send + 'static,
    {
        let parent = trace_context::current_sampled();
        let ask = move |reply| {
            AgentMsg::Local(LocalAsk { input: Box::new(input), to_json: to_json::<I>, parent, reply })
        };
        let output = self.call(ask, timeout).await?.map_err(|r| r.into_error(&self.name))?;
        match output.value.downcast::<O>() {
            Ok(value) => Ok(*value),
            // Another type of the same JSON form: converted.
            Err(value) => (output.to_json)(&*value)
                .and_then(|json| from_json(&json))
                .map_err(|reason| AgentError::BadOutput { agent: self.name.clone(), reason }),
        }
    }

    pub(crate) async fn ask_remote<I, O>(&self, input: &I, timeout: Duration) -> Result<O, AgentError>
    where
        I: Serialize,
        O: DeserializeOwned + Send + 'static,
    {
        let agent = || self.name.clone();
        let json = serde_json::to_string(input)
            .map_err(|e| AgentError::BadInput { agent: agent(), source: Cause::new(e) })?;
        let frame = Wire::encode(&json, self.max_message_bytes)
            .map_err(|error| AgentError::Wire { agent: agent(), error })?;
        let reply = self.call(|port| AgentMsg::Remote(RemoteAgentMsg::Ask(frame, port)), timeout).await?;
        match reply.into_inner().map_err(|error| AgentError::Wire { agent: agent(), error })? {
            WireReply::Output(json) => {
                from_json(&json).map_err(|reason| AgentError::BadOutput { agent: agent(), reason })
            }
            WireReply::Refused(refusal) => Err(refusal.into_error(&self.name)),
        }
    }

    async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<R>) -> AgentMsg,
        timeout: Duration,
    ) -> Result<R, AgentError> {
        let agent = self.name.clone();
        match self.actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(AgentError::Timeout { agent, after: timeout }),
            Ok(CallResult::SenderError) => Err(AgentError::Crashed { agent }),
            Err(_) => Err(AgentError::Stopped { agent }),
        }
    }
}

/// Runs a future, turning a panic in it into `Err` with the panic's message, so that an asker
/// on another node (whose reply port is a bridge that says nothing when dropped) still gets an
/// answer.
pub(crate) async fn catch_panic<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::task::Poll;
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(panic) => Poll::Ready(Err(panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string()))),
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agents::{Agent, AgentContext, AgentSpec};
    use crate::wire::WireError;

    const WAIT: Duration = Duration::from_secs(20);

    #[derive(Debug, Serialize, Deserialize)]
    struct Repeat {
        times: usize,
    }

    /// Answers `x` repeated; refuses 0.
    struct Repeater;

    impl Agent for Repeater {
        type Input = Repeat;
        type Output = String;

        async fn step(&mut self, _: &mut AgentContext, input: Repeat) -> Result<String, AgentError> {
            if input.times == 0 {
                return Err(AgentError::step("nothing to repeat"));
            }
            assert_ne!(input.times, 7, "seven is unlucky");
            Ok("x".repeat(input.times))
        }
    }

    async fn repeater(max_message_bytes: usize) -> (ServiceRegistry, crate::agents::AgentHandle<Repeater>) {
        let registry = ServiceRegistry::start().await.unwrap();
        let spec = AgentSpec::new("repeater", || Repeater).max_message_bytes(max_message_bytes);
        let handle = spec.start(&registry).await.unwrap();
        (registry, handle)
    }

    /// Delivers an ask as one from another node arrives: serialized by ractor into bytes (the
    /// reply port bridged to bytes) and deserialized on "the other side".
    async fn through_bytes(agent: &AgentRef, json: &str) -> Result<WireReply, WireError> {
        let (tx, rx) = ractor::concurrency::oneshot();
        let frame = Wire::encode(&json.to_string(), 1 << 20).unwrap();
        let msg = AgentMsg::Remote(RemoteAgentMsg::Ask(frame, RpcReplyPort::from((tx, WAIT))));
        let bytes = ractor::Message::serialize(msg).unwrap();
        let arrived = <AgentMsg as ractor::Message>::deserialize(bytes).unwrap();
        agent.actor.send_message(arrived).unwrap();
        rx.await.unwrap().into_inner()
    }

    /// The agent's new instance once its supervisor restarted it.
    async fn eventually_restarted(handle: &crate::agents::AgentHandle<Repeater>, old: &AgentRef) -> AgentRef {
        for _ in 0..2000 {
            if let Ok(new) = handle.agent_ref().await
                && new.cell().get_id() != old.cell().get_id()
            {
                return new;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the agent was not restarted");
    }

    #[tokio::test]
    async fn asks_from_other_nodes_travel_as_json_in_wire_frames() {
        let (_registry, handle) = repeater(1 << 20).await;
        let agent = handle.agent_ref().await.unwrap();

        let Ok(WireReply::Output(json)) = through_bytes(&agent, r#"{"times": 3}"#).await else { panic!() };
        assert_eq!(json, r#""xxx""#);
        let Ok(WireReply::Refused(Refusal::BadInput(reason))) = through_bytes(&agent, r#"{"time": 3}"#).await
        else {
            panic!()
        };
        assert!(reason.contains("missing field `times`"), "{reason}");
        let Ok(WireReply::Refused(Refusal::Failed(reason))) = through_bytes(&agent, r#"{"times": 0}"#).await
        else {
            panic!()
        };
        assert_eq!(reason, "nothing to repeat");
        // A panicking step still answers the other node (its reply port would say nothing).
        let Ok(WireReply::Refused(Refusal::Crashed(panic))) = through_bytes(&agent, r#"{"times": 7}"#).await
        else {
            panic!()
        };
        assert!(panic.contains("seven is unlucky"), "{panic}");
        let agent = eventually_restarted(&handle, &agent).await;
        // A local-only ask cannot be serialized.
        let (tx, _rx) = ractor::concurrency::oneshot();
        let local = AgentMsg::Local(LocalAsk {
            input: Box::new(()),
            to_json: to_json::<()>,
            parent: None,
            reply: tx.into(),
        });
        assert!(ractor::Message::serialize(local).is_err());

        // The remote path end to end (its actor happens to be local here).
        assert_eq!(agent.ask_remote::<_, String>(&Repeat { times: 2 }, WAIT).await.unwrap(), "xx");
        let bad = agent.ask_remote::<_, String>(&json!({"times": -1}), WAIT).await.unwrap_err();
        let AgentError::BadInput { source, .. } = &bad else { panic!("{bad}") };
        assert!(source.to_string().contains("times"), "{bad}");
        handle.stop().await;
    }

    #[tokio::test]
    async fn oversized_inputs_and_answers_are_refused_with_the_frame_limit_named() {
        let (_registry, handle) = repeater(64).await;
        let agent = handle.agent_ref().await.unwrap().with_max_message_bytes(16);
        let err = agent.ask_remote::<_, String>(&json!({"times": 1, "padding": "p".repeat(32)}), WAIT).await;
        let Err(AgentError::Wire { agent: name, error }) = err else { panic!("{err:?}") };
        assert_eq!(name, "repeater");
        assert!(matches!(error, WireError::TooLarge { max: 16, .. }), "{error}");

        // The answer must fit the agent's own limit (64 bytes): refused, saying why.
        assert_eq!(agent.ask_remote::<_, String>(&Repeat { times: 8 }, WAIT).await.unwrap(), "xxxxxxxx");
        let err = agent.ask_remote::<_, String>(&Repeat { times: 100 }, WAIT).await.unwrap_err();
        assert!(
            err.to_string().contains("could not be sent") && err.to_string().contains("64-byte"),
            "{err}"
        );
        // Locally the value itself is passed: no frame, no limit.
        assert_eq!(agent.ask::<_, String>(Repeat { times: 100 }, WAIT).await.unwrap().len(), 100);
        handle.stop().await;
    }

    use serde_json::json;
}
