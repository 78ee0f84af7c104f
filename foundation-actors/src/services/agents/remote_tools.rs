//! Tools served to the whole cluster: a [`ToolServer`] is a small remotable actor holding a
//! set of [`Tools`], registered in the service registry under [`TOOL_SERVICE`] with the
//! capability [`tool_capability`]`(name)` for each tool. Any node's agent calls a tool by name
//! ([`AgentContext::call_tool`](super::AgentContext::call_tool)) or any code does with
//! [`ToolServer::call`]; the registry finds a server offering it, here or on another node.
//!
//! A call to a server in this process passes the JSON value itself; to another node, the
//! arguments and result travel as JSON text in a [`Wire`] frame within the frame limit. Calls
//! run concurrently, at most [`MAX_CONCURRENT_TOOL_CALLS`] at a time per server (further calls
//! wait in its mailbox).

use std::sync::Arc;
use std::time::Duration;

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::error::AgentError;
use super::handle::{catch_panic, pick};
use super::tools::{ToolError, Tools};
use crate::providers::ToolSpec;
use crate::registry::{InstanceId, Query, ServiceRegistry};
use crate::supervision::{ChildSpec, Strategy, Supervisor, SupervisorExit, SupervisorHandle, SupervisorSpec};
use crate::wire::Wire;
use foundation_core::Cause;
use foundation_core::config::DEFAULT_MAX_FRAME_BYTES;

/// The registry service tool servers are registered under.
pub const TOOL_SERVICE: &str = "tools";
/// How long a call to a served tool waits for its answer by default (30 s).
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls one tool server runs at the same time (64); more wait in its mailbox.
pub const MAX_CONCURRENT_TOOL_CALLS: usize = 64;

/// The registry capability of a tool server that serves the tool `tool`: `tool:<tool>`.
pub fn tool_capability(tool: &str) -> String {
    format!("tool:{tool}")
}

/// A call from another node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ToolCall {
    pub(crate) tool: String,
    /// The arguments as JSON text.
    pub(crate) args: String,
}

/// A served tool as its server describes it: its spec, and whether its calls need approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServedSpec {
    #[serde(flatten)]
    pub(crate) spec: ToolSpec,
    #[serde(default)]
    pub(crate) needs_approval: bool,
}

/// The result as JSON text, or the tool's error.
pub(crate) type WireResult = Result<String, ToolError>;

#[derive(RactorClusterMessage)]
pub(crate) enum RemoteToolMsg {
    #[rpc]
    Call(Wire<ToolCall>, RpcReplyPort<Wire<WireResult>>),
    /// The specs of the named tools it serves, as the JSON text of a `Vec<ToolSpec>` (their
    /// schemas are JSON values, which the binary encoding cannot carry), or why not.
    #[rpc]
    Specs(Wire<Vec<String>>, RpcReplyPort<Wire<Result<String, String>>>),
}

pub(crate) enum ToolServerMsg {
    /// A call from this process: the JSON value itself.
    Local { tool: String, args: Value, reply: RpcReplyPort<Result<Value, ToolError>> },
    /// The specs of the named tools, asked in this process.
    LocalSpecs(Vec<String>, RpcReplyPort<Vec<ServedSpec>>),
    /// A call from another node.
    Remote(RemoteToolMsg),
}

// Written by hand: `Local` stays in this process; `Remote` has the derived encoding.
impl ractor::Message for ToolServerMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            ToolServerMsg::Remote(msg) => ractor::Message::serialize(msg),
            ToolServerMsg::Local { .. } | ToolServerMsg::LocalSpecs(..) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        <RemoteToolMsg as ractor::Message>::deserialize(message).map(ToolServerMsg::Remote)
    }
}

/// A set of tools served to every node, as a supervised actor registered in the registry.
///
/// ```
/// use std::time::Duration;
/// use foundation_actors::agents::{ToolServer, Tools};
/// use foundation_actors::registry::ServiceRegistry;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Text {
///     text: String,
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let registry = ServiceRegistry::start().await.unwrap();
/// let mut tools = Tools::new();
/// tools.register("upper", "upper-cases a text", |t: Text| async move { Ok::<_, foundation_core::BoxError>(t.text.to_uppercase()) }).unwrap();
/// let server = ToolServer::new(tools).start(&registry).await.unwrap();
/// let shout = ToolServer::call(&registry, "upper", serde_json::json!({"text": "hi"}), Duration::from_secs(5)).await.unwrap();
/// assert_eq!(shout, "HI");
/// server.stop().await;
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ToolServer {
    tools: Tools,
    max_message_bytes: usize,
}

impl ToolServer {
    /// A server of these tools, with the default frame limit.
    pub fn new(tools: Tools) -> Self {
        ToolServer { tools, max_message_bytes: DEFAULT_MAX_FRAME_BYTES }
    }

    /// The largest encoded result it sends to another node (default
    /// [`DEFAULT_MAX_FRAME_BYTES`], the cluster's default frame limit; set it to `cluster.max_frame_bytes`); a larger result is
    /// answered with [`ToolError::BadResult`] saying so.
    pub fn max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// The server as a supervised child with this id (permanent); it registers in `registry` on
    /// every start.
    pub fn child_spec(&self, id: impl Into<String>, registry: &ServiceRegistry) -> ChildSpec {
        let actor = ToolServerActor {
            registry: registry.clone(),
            tools: self.tools.clone(),
            max_message_bytes: self.max_message_bytes,
        };
        ChildSpec::new(id, move || (actor.clone(), ()))
    }

    /// Starts the server under a supervisor of its own, named `tools`.
    pub async fn start(self, registry: &ServiceRegistry) -> Result<ToolServerHandle, AgentError> {
        let spec = SupervisorSpec::new(Strategy::OneForOne).child(self.child_spec("tools", registry));
        let supervisor = Supervisor::start(TOOL_SERVICE, spec)
            .await
            .map_err(|e| AgentError::Start { agent: TOOL_SERVICE.to_string(), source: Cause::new(e) })?;
        Ok(ToolServerHandle { supervisor })
    }

    /// Calls a tool served by a live, healthy tool server on any node (if several serve it,
    /// each in turn), waiting up to `timeout`. Errors are [`AgentError::Tool`]: the tool's own
    /// errors, [`ToolError::Unknown`] (no server offers it; lists the tools served), and
    /// [`ToolError::Unreachable`] (its server timed out or stopped).
    pub async fn call(
        registry: &ServiceRegistry,
        tool: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        call_served(registry, tool, args, timeout, DEFAULT_MAX_FRAME_BYTES, &Tools::new()).await
    }
}

/// A running tool server (from [`ToolServer::start`]).
#[derive(Debug)]
pub struct ToolServerHandle {
    supervisor: SupervisorHandle,
}

impl ToolServerHandle {
    /// Its supervisor.
    pub fn supervisor(&self) -> &SupervisorHandle {
        &self.supervisor
    }

    /// Stops the server (its registration goes with it).
    pub async fn stop(self) -> SupervisorExit {
        self.supervisor.stop().await
    }
}

/// Calls a served tool; `local` only names the caller's own tools in an unknown-tool error.
pub(crate) async fn call_served(
    registry: &ServiceRegistry,
    tool: &str,
    args: Value,
    timeout: Duration,
    max_message_bytes: usize,
    local: &Tools,
) -> Result<Value, AgentError> {
    let servers: Vec<_> = registry
        .discover(&Query::new().name(TOOL_SERVICE).capability(tool_capability(tool)))
        .into_iter()
        .filter(|i| i.healthy)
        .collect();
    let Some(server) = pick(servers) else {
        let mut known: Vec<String> = local.names().into_iter().map(str::to_string).collect();
        for server in registry.discover(&Query::new().name(TOOL_SERVICE)) {
            known.extend(
                server.capabilities.iter().filter_map(|c| c.strip_prefix("tool:")).map(str::to_string),
            );
        }
        known.sort();
        known.dedup();
        return Err(ToolError::Unknown { name: tool.to_string(), known }.into());
    };
    let actor: ActorRef<ToolServerMsg> = server.actor.into();
    let name = tool.to_string();
    if actor.get_id().is_local() {
        let call = |reply| ToolServerMsg::Local { tool: name.clone(), args, reply };
        return Ok(reply(actor.call(call, Some(timeout)).await, tool, timeout)??);
    }
    let frame = Wire::encode(&ToolCall { tool: name, args: args.to_string() }, max_message_bytes)
        .map_err(|e| ToolError::BadArguments { tool: tool.to_string(), source: Cause::new(e) })?;
    let call = |reply| ToolServerMsg::Remote(RemoteToolMsg::Call(frame, reply));
    let answer = reply(actor.call(call, Some(timeout)).await, tool, timeout)?
        .into_inner()
        .map_err(|e| ToolError::BadResult { tool: tool.to_string(), source: Cause::new(e) })??;
    serde_json::from_str(&answer)
        .map_err(|e| ToolError::BadResult { tool: tool.to_string(), source: Cause::new(e) }.into())
}

/// Whether a live, healthy tool server offers `tool` (in this process or on another node).
pub(crate) fn is_served(registry: &ServiceRegistry, tool: &str) -> bool {
    registry
        .discover(&Query::new().name(TOOL_SERVICE).capability(tool_capability(tool)))
        .iter()
        .any(|i| i.healthy)
}

/// The spec of each tool in `names` that a live, healthy tool server offers (asked of one
/// server per tool, each server once, concurrently, waiting up to `timeout`). Tools no server
/// offers, whose server did not answer, or whose spec a model API would refuse (a bad name,
/// parameters that are not an object schema) are left out, with the reason logged.
pub(crate) async fn served_specs(
    registry: &ServiceRegistry,
    names: &[String],
    timeout: Duration,
) -> Vec<ServedSpec> {
    let mut by_server: Vec<(ractor::ActorCell, Vec<String>)> = Vec::new();
    for name in names {
        let servers: Vec<_> = registry
            .discover(&Query::new().name(TOOL_SERVICE).capability(tool_capability(name)))
            .into_iter()
            .filter(|i| i.healthy)
            .collect();
        let Some(server) = pick(servers) else { continue };
        match by_server.iter_mut().find(|(cell, _)| cell.get_id() == server.actor.get_id()) {
            Some((_, wanted)) => wanted.push(name.clone()),
            None => by_server.push((server.actor, vec![name.clone()])),
        }
    }
    let asks = by_server.into_iter().map(|(cell, wanted)| async move {
        let actor: ActorRef<ToolServerMsg> = cell.into();
        let node = actor.get_id().node();
        let specs: Result<Vec<ServedSpec>, String> = if actor.get_id().is_local() {
            let call = |reply| ToolServerMsg::LocalSpecs(wanted.clone(), reply);
            reply(actor.call(call, Some(timeout)).await, "(specs)", timeout).map_err(|e| e.to_string())
        } else {
            let frame = Wire::encode(&wanted, DEFAULT_MAX_FRAME_BYTES).map_err(|e| e.to_string());
            match frame {
                Err(e) => Err(e),
                Ok(frame) => {
                    let call = |reply| ToolServerMsg::Remote(RemoteToolMsg::Specs(frame, reply));
                    reply(actor.call(call, Some(timeout)).await, "(specs)", timeout)
                        .map_err(|e| e.to_string())
                        .and_then(|frame| frame.into_inner().map_err(|e| e.to_string()))
                        .and_then(|answer| answer)
                        .and_then(|json| {
                            serde_json::from_str::<Vec<ServedSpec>>(&json).map_err(|e| e.to_string())
                        })
                }
            }
        };
        match specs {
            Ok(specs) => specs
                .into_iter()
                .filter(|s| wanted.contains(&s.spec.name))
                .filter(|s| match crate::providers::ChatRequest::new(Vec::new()).tool(s.spec.clone()).check() {
                    Ok(()) => true,
                    Err(reason) => {
                        tracing::warn!(tool = %s.spec.name, node, %reason, "a served tool's spec is refused");
                        false
                    }
                })
                .collect::<Vec<_>>(),
            Err(reason) => {
                tracing::warn!(tools = ?wanted, node, %reason, "a tool server did not give its tools' specs");
                metrics::counter!("foundation_agent_tool_spec_failures_total").increment(1);
                Vec::new()
            }
        }
    });
    let mut specs: Vec<ServedSpec> = futures::future::join_all(asks).await.into_iter().flatten().collect();
    specs.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    specs.dedup_by(|a, b| a.spec.name == b.spec.name);
    specs
}

/// A call's outcome as a tool error if there was no answer.
fn reply<R, E>(result: Result<CallResult<R>, E>, tool: &str, timeout: Duration) -> Result<R, ToolError> {
    let unreachable = |reason: String| ToolError::Unreachable { tool: tool.to_string(), reason };
    match result {
        Ok(CallResult::Success(r)) => Ok(r),
        Ok(CallResult::Timeout) => Err(unreachable(format!("its server did not answer within {timeout:?}"))),
        Ok(CallResult::SenderError) => Err(unreachable("its server stopped before answering".into())),
        Err(_) => Err(unreachable("its server is not running".into())),
    }
}

#[derive(Clone)]
struct ToolServerActor {
    registry: ServiceRegistry,
    tools: Tools,
    max_message_bytes: usize,
}

struct Serving {
    calls: Arc<Semaphore>,
    instance: InstanceId,
    /// Calls running; aborted when the server stops.
    running: tokio::task::JoinSet<()>,
}

impl Actor for ToolServerActor {
    type Msg = ToolServerMsg;
    type State = Serving;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ToolServerMsg>, _: ()) -> Result<Serving, ActorProcessingErr> {
        let names = self.tools.names();
        let instance = self.registry.register_service(
            TOOL_SERVICE,
            myself.get_cell(),
            names.iter().map(|n| tool_capability(n)),
            [("tools", names.join(","))],
        )?;
        let running = tokio::task::JoinSet::new();
        Ok(Serving { calls: Arc::new(Semaphore::new(MAX_CONCURRENT_TOOL_CALLS)), instance, running })
    }

    async fn post_stop(
        &self,
        _: ActorRef<ToolServerMsg>,
        serving: &mut Serving,
    ) -> Result<(), ActorProcessingErr> {
        let _ = self.registry.deregister(serving.instance);
        serving.running.abort_all();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ToolServerMsg>,
        msg: ToolServerMsg,
        serving: &mut Serving,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ToolServerMsg::LocalSpecs(names, reply) => {
                let _ = reply.send(self.specs_of(&names));
                Ok(())
            }
            ToolServerMsg::Remote(RemoteToolMsg::Specs(names, reply)) => {
                let answer =
                    names.into_inner().map_err(|e| format!("the names did not decode: {e}")).and_then(
                        |names| serde_json::to_string(&self.specs_of(&names)).map_err(|e| e.to_string()),
                    );
                let frame = Wire::encode_or(&answer, self.max_message_bytes, |e| {
                    Err(format!("the specs could not be sent: {e}"))
                });
                let _ = reply.send(frame);
                Ok(())
            }
            msg => self.run(msg, serving).await,
        }
    }
}

impl ToolServerActor {
    /// The specs of the named tools it serves (at most 64 names looked at).
    fn specs_of(&self, names: &[String]) -> Vec<ServedSpec> {
        names
            .iter()
            .take(64)
            .filter_map(|n| {
                let spec = self.tools.spec(n)?.clone();
                Some(ServedSpec { spec, needs_approval: self.tools.requires_approval(n) })
            })
            .collect()
    }

    async fn run(&self, msg: ToolServerMsg, serving: &mut Serving) -> Result<(), ActorProcessingErr> {
        // Waiting here for a free slot holds further calls in the mailbox: at most
        // MAX_CONCURRENT_TOOL_CALLS tasks. The semaphore is never closed.
        let Ok(permit) = serving.calls.clone().acquire_owned().await else { return Ok(()) };
        while serving.running.try_join_next().is_some() {}
        let tools = self.tools.clone();
        match msg {
            ToolServerMsg::Local { tool, args, reply } => {
                let span = tracing::Span::current();
                let deadline = reply.get_timeout();
                serving.running.spawn(
                    async move {
                        let result = run_call(&tools, &tool, args, deadline).await;
                        let _ = reply.send(result);
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            ToolServerMsg::Remote(RemoteToolMsg::Call(frame, reply)) => {
                let span = frame.span();
                let max = self.max_message_bytes;
                let deadline = reply.get_timeout();
                serving.running.spawn(
                    async move {
                        let (tool, result) = serve_remote(&tools, frame, deadline).await;
                        let encoded = Wire::encode_or(&result, max, |e| {
                            let source = Cause::from(format!("the result could not be sent: {e}"));
                            WireResult::Err(ToolError::BadResult { tool, source })
                        });
                        let _ = reply.send(encoded);
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            ToolServerMsg::LocalSpecs(..) | ToolServerMsg::Remote(RemoteToolMsg::Specs(..)) => {}
        }
        Ok(())
    }
}

/// Runs a call from another node: the tool's name (`?` if the frame did not decode) and its
/// result as JSON text.
/// Runs one call: its result, or an error if the tool panicked or outlived its caller's
/// timeout (a call nobody waits for any more does not keep its slot).
async fn run_call(
    tools: &Tools,
    tool: &str,
    args: Value,
    deadline: Option<Duration>,
) -> Result<Value, ToolError> {
    let call = catch_panic(tools.call(tool, args));
    let outcome = match deadline {
        Some(deadline) => tokio::time::timeout(deadline, call)
            .await
            .map_err(|_| format!("it ran past its caller's timeout ({deadline:?})")),
        None => Ok(call.await),
    };
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            Err(ToolError::Failed { tool: tool.to_string(), source: format!("it panicked: {panic}").into() })
        }
        Err(reason) => Err(ToolError::Failed { tool: tool.to_string(), source: reason.into() }),
    }
}

async fn serve_remote(
    tools: &Tools,
    frame: Wire<ToolCall>,
    deadline: Option<Duration>,
) -> (String, WireResult) {
    let call = match frame.into_inner() {
        Ok(call) => call,
        Err(e) => {
            let tool = "?".to_string();
            return (tool.clone(), Err(ToolError::BadArguments { tool, source: Cause::new(e) }));
        }
    };
    let result = match serde_json::from_str::<Value>(&call.args) {
        Ok(args) => run_call(tools, &call.tool, args, deadline).await.map(|v| v.to_string()),
        Err(e) => Err(ToolError::BadArguments { tool: call.tool.clone(), source: Cause::new(e) }),
    };
    (call.tool, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    #[derive(Deserialize, schemars::JsonSchema)]
    struct Add {
        a: i64,
        b: i64,
    }

    /// Delivers a call as one from another node arrives (through ractor's bytes).
    async fn through_bytes(server: &ActorRef<ToolServerMsg>, tool: &str, args: &str) -> WireResult {
        let (tx, rx) = ractor::concurrency::oneshot();
        let call = ToolCall { tool: tool.into(), args: args.into() };
        let msg = ToolServerMsg::Remote(RemoteToolMsg::Call(
            Wire::encode(&call, 1 << 20).unwrap(),
            RpcReplyPort::from((tx, WAIT)),
        ));
        let bytes = ractor::Message::serialize(msg).unwrap();
        server.send_message(<ToolServerMsg as ractor::Message>::deserialize(bytes).unwrap()).unwrap();
        rx.await.unwrap().into_inner().unwrap()
    }

    #[tokio::test]
    async fn calls_from_other_nodes_travel_as_json_text_and_errors_come_back_whole() {
        let registry = ServiceRegistry::start().await.unwrap();
        let mut tools = Tools::new();
        tools
            .register("add", "adds", |x: Add| async move { Ok::<_, foundation_core::BoxError>(x.a + x.b) })
            .unwrap();
        let server = ToolServer::new(tools).start(&registry).await.unwrap();
        let found = registry.discover(&Query::new().name(TOOL_SERVICE).capability(tool_capability("add")));
        let actor: ActorRef<ToolServerMsg> = found[0].actor.clone().into();

        assert_eq!(through_bytes(&actor, "add", r#"{"a": 2, "b": 3}"#).await, Ok("5".to_string()));
        let err = through_bytes(&actor, "add", r#"{"a": 2}"#).await.unwrap_err();
        let ToolError::BadArguments { tool, source } = &err else { panic!("{err:?}") };
        assert!(tool == "add" && source.to_string().contains('b'), "{err:?}");
        let err = through_bytes(&actor, "add", "not json").await.unwrap_err();
        assert!(matches!(&err, ToolError::BadArguments { tool, .. } if tool == "add"), "{err:?}");
        let err = through_bytes(&actor, "sub", "{}").await.unwrap_err();
        assert!(matches!(&err, ToolError::Unknown { name, known } if name == "sub" && known == &["add"]));

        // The specs, asked as another node asks: JSON text, schemas included.
        let (tx, rx) = ractor::concurrency::oneshot();
        let names = Wire::encode(&vec!["add".to_string(), "other".to_string()], 1 << 20).unwrap();
        let msg = ToolServerMsg::Remote(RemoteToolMsg::Specs(names, RpcReplyPort::from((tx, WAIT))));
        let bytes = ractor::Message::serialize(msg).unwrap();
        actor.send_message(<ToolServerMsg as ractor::Message>::deserialize(bytes).unwrap()).unwrap();
        let specs: Vec<ServedSpec> =
            serde_json::from_str(&rx.await.unwrap().into_inner().unwrap().unwrap()).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!((specs[0].spec.name.as_str(), specs[0].spec.description.as_str()), ("add", "adds"));
        assert_eq!(specs[0].spec.parameters["required"], serde_json::json!(["a", "b"]));
        assert!(!specs[0].needs_approval);
        // And as this process asks them, for the named tools only.
        let found = served_specs(&registry, &["add".to_string(), "sub".to_string()], WAIT).await;
        assert_eq!(found, specs);
        server.stop().await;
    }
}
