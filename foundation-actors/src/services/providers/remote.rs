//! Models served to the whole cluster: a [`ModelServer`] is a small remotable actor holding
//! named models (a router, a provider, the simulated model), registered in the service registry
//! under [`MODEL_SERVICE`] with the capability [`model_capability`]`(name)` for each; a
//! [`RemoteModel`] on any node is a [`LanguageModel`] that calls one of them, so a node without
//! the provider's account (or its budget) uses the one that has it.
//!
//! **Whole answers** go in one call: the request as JSON text (it holds JSON schemas), the
//! answer or the [`LmError`] back in a [`Wire`] frame.
//!
//! **Streams are pulled.** Opening one starts, on the serving node, a pump that reads the
//! model's stream into a window of at most [`STREAM_WINDOW`] pieces; the caller asks for the
//! next pieces when its reader wants them (at most [`PULL_BATCH`] a time, under half the frame
//! limit; a long piece is split to an eighth of it, and the end travels alone). The window is the bound:
//! when it is full, the pump waits, so it stops reading the provider's HTTP stream and TCP slows
//! the provider down — a slow reader on another node back-pressures the provider, and nothing
//! grows. The whole answer at the end travels without its text and tool calls (the caller has
//! them from the pieces), so it fits a frame whatever its length.
//!
//! **Failure.** Dropping the caller's stream, or its failing on the caller's side, tells the
//! server to drop its own (the HTTP request is cancelled and the limiter settled with what was
//! used, as on one node); if that message is lost (the caller's node died), the server drops an
//! opened stream with no pull and no pull waiting for [`ModelServer::idle_timeout`] (default
//! [`DEFAULT_STREAM_IDLE`]; checked every quarter of it). A stream still opening is never
//! dropped as idle. If the serving node dies or
//! stops answering, the caller's stream fails with [`LmError::Transport`] naming the model
//! server; pieces already received stay received (a stream is not resumed elsewhere: the
//! provider would be asked, and would bill, twice). A server holds at most
//! [`MAX_OPEN_STREAMS`] open streams and makes [`MAX_CONCURRENT_CALLS`] whole answers at once;
//! more are refused with [`LmError::OverBudget`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use foundation_core::Cause;
use foundation_core::config::DEFAULT_MAX_FRAME_BYTES;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tracing::Instrument;

use super::completion::Completion;
use super::model::{BoxFuture, LanguageModel, LmError};
use super::request::ChatRequest;
use super::stream::{CompletionStream, StreamAssembler, StreamEvent, ToolCallDelta};
use crate::registry::{InstanceId, Query, ServiceRegistry};
use crate::supervision::{ChildSpec, Strategy, Supervisor, SupervisorExit, SupervisorHandle, SupervisorSpec};
use crate::wire::Wire;

/// The registry service model servers are registered under.
pub const MODEL_SERVICE: &str = "models";
/// Pieces a server reads ahead of its caller, per stream.
pub const STREAM_WINDOW: usize = 64;
/// The most pieces one pull returns.
pub const PULL_BATCH: usize = 32;
/// How long a server keeps a stream nobody pulls (default).
pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(30);
/// Streams one server holds at once.
pub const MAX_OPEN_STREAMS: usize = 256;
/// Whole answers one server makes at once; more are refused with [`LmError::OverBudget`].
pub const MAX_CONCURRENT_CALLS: usize = 64;
/// How long a pull waits on the server for a first piece before answering with none (the
/// caller asks again): well within the caller's call timeout.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// How long a caller waits for the server to answer (open, pull); a whole answer waits for
/// the caller's own timeout instead.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry capability of a model server that serves the model `name`: `model:<name>`.
pub fn model_capability(name: &str) -> String {
    format!("model:{name}")
}

/// A request for a model, as it travels.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ModelCall {
    model: String,
    /// The request as JSON text.
    request: String,
}

/// Pieces of a stream, as they travel: `end` once the stream has nothing more.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Pieces {
    events: Vec<Result<StreamEvent, LmError>>,
    end: bool,
}

#[derive(RactorClusterMessage)]
pub(crate) enum ModelServerMsg {
    #[rpc]
    Complete(Wire<ModelCall>, RpcReplyPort<Wire<Result<Completion, LmError>>>),
    #[rpc]
    Open(Wire<ModelCall>, RpcReplyPort<Wire<Result<u64, LmError>>>),
    #[rpc]
    Pull(Wire<u64>, RpcReplyPort<Wire<Pieces>>),
    Cancel(Wire<u64>),
    /// Drops streams nobody pulls (sent by the server to itself).
    Sweep(Wire<()>),
}

/// Models served to every node, as a supervised actor registered in the registry.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use foundation_actors::providers::*;
/// use foundation_actors::registry::ServiceRegistry;
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let registry = ServiceRegistry::start().await.unwrap();
/// let sim = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
/// let server = ModelServer::new().serve("sim", Arc::new(sim)).start(&registry).await.unwrap();
/// // On any node of the cluster (here the same one):
/// let model = RemoteModel::new(&registry, "sim");
/// let answer = model.stream(&ChatRequest::prompt("Hello")).await.unwrap().collect().await.unwrap();
/// assert!(answer.content.starts_with("Simulated answer"));
/// server.stop().await;
/// # });
/// ```
#[derive(Clone)]
pub struct ModelServer {
    models: BTreeMap<String, Arc<dyn LanguageModel>>,
    max_message_bytes: usize,
    idle: Duration,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServer").field("models", &self.models.keys().collect::<Vec<_>>()).finish()
    }
}

impl Default for ModelServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelServer {
    /// A server of no models yet, with the default frame limit and idle timeout.
    pub fn new() -> Self {
        ModelServer {
            models: BTreeMap::new(),
            max_message_bytes: DEFAULT_MAX_FRAME_BYTES,
            idle: DEFAULT_STREAM_IDLE,
        }
    }

    /// Serves `model` under `name` (a later model of the same name replaces it).
    pub fn serve(mut self, name: impl Into<String>, model: Arc<dyn LanguageModel>) -> Self {
        self.models.insert(name.into(), model);
        self
    }

    /// The largest frame it sends (default [`DEFAULT_MAX_FRAME_BYTES`]; set it to
    /// `cluster.max_frame_bytes`).
    pub fn max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max.max(4096);
        self
    }

    /// How long it keeps a stream nobody pulls (default [`DEFAULT_STREAM_IDLE`]).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle.max(Duration::from_millis(10));
        self
    }

    /// The server as a supervised child with this id (permanent); it registers in `registry` on
    /// every start.
    pub fn child_spec(
        &self,
        id: impl Into<String>,
        registry: &ServiceRegistry,
    ) -> (ChildSpec, ModelServerStats) {
        let stats = ModelServerStats::default();
        let actor = ServerActor { registry: registry.clone(), server: self.clone(), stats: stats.clone() };
        (ChildSpec::new(id, move || (actor.clone(), ())), stats)
    }

    /// Starts the server under a supervisor of its own, named `models`.
    pub async fn start(self, registry: &ServiceRegistry) -> Result<ModelServerHandle, LmError> {
        let (child, stats) = self.child_spec("models", registry);
        let spec = SupervisorSpec::new(Strategy::OneForOne).child(child);
        let supervisor = Supervisor::start(MODEL_SERVICE, spec).await.map_err(|e| LmError::Transport {
            provider: MODEL_SERVICE.to_string(),
            source: Cause::from(format!("the model server did not start: {e}")),
        })?;
        Ok(ModelServerHandle { supervisor, stats })
    }
}

/// What a model server has done, by its own count (shared by its restarts).
#[derive(Debug, Clone, Default)]
pub struct ModelServerStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    streams: AtomicU64,
    open: AtomicU64,
    cancelled: AtomicU64,
    expired: AtomicU64,
    refused: AtomicU64,
}

impl ModelServerStats {
    /// Whole answers asked for.
    pub fn calls(&self) -> u64 {
        self.0.calls.load(Ordering::Relaxed)
    }
    /// Streams opened.
    pub fn streams(&self) -> u64 {
        self.0.streams.load(Ordering::Relaxed)
    }
    /// Streams open now.
    pub fn open(&self) -> u64 {
        self.0.open.load(Ordering::Relaxed)
    }
    /// Streams their caller dropped before the end.
    pub fn cancelled(&self) -> u64 {
        self.0.cancelled.load(Ordering::Relaxed)
    }
    /// Streams dropped because nobody pulled them for the idle timeout.
    pub fn expired(&self) -> u64 {
        self.0.expired.load(Ordering::Relaxed)
    }
    /// Streams refused because [`MAX_OPEN_STREAMS`] were open.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }
}

/// A running model server (from [`ModelServer::start`]).
#[derive(Debug)]
pub struct ModelServerHandle {
    supervisor: SupervisorHandle,
    stats: ModelServerStats,
}

impl ModelServerHandle {
    /// Its counts.
    pub fn stats(&self) -> &ModelServerStats {
        &self.stats
    }

    /// Its supervisor.
    pub fn supervisor(&self) -> &SupervisorHandle {
        &self.supervisor
    }

    /// Stops the server (its registration and its streams go with it).
    pub async fn stop(self) -> SupervisorExit {
        self.supervisor.stop().await
    }
}

#[derive(Clone)]
struct ServerActor {
    registry: ServiceRegistry,
    server: ModelServer,
    stats: ModelServerStats,
}

/// What a stream's pump has read and its reader not yet pulled: the pieces, and the end held
/// back to travel alone.
struct Window {
    pieces: mpsc::Receiver<Result<StreamEvent, LmError>>,
    end: Option<Result<StreamEvent, LmError>>,
}

/// One stream being served: the window its pump fills, and its signs of life.
struct Slot {
    window: Arc<Mutex<Window>>,
    pump: tokio::task::JoinHandle<()>,
    /// The model accepted the request (set by the pump): until then the provider's own
    /// timeouts bound the stream, not the idle timeout.
    opened: Arc<AtomicBool>,
    /// Milliseconds since the server started of the last sign of life: the open resolving, a
    /// pull arriving or answered.
    active: Arc<AtomicU64>,
}

impl Drop for Slot {
    /// A stream leaves with its pump (which drops the model's stream: the call is cancelled),
    /// whatever removes it: a cancel, the sweep, the server stopping or being killed.
    fn drop(&mut self) {
        self.pump.abort();
    }
}

struct Serving {
    instance: InstanceId,
    streams: HashMap<u64, Slot>,
    running: tokio::task::JoinSet<()>,
    sweeper: tokio::task::JoinHandle<()>,
    /// Whole answers being made at once (at most [`MAX_CONCURRENT_CALLS`]).
    calls: Arc<Semaphore>,
    epoch: tokio::time::Instant,
}

impl Serving {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Drops the streams that are over (read to their end, or failed to open).
    fn drop_drained(&mut self) {
        self.streams.retain(|_, slot| !drained(slot));
    }
}

/// A stream whose pump is done and whose window is empty: nothing more will come.
fn drained(slot: &Slot) -> bool {
    slot.pump.is_finished() && slot.window.try_lock().is_ok_and(|w| w.pieces.is_empty() && w.end.is_none())
}

impl Actor for ServerActor {
    type Msg = ModelServerMsg;
    type State = Serving;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<ModelServerMsg>,
        _: (),
    ) -> Result<Serving, ActorProcessingErr> {
        let names: Vec<&String> = self.server.models.keys().collect();
        let instance = self.registry.register_service(
            MODEL_SERVICE,
            myself.get_cell(),
            names.iter().map(|n| model_capability(n)),
            [("models", names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(","))],
        )?;
        let every = (self.server.idle / 4).max(Duration::from_millis(5));
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Ok(frame) = Wire::encode(&(), 64) else { return };
                if myself.cast(ModelServerMsg::Sweep(frame)).is_err() {
                    return;
                }
            }
        });
        Ok(Serving {
            instance,
            streams: HashMap::new(),
            running: tokio::task::JoinSet::new(),
            sweeper,
            calls: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
            epoch: tokio::time::Instant::now(),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<ModelServerMsg>,
        serving: &mut Serving,
    ) -> Result<(), ActorProcessingErr> {
        let _ = self.registry.deregister(serving.instance);
        serving.sweeper.abort();
        serving.running.abort_all();
        serving.streams.clear();
        self.stats.0.open.store(0, Ordering::Relaxed);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ModelServerMsg>,
        msg: ModelServerMsg,
        serving: &mut Serving,
    ) -> Result<(), ActorProcessingErr> {
        while serving.running.try_join_next().is_some() {}
        let max = self.server.max_message_bytes;
        match msg {
            ModelServerMsg::Complete(frame, reply) => {
                self.stats.0.calls.fetch_add(1, Ordering::Relaxed);
                let span = frame.span();
                let found = match serving.calls.clone().try_acquire_owned() {
                    Ok(permit) => self.request(frame).map(|found| (found, permit)),
                    Err(_) => Err(LmError::OverBudget {
                        provider: MODEL_SERVICE.to_string(),
                        dimension: format!("whole answers ({MAX_CONCURRENT_CALLS} at once)"),
                        wait: Duration::ZERO,
                    }),
                };
                serving.running.spawn(
                    async move {
                        let result = match found {
                            Ok(((model, request), permit)) => {
                                let result = model.complete(&request).await;
                                drop(permit);
                                result
                            }
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(Wire::encode_or(&result, max, |e| Err(too_large(e))));
                    }
                    .instrument(span),
                );
            }
            ModelServerMsg::Open(frame, reply) => {
                if serving.streams.len() >= MAX_OPEN_STREAMS {
                    serving.drop_drained();
                }
                let opened = if serving.streams.len() >= MAX_OPEN_STREAMS {
                    self.stats.0.refused.fetch_add(1, Ordering::Relaxed);
                    Err(LmError::OverBudget {
                        provider: MODEL_SERVICE.to_string(),
                        dimension: format!("streams ({MAX_OPEN_STREAMS} open)"),
                        wait: Duration::ZERO,
                    })
                } else {
                    self.request(frame)
                };
                let (model, request) = match opened {
                    Ok(found) => found,
                    Err(e) => {
                        let _ = reply.send(Wire::encode_or(&Err(e), max, |e| Err(too_large(e))));
                        return Ok(());
                    }
                };
                let id = loop {
                    let id = foundation_core::random::next_u64();
                    if !serving.streams.contains_key(&id) {
                        break id;
                    }
                };
                let (tx, rx) = mpsc::channel(STREAM_WINDOW);
                let piece_bytes = max / 8;
                let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
                let opened = Arc::new(AtomicBool::new(false));
                let active = Arc::new(AtomicU64::new(serving.now_ms()));
                let (opened_flag, active_mark, epoch) = (opened.clone(), active.clone(), serving.epoch);
                let pump = tokio::spawn(async move {
                    let mut stream = match model.stream(&request).await {
                        Ok(stream) => {
                            active_mark.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                            opened_flag.store(true, Ordering::Relaxed);
                            let _ = opened_tx.send(Ok(()));
                            stream
                        }
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                            return;
                        }
                    };
                    // Dropping the stream (when the window's reader is gone) cancels it.
                    while let Some(event) = stream.next().await {
                        let last = !matches!(event, Ok(StreamEvent::Text(_) | StreamEvent::ToolCall(_)));
                        for piece in for_the_wire(event, piece_bytes) {
                            if tx.send(piece).await.is_err() {
                                return;
                            }
                        }
                        if last {
                            return;
                        }
                    }
                });
                self.stats.0.streams.fetch_add(1, Ordering::Relaxed);
                let window = Arc::new(Mutex::new(Window { pieces: rx, end: None }));
                serving.streams.insert(id, Slot { window, pump, opened, active });
                self.stats.0.open.store(serving.streams.len() as u64, Ordering::Relaxed);
                // The answer to `Open` waits for the model to accept the request (a 429 or an
                // unknown model fails the open, not the first pull). If the caller is gone by
                // then, the stream is cancelled at once rather than left to the idle timeout.
                serving.running.spawn(async move {
                    let result = match opened_rx.await {
                        Ok(Ok(())) => Ok(id),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(LmError::Transport {
                            provider: MODEL_SERVICE.to_string(),
                            source: "the model's stream stopped before it opened".into(),
                        }),
                    };
                    let opened = result.is_ok();
                    let sent = reply.send(Wire::encode_or(&result, max, |e| Err(too_large(e))));
                    if opened
                        && sent.is_err()
                        && let Ok(frame) = Wire::encode(&id, 64)
                    {
                        let _ = myself.cast(ModelServerMsg::Cancel(frame));
                    }
                });
            }
            ModelServerMsg::Pull(frame, reply) => {
                let now = serving.now_ms();
                let epoch = serving.epoch;
                let window = frame.into_inner().ok().and_then(|id| {
                    let slot = serving.streams.get(&id)?;
                    slot.active.store(now, Ordering::Relaxed);
                    Some((slot.window.clone(), slot.active.clone()))
                });
                serving.running.spawn(async move {
                    let pieces = match window {
                        Some((window, active)) => {
                            let pieces = pull(&window, max).await;
                            active.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                            pieces
                        }
                        None => Pieces {
                            events: vec![Err(LmError::Transport {
                                provider: MODEL_SERVICE.to_string(),
                                source: "the model server no longer has this stream (it was idle too long, or the server restarted)".into(),
                            })],
                            end: true,
                        },
                    };
                    let _ = reply.send(Wire::encode_or(&pieces, max, |e| Pieces { events: vec![Err(too_large(e))], end: true }));
                });
            }
            ModelServerMsg::Cancel(frame) => {
                if let Ok(id) = frame.into_inner()
                    && let Some(slot) = serving.streams.remove(&id)
                {
                    // A reader cancels only before the answer's end. Counted before the slot
                    // goes (dropping it aborts the pump).
                    self.stats.0.cancelled.fetch_add(1, Ordering::Relaxed);
                    self.stats.0.open.store(serving.streams.len() as u64, Ordering::Relaxed);
                    drop(slot);
                }
            }
            ModelServerMsg::Sweep(_) => {
                let now = serving.now_ms();
                let idle = self.server.idle.as_millis() as u64;
                let stats = &self.stats;
                serving.streams.retain(|_, slot| {
                    // Over (read to its end, or never opened): leaves quietly.
                    if drained(slot) {
                        return false;
                    }
                    // Still opening, or a pull waiting on its window right now: alive.
                    if !slot.opened.load(Ordering::Relaxed) || slot.window.try_lock().is_err() {
                        return true;
                    }
                    let quiet = now.saturating_sub(slot.active.load(Ordering::Relaxed));
                    if quiet > idle {
                        stats.0.expired.fetch_add(1, Ordering::Relaxed);
                        return false;
                    }
                    true
                });
                self.stats.0.open.store(serving.streams.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

impl ServerActor {
    /// The model and request a call names, or why not.
    fn request(&self, frame: Wire<ModelCall>) -> Result<(Arc<dyn LanguageModel>, ChatRequest), LmError> {
        let call = frame
            .into_inner()
            .map_err(|e| LmError::InvalidRequest { reason: format!("a call that does not decode: {e}") })?;
        let model = self
            .server
            .models
            .get(&call.model)
            .cloned()
            .ok_or_else(|| LmError::Unknown { what: "model".into(), name: call.model.clone() })?;
        let request: ChatRequest = serde_json::from_str(&call.request)
            .map_err(|e| LmError::InvalidRequest { reason: format!("a request that does not parse: {e}") })?;
        Ok((model, request))
    }
}

fn too_large(e: crate::wire::WireError) -> LmError {
    LmError::Transport {
        provider: MODEL_SERVICE.to_string(),
        source: Cause::from(format!("the answer could not be sent: {e}")),
    }
}

/// A stream's event as it travels: a long text or tool-call piece split so that each fits
/// `piece_bytes`; the whole answer without its text and tool calls (the caller rebuilds them).
fn for_the_wire(
    event: Result<StreamEvent, LmError>,
    piece_bytes: usize,
) -> Vec<Result<StreamEvent, LmError>> {
    let piece_bytes = piece_bytes.max(64);
    let split = |text: &str| -> Vec<String> {
        let mut parts = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + piece_bytes).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            if end == start {
                // A piece limit smaller than one character cannot happen (at least 64 bytes).
                end = text.len();
            }
            parts.push(text[start..end].to_string());
            start = end;
        }
        parts
    };
    match event {
        Ok(StreamEvent::Text(text)) if text.len() > piece_bytes => {
            split(&text).into_iter().map(|t| Ok(StreamEvent::Text(t))).collect()
        }
        Ok(StreamEvent::ToolCall(delta)) if delta.arguments.len() > piece_bytes => {
            let mut out = Vec::new();
            for (i, part) in split(&delta.arguments).into_iter().enumerate() {
                let first = i == 0;
                out.push(Ok(StreamEvent::ToolCall(ToolCallDelta {
                    index: delta.index,
                    id: if first { delta.id.clone() } else { None },
                    name: if first { delta.name.clone() } else { None },
                    arguments: part,
                })));
            }
            out
        }
        Ok(StreamEvent::Done(mut completion)) => {
            completion.content.clear();
            completion.tool_calls.clear();
            vec![Ok(StreamEvent::Done(completion))]
        }
        other => vec![other],
    }
}

/// The next pieces of a stream: waits up to [`PULL_WAIT`] for one, then takes what is there, up
/// to [`PULL_BATCH`] pieces and a quarter of the frame limit (pieces are at most an eighth of it,
/// so a batch stays under half of it). The end (the whole answer, or an error) travels alone,
/// so a large one cannot cost the pieces before it.
async fn pull(window: &Mutex<Window>, max: usize) -> Pieces {
    let mut window = window.lock().await;
    let mut events = Vec::new();
    let first = match window.end.take() {
        Some(end) => end,
        None => match tokio::time::timeout(PULL_WAIT, window.pieces.recv()).await {
            Err(_) => return Pieces { events, end: false },
            Ok(None) => return Pieces { events, end: true },
            Ok(Some(event)) => event,
        },
    };
    let is_piece =
        |e: &Result<StreamEvent, LmError>| matches!(e, Ok(StreamEvent::Text(_) | StreamEvent::ToolCall(_)));
    if !is_piece(&first) {
        return Pieces { events: vec![first], end: true };
    }
    let mut bytes = piece_bytes(&first);
    events.push(first);
    let mut end = false;
    while events.len() < PULL_BATCH && bytes < max / 4 {
        match window.pieces.try_recv() {
            Ok(event) if is_piece(&event) => {
                bytes += piece_bytes(&event);
                events.push(event);
            }
            // The end waits for the next pull, alone.
            Ok(last) => {
                window.end = Some(last);
                break;
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                end = true;
                break;
            }
        }
    }
    Pieces { events, end }
}

fn piece_bytes(event: &Result<StreamEvent, LmError>) -> usize {
    match event {
        Ok(StreamEvent::Text(t)) => t.len() + 16,
        Ok(StreamEvent::ToolCall(d)) => {
            d.arguments.len()
                + d.id.as_ref().map_or(0, String::len)
                + d.name.as_ref().map_or(0, String::len)
                + 32
        }
        _ => 0,
    }
}

/// A model served by a [`ModelServer`] on any node (this one included), found in the registry
/// by name: a [`LanguageModel`] like any other. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RemoteModel {
    registry: ServiceRegistry,
    name: String,
    timeout: Duration,
    max_message_bytes: usize,
}

impl RemoteModel {
    /// The model served as `name`.
    pub fn new(registry: &ServiceRegistry, name: impl Into<String>) -> Self {
        RemoteModel {
            registry: registry.clone(),
            name: name.into(),
            timeout: Duration::from_secs(120),
            max_message_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// The longest wait for a whole answer (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest request it sends (default [`DEFAULT_MAX_FRAME_BYTES`]).
    pub fn max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// A live server of the model, or why there is none.
    fn server(&self) -> Result<ActorRef<ModelServerMsg>, LmError> {
        let mut found: Vec<_> = self
            .registry
            .discover(&Query::new().name(MODEL_SERVICE).capability(model_capability(&self.name)))
            .into_iter()
            .filter(|i| i.healthy)
            .collect();
        if found.is_empty() {
            return Err(LmError::Unknown { what: "model".into(), name: self.name.clone() });
        }
        // Servers in turn (any one can answer).
        let server = found.swap_remove(foundation_core::random::below(found.len()));
        Ok(server.actor.into())
    }

    fn call_frame(&self, request: &ChatRequest) -> Result<Wire<ModelCall>, LmError> {
        request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
        let text =
            serde_json::to_string(request).map_err(|e| LmError::InvalidRequest { reason: e.to_string() })?;
        Wire::encode(&ModelCall { model: self.name.clone(), request: text }, self.max_message_bytes)
            .map_err(|e| LmError::InvalidRequest { reason: e.to_string() })
    }

    async fn complete_remote(&self, request: &ChatRequest) -> Result<Completion, LmError> {
        let frame = self.call_frame(request)?;
        let server = self.server()?;
        let node = server.get_id().node();
        let answer = server.call(|reply| ModelServerMsg::Complete(frame, reply), Some(self.timeout)).await;
        answered(answer, node, self.timeout)?.into_inner().map_err(|e| unreachable(node, e.to_string()))?
    }

    async fn open_remote(&self, request: &ChatRequest) -> Result<CompletionStream, LmError> {
        let frame = self.call_frame(request)?;
        let server = self.server()?;
        let node = server.get_id().node();
        let wait = CALL_TIMEOUT.max(self.timeout);
        let opened = server.call(|reply| ModelServerMsg::Open(frame, reply), Some(wait)).await;
        let id =
            answered(opened, node, wait)?.into_inner().map_err(|e| unreachable(node, e.to_string()))??;
        let reader = Reader {
            server,
            id,
            node,
            provider: format!("{MODEL_SERVICE}:{}", self.name),
            buffered: std::collections::VecDeque::new(),
            assembler: StreamAssembler::new(),
            finished: false,
            server_ended: false,
        };
        let provider = format!("{MODEL_SERVICE}:{}", self.name);
        Ok(CompletionStream::new(provider, futures::stream::unfold(reader, Reader::step)))
    }
}

impl LanguageModel for RemoteModel {
    fn model(&self) -> &str {
        &self.name
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(self.complete_remote(request))
    }

    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
        Box::pin(self.open_remote(request))
    }
}

fn unreachable(node: u64, reason: String) -> LmError {
    LmError::Transport { provider: format!("{MODEL_SERVICE} on node {node}"), source: Cause::from(reason) }
}

fn answered<T, E>(result: Result<CallResult<T>, E>, node: u64, timeout: Duration) -> Result<T, LmError> {
    match result {
        Ok(CallResult::Success(r)) => Ok(r),
        Ok(CallResult::Timeout) => Err(unreachable(node, format!("no answer within {timeout:?}"))),
        Ok(CallResult::SenderError) => Err(unreachable(node, "the server stopped before answering".into())),
        Err(_) => Err(unreachable(node, "the server is not running".into())),
    }
}

/// The caller's side of a stream: pulls when its buffer is empty, rebuilds the whole answer,
/// and cancels the server's stream unless the server said it is over (its end, an error, or no
/// such stream) — also when the reader fails on its own side (a pull lost, a piece refused).
struct Reader {
    server: ActorRef<ModelServerMsg>,
    id: u64,
    node: u64,
    /// `models:NAME`, the provider named in errors made on this side.
    provider: String,
    buffered: std::collections::VecDeque<Result<StreamEvent, LmError>>,
    assembler: StreamAssembler,
    /// Nothing more is given out.
    finished: bool,
    /// The server has nothing more for this stream (no cancel is needed).
    server_ended: bool,
}

impl Reader {
    fn malformed(&self, reason: String) -> LmError {
        LmError::Malformed { provider: self.provider.clone(), source: Cause::from(reason) }
    }

    /// Fails the stream on this side: the server's stream is cancelled now.
    fn fail(mut self, e: LmError) -> Option<(Result<StreamEvent, LmError>, Self)> {
        self.finished = true;
        self.cancel();
        Some((Err(e), self))
    }

    fn cancel(&mut self) {
        if !std::mem::replace(&mut self.server_ended, true)
            && let Ok(frame) = Wire::encode(&self.id, 64)
        {
            // Best effort: if it is lost, the server drops the stream when it goes idle.
            let _ = self.server.cast(ModelServerMsg::Cancel(frame));
        }
    }

    async fn step(mut self) -> Option<(Result<StreamEvent, LmError>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(event) = self.buffered.pop_front() {
                let event = match event {
                    Ok(StreamEvent::Done(completion)) => {
                        self.finished = true;
                        let assembler = std::mem::take(&mut self.assembler);
                        match assembler.finish(
                            completion.finish_reason.clone(),
                            completion.usage,
                            completion.model.clone(),
                            completion.provider.clone(),
                            completion.rate_headers.clone(),
                        ) {
                            Ok(mut whole) => {
                                whole.cached = completion.cached;
                                Ok(StreamEvent::Done(whole))
                            }
                            Err(e) => Err(self.malformed(e)),
                        }
                    }
                    Ok(piece) => match self.assembler.push(&piece) {
                        Ok(()) => Ok(piece),
                        Err(e) => {
                            let e = self.malformed(e);
                            return self.fail(e);
                        }
                    },
                    Err(e) => {
                        self.finished = true;
                        Err(e)
                    }
                };
                return Some((event, self));
            }
            let Ok(frame) = Wire::encode(&self.id, 64) else { return None };
            let timeout = PULL_WAIT + CALL_TIMEOUT;
            let pulled = self.server.call(|reply| ModelServerMsg::Pull(frame, reply), Some(timeout)).await;
            let pieces = match answered(pulled, self.node, timeout)
                .and_then(|w| w.into_inner().map_err(|e| unreachable(self.node, e.to_string())))
            {
                Ok(pieces) => pieces,
                Err(e) => return self.fail(e),
            };
            if pieces.end
                || pieces
                    .events
                    .iter()
                    .any(|e| !matches!(e, Ok(StreamEvent::Text(_) | StreamEvent::ToolCall(_))))
            {
                self.server_ended = true;
            }
            if pieces.events.is_empty() && pieces.end {
                self.finished = true;
                let e = unreachable(self.node, "the stream ended before the answer's end".into());
                return Some((Err(e), self));
            }
            self.buffered.extend(pieces.events);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{FinishReason, ToolCall, Usage};

    /// Every piece a stream sends survives the wire's binary encoding (a field skipped when
    /// empty, or a JSON value, would not).
    #[test]
    fn pieces_and_errors_survive_the_wire() {
        let mut done = Completion::from_text(
            "",
            Usage { prompt_tokens: 3, completion_tokens: 4, cached_prompt_tokens: 1 },
            "m",
            "p",
        );
        done.finish_reason = FinishReason::Other("pause_turn".into());
        done.tool_calls.push(ToolCall { id: "a".into(), name: "f".into(), arguments: "{}".into() });
        let pieces = Pieces {
            events: vec![
                Ok(StreamEvent::Text("héllo".into())),
                Ok(StreamEvent::ToolCall(ToolCallDelta {
                    index: 0,
                    id: None,
                    name: Some("f".into()),
                    arguments: "{".into(),
                })),
                Ok(StreamEvent::Done(done)),
                Err(LmError::RateLimited {
                    provider: "p".into(),
                    retry_after: Some(Duration::from_millis(5)),
                    rate_headers: vec![("a".into(), "b".into())],
                }),
                Err(LmError::Exhausted {
                    tried: vec![LmError::Unknown { what: "model".into(), name: "x".into() }],
                }),
            ],
            end: true,
        };
        let back = Wire::encode(&pieces, 1 << 20).unwrap().into_inner().unwrap();
        assert_eq!(back.events, pieces.events);
        assert!(back.end);
        // A long piece is split to fit, at character boundaries, and the whole answer travels
        // without its text.
        let long = "é".repeat(1000);
        let parts = for_the_wire(Ok(StreamEvent::Text(long.clone())), 100);
        assert!(parts.len() > 10);
        let joined: String = parts
            .iter()
            .map(|p| match p {
                Ok(StreamEvent::Text(t)) => t.as_str(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(joined, long);
        let whole = Completion::from_text(long, Usage::default(), "m", "p");
        match &for_the_wire(Ok(StreamEvent::Done(whole)), 100)[..] {
            [Ok(StreamEvent::Done(c))] => assert!(c.content.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
