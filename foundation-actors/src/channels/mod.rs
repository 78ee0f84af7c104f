//! Channels: named publish/subscribe topics, as Phoenix.PubSub is to Elixir.
//!
//! - [`Channels::publish`] reaches the subscribers on this node; [`Channels::broadcast`] reaches
//!   the subscribers on every node, with one message per node (each node's relay fans out
//!   locally). On a node outside any cluster both reach the same subscribers.
//! - Every subscriber has its own bounded queue and overflow policy ([`SubscribeOptions`]):
//!   publishing never waits for a subscriber, and drops are counted per subscriber
//!   ([`Subscription::dropped`]) and per topic (`foundation_channel_dropped_total{topic}`; what
//!   reached a subscriber's queue: `foundation_channel_delivered_total{topic}`).
//! - Control traffic has its own lane: a subscriber's queue keeps control-lane messages apart
//!   and [`Subscription::recv`] returns them first, and each node has a separate relay per lane;
//!   a flood on a normal topic never delays a control message.
//! - Built-in topics: [`control`], [`events`] and [`telemetry`], all carrying [`SystemEvent`].
//! - A subscriber that goes away (its [`Subscription`] is dropped, for instance with the actor
//!   whose state held it) is removed at once.
//! - Across processes: a topic made [`Topic::cluster_wide`] (its type must be serde) reaches
//!   the subscribers of every node of a cluster; its message is encoded once per broadcast by
//!   the [`wire`] adapter, and sent once to each other node's relay. The built-in
//!   topics are cluster-wide. Within a process nothing is ever encoded.
//! - Membership is kept in `ractor::pg` (scope [`PG_SCOPE`], group [`pg_group`]): a node's relay
//!   is in a topic's group while the node has subscribers for it.
//!
//! ```
//! use foundation_actors::channels::{Channels, Topic};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let channels = Channels::start().await?;
//! let orders: Topic<String> = Topic::new("orders");
//! let mut sub = channels.subscribe(&orders)?;
//! assert_eq!(channels.publish(&orders, "order-1".to_string())?, 1);
//! assert_eq!(sub.recv().await?, "order-1");
//! # Ok::<(), foundation_actors::channels::ChannelError>(())
//! # }).unwrap();
//! ```

mod relay;
mod subscription;
mod topic;

use foundation_core::sync::RwLockRecover;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use ractor::{Actor, ActorCell, ActorRef};
use serde::{Deserialize, Serialize};

pub use relay::{PG_SCOPE, pg_group};
pub use subscription::{DEFAULT_CAPACITY, Overflow, SubscribeOptions, Subscription};
pub use topic::{Lane, Topic};

use crate::traced::Traced;
use crate::wire::{self, Wire, WireError};
use relay::{Decode, Envelope, Relay, RelayMsg};
use subscription::{Pushed, Queue};

/// Name of the built-in control topic (control lane).
pub const CONTROL: &str = "control";
/// Name of the built-in events topic.
pub const EVENTS: &str = "events";
/// Name of the built-in telemetry topic.
pub const TELEMETRY: &str = "telemetry";

/// The built-in control topic: node up/down, configuration changes, stop requests.
pub fn control() -> Topic<SystemEvent> {
    Topic::control(CONTROL).cluster_wide()
}

/// The built-in events topic: things that happened (a service registered, a run finished).
pub fn events() -> Topic<SystemEvent> {
    Topic::new(EVENTS).cluster_wide()
}

/// The built-in telemetry topic: progress and measurements, often at a high rate.
pub fn telemetry() -> Topic<SystemEvent> {
    Topic::new(TELEMETRY).cluster_wide()
}

/// The message of the built-in topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemEvent {
    /// What happened, e.g. `"node_down"`, `"progress"`.
    pub kind: String,
    /// Who says so: a node, actor or component name.
    pub source: String,
    /// Details.
    #[serde(with = "json_value")]
    pub data: serde_json::Value,
}

/// `serde_json::Value` in any format: as itself in human-readable ones (JSON, TOML), as JSON
/// text in binary ones such as the wire's bincode, which cannot decode a self-describing value.
mod json_value {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { value.serialize(s) } else { value.to_string().serialize(s) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        if d.is_human_readable() {
            serde_json::Value::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(serde::de::Error::custom)
        }
    }
}

impl SystemEvent {
    /// An event with no details.
    pub fn new(kind: impl Into<String>, source: impl Into<String>) -> Self {
        SystemEvent { kind: kind.into(), source: source.into(), data: serde_json::Value::Null }
    }

    /// Sets the details.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

/// What [`Channels::queued`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting in all subscriber queues.
    pub total: usize,
    /// Messages waiting in the fullest one.
    pub deepest: usize,
}

/// Errors of channels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The topic exists with another message type.
    #[error("topic `{topic}` carries {expected}, not {found}")]
    TypeMismatch {
        /// The topic.
        topic: String,
        /// Its message type.
        expected: &'static str,
        /// The type used.
        found: &'static str,
    },
    /// The topic exists on the other lane.
    #[error("topic `{topic}` is on the {expected:?} lane, not {found:?}")]
    LaneMismatch {
        /// The topic.
        topic: String,
        /// Its lane.
        expected: Lane,
        /// The lane used.
        found: Lane,
    },
    /// Capacity 0 was asked for.
    #[error("a subscription needs a capacity of at least 1")]
    ZeroCapacity,
    /// The subscriber fell behind with overflow policy `Disconnect`.
    #[error("subscriber disconnected after falling behind ({dropped} messages dropped)")]
    Disconnected {
        /// Messages dropped.
        dropped: u64,
    },
    /// Nodes in other processes subscribe to the topic, but it was not made cluster-wide.
    #[error(
        "topic `{topic}` has subscribers on {nodes} other node(s) but is local-only: declare it with `Topic::cluster_wide()` (its type must be serde)"
    )]
    NotClusterWide {
        /// The topic.
        topic: String,
        /// Relays in other processes subscribed to it.
        nodes: usize,
    },
    /// The message cannot cross nodes (too large for the frame limit, or not encodable).
    #[error("topic `{topic}`: {error}")]
    Wire {
        /// The topic.
        topic: String,
        /// Why.
        #[source]
        error: WireError,
    },
    /// The channels were shut down.
    #[error("channels are shut down")]
    Closed,
    /// The relay actors could not start.
    #[error("cannot start channel relays: {0}")]
    Start(#[source] foundation_core::Cause),
}

/// A node's channels. Cheap to clone; the relays stop when the last clone is dropped or on
/// [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct Channels {
    registry: Arc<Registry>,
}

impl Channels {
    /// Starts this node's channels: the per-lane relays and the built-in topics.
    pub async fn start() -> Result<Self, ChannelError> {
        let registry = Arc::new(Registry {
            topics: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            relays: RwLock::new(Vec::new()),
            max_message_bytes: AtomicUsize::new(DEFAULT_MAX_MESSAGE_BYTES),
        });
        let mut relays = Vec::new();
        for lane in [Lane::Control, Lane::Normal] {
            let (relay, _) = Actor::spawn(None, Relay, (Arc::downgrade(&registry), lane))
                .await
                .map_err(|e| ChannelError::Start(foundation_core::Cause::new(e)))?;
            relays.push((lane, relay));
        }
        *registry.relays.write_or_recover() = relays;
        for topic in [control(), events(), telemetry()] {
            registry.declare(&topic, true)?;
        }
        Ok(Channels { registry })
    }

    /// Subscribes to `topic` with the default [`SubscribeOptions`].
    pub fn subscribe<T: Clone + Send + Sync + 'static>(
        &self,
        topic: &Topic<T>,
    ) -> Result<Subscription<T>, ChannelError> {
        self.subscribe_with(topic, SubscribeOptions::default())
    }

    /// Subscribes to `topic` with the given queue bound and overflow policy.
    pub fn subscribe_with<T: Clone + Send + Sync + 'static>(
        &self,
        topic: &Topic<T>,
        options: SubscribeOptions,
    ) -> Result<Subscription<T>, ChannelError> {
        if options.capacity == 0 {
            return Err(ChannelError::ZeroCapacity);
        }
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue::new(id, options));
        self.registry.add(topic, queue.clone())?;
        Ok(Subscription::new(queue, Arc::downgrade(&self.registry), topic.shared_name()))
    }

    /// Delivers `message` to this node's subscribers of `topic`; returns how many were given it
    /// (queued, or queued after dropping an older message). Never waits.
    pub fn publish<T: Clone + Send + Sync + 'static>(
        &self,
        topic: &Topic<T>,
        message: T,
    ) -> Result<usize, ChannelError> {
        self.registry.check(topic)?;
        self.registry.publish(&topic.shared_name(), message)
    }

    /// Delivers `message` to the subscribers of `topic` on every node: this node's directly,
    /// each other node's through one message to its relay. Returns how many subscribers on this
    /// node were given it. Never waits.
    ///
    /// Nodes in other processes are reached only if the topic is
    /// [cluster-wide](Topic::cluster_wide): the message is encoded once, and refused before
    /// anything is delivered if it exceeds the frame limit
    /// ([`set_max_message_bytes`](Self::set_max_message_bytes)) or the topic is local-only.
    pub fn broadcast<T: Clone + Send + Sync + 'static>(
        &self,
        topic: &Topic<T>,
        message: T,
    ) -> Result<usize, ChannelError> {
        self.registry.check(topic)?;
        let name = topic.shared_name();
        let own: Vec<ActorCell> = self.registry.relay_cells();
        let others: Vec<ActorCell> = ractor::pg::get_scoped_members(&PG_SCOPE.to_string(), &pg_group(&name))
            .into_iter()
            .filter(|m| !own.iter().any(|c| c.get_id() == m.get_id()))
            .collect();
        let remote = others.iter().filter(|m| !m.get_id().is_local()).count();
        // Encoded once, before anything is delivered, so that a refused message reaches no one.
        let encoded = if remote == 0 {
            None
        } else {
            let codec = topic
                .codec()
                .ok_or_else(|| ChannelError::NotClusterWide { topic: name.to_string(), nodes: remote })?;
            let wire_error = |error| ChannelError::Wire { topic: name.to_string(), error };
            let envelope = Envelope {
                topic: name.to_string(),
                type_name: std::any::type_name::<T>().to_string(),
                payload: (codec.encode)(&message).map_err(wire_error)?,
            };
            let max = self.registry.max_message_bytes.load(Ordering::Relaxed);
            Some(wire::encode(&envelope, max).map_err(wire_error)?)
        };
        for member in others {
            let relay: ActorRef<RelayMsg> = member.into();
            let msg = match &encoded {
                Some(bytes) if !relay.get_id().is_local() => RelayMsg::Remote(Wire::from_encoded(bytes)),
                _ => RelayMsg::Deliver {
                    topic: name.clone(),
                    payload: Box::new(message.clone()),
                    deliver: deliver_erased::<T>,
                    parent: foundation_core::trace_context::current_sampled(),
                },
            };
            // A relay that just stopped (its node is leaving) is skipped, not an error.
            let _ = relay.cast(msg);
        }
        self.registry.publish(&name, message)
    }

    /// Sets the largest encoded broadcast sent to other processes (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]; the cluster layer sets it to `cluster.max_frame_bytes`).
    pub fn set_max_message_bytes(&self, max: usize) {
        self.registry.max_message_bytes.store(max, Ordering::Relaxed);
    }

    /// Subscribers of `topic` on this node.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        let topics = self.registry.topics.read_or_recover();
        topics.get(topic).map_or(0, |t| t.len)
    }

    /// Messages waiting in this node's subscriber queues (our bounded mailboxes): the total and
    /// the deepest single queue. A growing figure means subscribers fall behind.
    pub fn queued(&self) -> QueueDepth {
        let topics = self.registry.topics.read_or_recover();
        let (total, deepest) = topics
            .values()
            .map(|t| (t.depth)(t.queues.as_ref()))
            .fold((0, 0), |(total, max), (n, m)| (total + n, max.max(m)));
        QueueDepth { total, deepest }
    }

    /// Messages waiting per topic (topics with any waiting): the mailbox depth of each kind
    /// of subscriber, as far as a node can tell (ractor keeps an actor's mailbox length private).
    pub fn queued_by_topic(&self) -> std::collections::BTreeMap<String, QueueDepth> {
        let topics = self.registry.topics.read_or_recover();
        topics
            .iter()
            .map(|(name, t)| {
                let (total, deepest) = (t.depth)(t.queues.as_ref());
                (name.to_string(), QueueDepth { total, deepest })
            })
            .filter(|(_, d)| d.total > 0)
            .collect()
    }

    /// Topics that have subscribers on this node, and the built-in ones.
    pub fn topics(&self) -> Vec<String> {
        let topics = self.registry.topics.read_or_recover();
        let mut names: Vec<String> = topics.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    /// Stops the relays and closes every subscription (their `recv` returns `Closed` once their
    /// queue is empty).
    pub async fn shutdown(self) {
        self.registry.close();
        for cell in self.registry.relay_cells() {
            let _ = cell.stop_and_wait(None, None).await;
        }
    }
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").field("topics", &self.topics()).finish()
    }
}

fn deliver_erased<T: Clone + Send + Sync + 'static>(
    registry: &Registry,
    topic: &Arc<str>,
    payload: Box<dyn Any + Send>,
) -> Result<usize, ChannelError> {
    let message = payload.downcast::<T>().map_err(|_| ChannelError::TypeMismatch {
        topic: topic.to_string(),
        expected: "the topic's type",
        found: "another type",
    })?;
    registry.publish(topic, *message)
}

/// Decodes a cluster-wide topic's message from another process and publishes it here.
pub(crate) fn decode_erased<T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static>(
    registry: &Registry,
    topic: &Arc<str>,
    bytes: &[u8],
) -> Result<usize, ChannelError> {
    let message: T =
        wire::decode(bytes).map_err(|error| ChannelError::Wire { topic: topic.to_string(), error })?;
    registry.publish(topic, message)
}

/// The default of [`Channels::set_max_message_bytes`]: 16 MiB less ractor_cluster's framing, so
/// that what we send fits a default receiver's inbound limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = (16 << 20) - (64 << 10);

/// The topics of one node and their subscribers' queues.
pub(crate) struct Registry {
    topics: RwLock<HashMap<Arc<str>, TopicState>>,
    next_id: AtomicU64,
    relays: RwLock<Vec<(Lane, ActorRef<RelayMsg>)>>,
    max_message_bytes: AtomicUsize,
}

struct TopicState {
    lane: Lane,
    type_id: TypeId,
    type_name: &'static str,
    /// `Vec<Arc<Queue<T>>>` for the topic's `T`.
    queues: Box<dyn Any + Send + Sync>,
    len: usize,
    remove: fn(&mut (dyn Any + Send + Sync), u64) -> usize,
    /// Messages waiting in the topic's subscriber queues: (total, deepest queue).
    depth: fn(&(dyn Any + Send + Sync)) -> (usize, usize),
    close: fn(&(dyn Any + Send + Sync)),
    builtin: bool,
    /// Set once a subscriber uses the topic as cluster-wide: how frames from other processes
    /// become messages.
    decode: Option<Decode>,
    published: metrics::Counter,
    delivered: metrics::Counter,
    dropped: metrics::Counter,
}

impl TopicState {
    fn new<T: Clone + Send + Sync + 'static>(topic: &Topic<T>, builtin: bool) -> Self {
        let (name, lane) = (topic.name(), topic.lane());
        TopicState {
            decode: topic.codec().map(|c| c.decode),
            lane,
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            queues: Box::new(Vec::<Arc<Queue<T>>>::new()),
            len: 0,
            remove: |queues, id| {
                let queues = queues.downcast_mut::<Vec<Arc<Queue<T>>>>().map(|q| {
                    q.retain(|x| x.id != id);
                    q.len()
                });
                queues.unwrap_or(0)
            },
            depth: |queues| {
                let Some(q) = queues.downcast_ref::<Vec<Arc<Queue<T>>>>() else { return (0, 0) };
                q.iter().map(|x| x.len()).fold((0, 0), |(total, max), n| (total + n, max.max(n)))
            },
            close: |queues| {
                if let Some(q) = queues.downcast_ref::<Vec<Arc<Queue<T>>>>() {
                    q.iter().for_each(|x| Subscription::<T>::close_queue(x));
                }
            },
            builtin,
            published: metrics::counter!("foundation_channel_published_total", "topic" => foundation_core::telemetry::bounded_label("topic", name)),
            delivered: metrics::counter!("foundation_channel_delivered_total", "topic" => foundation_core::telemetry::bounded_label("topic", name)),
            dropped: metrics::counter!("foundation_channel_dropped_total", "topic" => foundation_core::telemetry::bounded_label("topic", name)),
        }
    }

    fn check<T: 'static>(&self, name: &str, lane: Lane) -> Result<(), ChannelError> {
        if self.type_id != TypeId::of::<T>() {
            return Err(ChannelError::TypeMismatch {
                topic: name.to_string(),
                expected: self.type_name,
                found: std::any::type_name::<T>(),
            });
        }
        if self.lane != lane {
            return Err(ChannelError::LaneMismatch {
                topic: name.to_string(),
                expected: self.lane,
                found: lane,
            });
        }
        Ok(())
    }
}

impl Registry {
    fn declare<T: Clone + Send + Sync + 'static>(
        &self,
        topic: &Topic<T>,
        builtin: bool,
    ) -> Result<(), ChannelError> {
        let mut topics = self.topics.write_or_recover();
        let state = topics.entry(topic.shared_name()).or_insert_with(|| TopicState::new::<T>(topic, builtin));
        state.check::<T>(topic.name(), topic.lane())
    }

    fn check<T: 'static>(&self, topic: &Topic<T>) -> Result<(), ChannelError> {
        let topics = self.topics.read_or_recover();
        match topics.get(topic.name()) {
            Some(state) => state.check::<T>(topic.name(), topic.lane()),
            None => Ok(()),
        }
    }

    pub(crate) fn add<T: Clone + Send + Sync + 'static>(
        &self,
        topic: &Topic<T>,
        queue: Arc<Queue<T>>,
    ) -> Result<(), ChannelError> {
        let mut topics = self.topics.write_or_recover();
        let state = topics.entry(topic.shared_name()).or_insert_with(|| TopicState::new::<T>(topic, false));
        state.check::<T>(topic.name(), topic.lane())?;
        if state.decode.is_none() {
            state.decode = topic.codec().map(|c| c.decode);
        }
        if let Some(queues) = state.queues.downcast_mut::<Vec<Arc<Queue<T>>>>() {
            queues.push(queue);
            state.len = queues.len();
        }
        if state.len == 1
            && let Some(relay) = self.relay(topic.lane())
        {
            ractor::pg::join_scoped(PG_SCOPE.to_string(), pg_group(topic.name()), vec![relay]);
        }
        Ok(())
    }

    pub(crate) fn remove(&self, topic: &str, id: u64) {
        let mut topics = self.topics.write_or_recover();
        let Some(state) = topics.get_mut(topic) else { return };
        let before = state.len;
        state.len = (state.remove)(state.queues.as_mut(), id);
        if before > 0 && state.len == 0 {
            let lane = state.lane;
            if !state.builtin {
                topics.remove(topic);
            }
            drop(topics);
            if let Some(relay) = self.relay(lane) {
                ractor::pg::leave_scoped(PG_SCOPE.to_string(), pg_group(topic), vec![relay]);
            }
        }
    }

    fn publish<T: Clone + Send + Sync + 'static>(
        &self,
        topic: &Arc<str>,
        message: T,
    ) -> Result<usize, ChannelError> {
        let mut disconnected = Vec::new();
        let delivered = {
            let topics = self.topics.read_or_recover();
            let Some(state) = topics.get(topic) else { return Ok(0) };
            let Some(queues) = state.queues.downcast_ref::<Vec<Arc<Queue<T>>>>() else {
                return Err(ChannelError::TypeMismatch {
                    topic: topic.to_string(),
                    expected: state.type_name,
                    found: std::any::type_name::<T>(),
                });
            };
            state.published.increment(1);
            let mut delivered = 0;
            // The publisher's span (for a broadcast from another node, the relay's span that
            // continues the sender's trace) is the parent of each subscriber's handling.
            let parent = foundation_core::trace_context::current_sampled();
            let mut message = Some(message);
            for (i, queue) in queues.iter().enumerate() {
                // The last subscriber takes the message itself: one clone fewer per publish.
                let m = if i + 1 == queues.len() { message.take() } else { message.clone() };
                let Some(m) = m else { break };
                match queue.push(state.lane, Traced { value: m, parent }) {
                    Pushed::Queued => delivered += 1,
                    Pushed::Dropped => {
                        state.dropped.increment(1);
                        // DropOldest still delivered this message; DropNewest did not.
                        delivered += usize::from(queue.keeps_newest());
                    }
                    Pushed::Disconnected => {
                        state.dropped.increment(1);
                        disconnected.push(queue.id);
                    }
                }
            }
            state.delivered.increment(delivered as u64);
            delivered
        };
        for id in disconnected {
            self.remove(topic, id);
        }
        Ok(delivered)
    }

    /// Publishes a broadcast from another process: checks that this node knows the topic as
    /// cluster-wide and with the same type, then decodes it.
    fn deliver_encoded(&self, envelope: &Envelope) -> Result<usize, ChannelError> {
        let (name, decode) = {
            let topics = self.topics.read_or_recover();
            // No subscribers here any more (the last one just left): nothing to do.
            let Some((name, state)) = topics.get_key_value(envelope.topic.as_str()) else { return Ok(0) };
            if state.type_name != envelope.type_name {
                return Err(ChannelError::TypeMismatch {
                    topic: envelope.topic.clone(),
                    expected: state.type_name,
                    found: "another type (from another node)",
                });
            }
            let Some(decode) = state.decode else {
                return Err(ChannelError::NotClusterWide { topic: envelope.topic.clone(), nodes: 1 });
            };
            (name.clone(), decode)
        };
        decode(self, &name, &envelope.payload)
    }

    fn relay(&self, lane: Lane) -> Option<ActorCell> {
        let relays = self.relays.read_or_recover();
        relays.iter().find(|(l, _)| *l == lane).map(|(_, r)| r.get_cell())
    }

    fn relay_cells(&self) -> Vec<ActorCell> {
        let relays = self.relays.read_or_recover();
        relays.iter().map(|(_, r)| r.get_cell()).collect()
    }

    fn close(&self) {
        let topics = self.topics.read_or_recover();
        for state in topics.values() {
            (state.close)(state.queues.as_ref());
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for cell in self.relay_cells() {
            cell.stop(None);
        }
    }
}
