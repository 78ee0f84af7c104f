//! Replicated CRDT state: counters, sets, registers, maps and vector clocks that every node can
//! read and write at any time, and that converge on every node once they can talk.
//!
//! [`Replicator::start`] starts this node's replicator: a supervised actor in the pg
//! group `NAME@NODE` (scope [`SCOPE`]) and a [`Replicator`] handle. Start one on every node
//! (same [`ReplicatorConfig::name`]). Values are [`foundation_core::crdt`] types (the kinds of
//! [`CrdtValue`]) under string keys; a [`Key`] names a key and its type.
//!
//! - **Writes** ([`Replicator::update`]) change this node's replica at once, with this node's
//!   name as the replica id, and send the key's whole new value to every reachable replicator.
//!   With [`WriteConsistency::Majority`] the call waits until a majority of the cluster's known
//!   nodes (this one included, down ones included) have merged it; on timeout it returns
//!   [`CrdtError::MajorityWrite`] and **the write stays applied here** (it spreads by gossip
//!   when the others are reachable): a CRDT write cannot be taken back.
//! - **Reads** ([`Replicator::get`]) read this node's replica, or with
//!   [`ReadConsistency::Majority`] merge it with a majority's replicas first.
//! - **Anti-entropy gossip**: every [`gossip_interval`](ReplicatorConfig::gossip_interval) the
//!   replicator sends the next peer (round robin) the digests of the next range of its keys; the peer
//!   answers with the values that differ and asks for the ones it lacks. A write missed by a node
//!   (down, partitioned, just joined) reaches it within a few rounds of being reachable again,
//!   so **after a partition heals every node converges** to the merge of both sides' writes.
//!   Every message stays under [`max_message_bytes`](ReplicatorConfig::max_message_bytes) and
//!   the cluster's frame limit: digests are sent a range of keys at a time, values in several
//!   messages, and a peer's answer to a range carries at most one message's worth of values
//!   ([`max_digests_per_round`](ReplicatorConfig::max_digests_per_round) of them at most): it
//!   says where it stopped, and the next round with that peer starts there (so a restarted,
//!   empty node is filled a message per round and peer, never by a whole store at once).
//! - **Keys** are at most [`MAX_KEY_BYTES`] (1 KiB) long, and at most a quarter of a message's
//!   payload with a small `max_message_bytes`; a longer key is refused by `update`, `get` and
//!   `subscribe` ([`CrdtError::KeyTooLong`]).
//! - **Restarts**: a restarted node comes back empty under the same replica id (its name).
//!   Before its first write to a key, read the key with [`ReadConsistency::Majority`] (or wait
//!   for gossip), so that the write builds on this node's earlier contributions instead of being
//!   partly masked by them.
//! - **Subscriptions** ([`Replicator::subscribe`]) see a key's latest value after every change,
//!   local or merged; changes in quick succession may be coalesced into one.
//!
//! ```no_run
//! use foundation_cluster::Cluster;
//! use foundation_cluster::crdt_state::{Key, ReadConsistency, Replicator, ReplicatorConfig, WriteConsistency};
//! use foundation_core::config::ClusterConfig;
//! use foundation_core::crdt::{OrSet, PnCounter};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Cluster::start("n1", &ClusterConfig::default(), None).await?;
//! let replicator = Replicator::start(&node, ReplicatorConfig::default()).await?;
//!
//! let visits = Key::<PnCounter>::new("visits");
//! replicator.update(&visits, WriteConsistency::Local, |c, me| c.add(me, 1)).await?;
//! let online = Key::<OrSet<String>>::new("online");
//! replicator.update(&online, WriteConsistency::majority(), |s, me| s.add(me, "alice".into())).await?;
//!
//! let mut changes = replicator.subscribe(&visits)?;
//! let now = replicator.get(&visits, ReadConsistency::majority()).await?;
//! println!("visits: {}", now.map_or(0, |c| c.value()));
//! while let Some(counter) = changes.changed().await {
//!     println!("visits now {}", counter.value());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What is guaranteed, and what is not, is in `docs/semantics.md` ("Replicated CRDT state").

mod consistency;
mod replicator;
mod value;

use foundation_core::sync::MutexRecover;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::supervision::{ChildSpec, Strategy, Supervisor, SupervisorHandle, SupervisorSpec};
use foundation_actors::wire::{self, Wire};
use ractor::rpc::CallResult;
use tokio::sync::watch;

pub use consistency::{DEFAULT_MAJORITY_TIMEOUT, ReadConsistency, WriteConsistency};
pub use replicator::{MAX_KEY_BYTES, SCOPE};
pub use value::{CrdtKind, CrdtValue, Key, LwwMap, PnCounterMap, ReplicatedData};

use crate::Cluster;
use replicator::{Entries, ReadReply, ReadRequest, ReplicatorActor, ReplicatorMsg, Shared, Store};

/// Default [`ReplicatorConfig::name`].
pub const DEFAULT_REPLICATOR_NAME: &str = "crdt";
/// Default [`ReplicatorConfig::gossip_interval`].
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(500);
/// Default [`ReplicatorConfig::max_message_bytes`] (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Default [`ReplicatorConfig::max_digests_per_round`].
pub const DEFAULT_MAX_DIGESTS_PER_ROUND: usize = 2000;
/// Smallest [`ReplicatorConfig::gossip_interval`] accepted.
pub const MIN_GOSSIP_INTERVAL: Duration = Duration::from_millis(10);
/// Smallest [`ReplicatorConfig::max_message_bytes`] accepted (1 KiB, as `cluster.max_frame_bytes`).
pub const MIN_MESSAGE_BYTES: usize = 1024;

/// How a replicator runs. The same on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorConfig {
    /// Which replicated state this is: replicators with the same name on different nodes
    /// replicate to each other. Default [`DEFAULT_REPLICATOR_NAME`].
    pub name: String,
    /// Interval between anti-entropy gossip rounds (each with one peer, round robin; at least
    /// [`MIN_GOSSIP_INTERVAL`]). Default
    /// [`DEFAULT_GOSSIP_INTERVAL`] (500 ms): with N nodes, a node hears from every peer about
    /// every (N − 1) × 500 ms, so a healed partition or a rejoined node converges within a few
    /// seconds; writes themselves are sent to every reachable peer at once, without waiting.
    pub gossip_interval: Duration,
    /// Largest message the replicator sends, in bytes (at least [`MIN_MESSAGE_BYTES`]); the
    /// cluster's `max_frame_bytes` caps it.
    /// A key's value must fit: a write that would make it larger is refused
    /// ([`CrdtError::TooLarge`]). Default [`DEFAULT_MAX_MESSAGE_BYTES`] (1 MiB).
    pub max_message_bytes: usize,
    /// Most keys whose digests go in one gossip round; with more keys (or digests larger than
    /// `max_message_bytes`) each round with a peer offers the next range of keys, in order, and
    /// starts over after the last. Default [`DEFAULT_MAX_DIGESTS_PER_ROUND`]: up to 2000 keys
    /// are all compared in every round.
    pub max_digests_per_round: usize,
}

impl Default for ReplicatorConfig {
    fn default() -> Self {
        ReplicatorConfig {
            name: DEFAULT_REPLICATOR_NAME.to_string(),
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_digests_per_round: DEFAULT_MAX_DIGESTS_PER_ROUND,
        }
    }
}

/// Errors of replicated CRDT state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrdtError {
    /// The key holds another kind of CRDT on this node.
    #[error("key `{key}` holds a {found}, not a {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// The kind asked for.
        expected: CrdtKind,
        /// The kind it holds.
        found: CrdtKind,
    },
    /// A majority write was not confirmed in time. It is applied on this node and reaches the
    /// others by gossip when they are reachable.
    #[error(
        "majority write of `{key}` not confirmed: {acked} of the {needed} nodes needed ({known} known, {reachable} reachable) had it within {waited:?}; the write stays applied on this node and reaches the others by gossip"
    )]
    MajorityWrite {
        /// The key.
        key: String,
        /// Nodes that have the write (this one included).
        acked: usize,
        /// Nodes needed (a majority of `known`).
        needed: usize,
        /// Nodes the majority is counted over.
        known: usize,
        /// Nodes with a reachable replicator (this one included).
        reachable: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// A majority read did not hear from enough nodes in time. Nothing is returned; what did
    /// answer was merged into this node's replica.
    #[error(
        "majority read of `{key}` failed: {answered} of the {needed} nodes needed ({known} known, {reachable} reachable) answered within {waited:?}"
    )]
    MajorityRead {
        /// The key.
        key: String,
        /// Nodes that answered (this one included).
        answered: usize,
        /// Nodes needed.
        needed: usize,
        /// Nodes the majority is counted over.
        known: usize,
        /// Nodes with a reachable replicator (this one included).
        reachable: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// The key's value would exceed the message limit; the write was not applied.
    #[error(
        "value of `{key}` would take {size} bytes in a message, over the {max} bytes a value may take (max_message_bytes, capped by cluster.max_frame_bytes, less the envelope): not written"
    )]
    TooLarge {
        /// The key.
        key: String,
        /// The bytes it would take.
        size: usize,
        /// The bytes a value may take.
        max: usize,
    },
    /// The key's name is longer than the replicator accepts: [`MAX_KEY_BYTES`], or a quarter of
    /// the payload a message may carry if `max_message_bytes` (capped by
    /// `cluster.max_frame_bytes`) makes that less. Nothing was read or written.
    #[error(
        "key `{prefix}…` is {size} bytes long, over the {max}-byte limit for CRDT keys (MAX_KEY_BYTES, or a quarter of a message's payload with a small max_message_bytes): refused"
    )]
    KeyTooLong {
        /// The key's first characters (up to 32 bytes).
        prefix: String,
        /// The key's length in bytes.
        size: usize,
        /// The longest key accepted.
        max: usize,
    },
    /// The replicator could not start (already running here, or a config value out of range).
    #[error("replicator `{name}` cannot start: {source}")]
    Start {
        /// Its name.
        name: String,
        /// Why (the underlying error, or an explanation).
        #[source]
        source: foundation_core::Cause,
    },
}

/// This node's replica of a replicated state. Cheap to clone; [`stop`](Self::stop) stops it.
#[derive(Clone)]
pub struct Replicator {
    shared: Arc<Shared>,
    supervisor: Arc<Mutex<Option<SupervisorHandle>>>,
}

/// A key's value after each change (see [`Replicator::subscribe`]).
pub struct Subscription<T> {
    rx: watch::Receiver<Option<CrdtValue>>,
    kind: std::marker::PhantomData<fn() -> T>,
}

impl<T: ReplicatedData> Subscription<T> {
    /// Waits for the next change and returns the value then (changes that come faster than
    /// they are read are coalesced: the latest value is returned). `None` once the replicator
    /// stopped.
    pub async fn changed(&mut self) -> Option<T> {
        loop {
            self.rx.changed().await.ok()?;
            // A value of another kind (a type conflict resolved elsewhere) is not this key's.
            if let Some(value) = self.rx.borrow_and_update().as_ref().and_then(T::from_value) {
                return Some(value);
            }
        }
    }

    /// The value now, if the key has one.
    pub fn current(&self) -> Option<T> {
        self.rx.borrow().as_ref().and_then(T::from_value)
    }
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Replicator {
    /// Starts this node's replicator for `config.name` (see the [module docs](crate::crdt_state)).
    /// Call it on every node, with the same config. Fails if this node already runs one with
    /// that name.
    pub async fn start(cluster: &Cluster, config: ReplicatorConfig) -> Result<Replicator, CrdtError> {
        let name = config.name.clone();
        let error = |source: foundation_core::Cause| CrdtError::Start { name: name.clone(), source };
        if config.gossip_interval < MIN_GOSSIP_INTERVAL {
            let reason = format!(
                "gossip_interval {:?} is below the minimum {MIN_GOSSIP_INTERVAL:?}",
                config.gossip_interval
            );
            return Err(error(reason.into()));
        }
        if config.max_message_bytes < MIN_MESSAGE_BYTES {
            let reason = format!(
                "max_message_bytes {} is below the minimum {MIN_MESSAGE_BYTES}",
                config.max_message_bytes
            );
            return Err(error(reason.into()));
        }
        let shared = Arc::new(Shared {
            cluster: cluster.clone(),
            max_bytes: config.max_message_bytes.min(cluster.max_frame_bytes()),
            config,
            store: Mutex::new(Store::default()),
        });
        let running = ractor::pg::get_scoped_members(&SCOPE.to_string(), &shared.group());
        if running.iter().any(|c| c.get_id().is_local()) {
            return Err(error("this node already runs a replicator with this name".into()));
        }
        let args = shared.clone();
        let child = ChildSpec::new("replicator", move || (ReplicatorActor, args.clone()));
        let supervisor =
            Supervisor::start(format!("crdt:{name}"), SupervisorSpec::new(Strategy::OneForOne).child(child))
                .await
                .map_err(|e| error(foundation_core::Cause::new(e)))?;
        tracing::info!(replicator = %name, node = %cluster.name(), "CRDT replicator started");
        Ok(Replicator { shared, supervisor: Arc::new(Mutex::new(Some(supervisor))) })
    }
}

impl Replicator {
    /// The replicator's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// This node's replica id in the CRDTs (its node name), as given to `update`'s closure.
    pub fn replica_id(&self) -> &str {
        self.shared.node()
    }

    /// The other nodes whose replicator is reachable now.
    pub fn peers(&self) -> Vec<String> {
        self.shared.peers().into_iter().map(|(n, _)| n).collect()
    }

    /// How many nodes a majority is counted over now: this one, every other node seen that did
    /// not leave on purpose (down ones included), and seeds not reached yet.
    pub fn known_nodes(&self) -> usize {
        self.shared.known_nodes()
    }

    /// The keys this node holds, with their kinds.
    pub fn keys(&self) -> Vec<(String, CrdtKind)> {
        self.shared.store().keys()
    }

    /// The value of `key` on this node, whatever its kind.
    pub fn value(&self, key: &str) -> Option<CrdtValue> {
        self.shared.store().get(key).cloned()
    }

    /// Changes `key` with `change(value, replica_id)` (a default value if the key has none;
    /// `replica_id` is this node's name, to pass to the CRDT's operations) and sends the new
    /// value to the other nodes; returns it. With [`WriteConsistency::Majority`], waits until a
    /// majority of the known nodes have it, or fails with [`CrdtError::MajorityWrite`] (the
    /// write stays applied here). Fails without writing if the key holds another kind, if the
    /// value would be larger than the message limit, or if the key's name is too long
    /// ([`CrdtError::KeyTooLong`]).
    pub async fn update<T: ReplicatedData>(
        &self,
        key: &Key<T>,
        consistency: WriteConsistency,
        change: impl FnOnce(&mut T, &str),
    ) -> Result<T, CrdtError> {
        let shared = &self.shared;
        check_key(shared, key)?;
        let me = shared.node().to_string();
        let (value, message) = {
            let mut store = shared.store();
            let mut value = match store.get(key.name()) {
                None => T::default(),
                Some(v) => T::from_value(v).ok_or_else(|| wrong_type(key, v))?,
            };
            change(&mut value, &me);
            let new_value = value.clone().into_value();
            // Checked before applying: a value that cannot be gossiped is not written.
            shared.check_fits(key.name(), &new_value).map_err(|(size, max)| CrdtError::TooLarge {
                key: key.name().to_string(),
                size,
                max,
            })?;
            store.put(key.name(), new_value.clone());
            let entries = Entries { from: me.clone(), entries: vec![(key.name().to_string(), new_value)] };
            (value, entries)
        };
        let peers = shared.peers();
        // Encoded once for every peer (the size was checked above, so this does not fail in
        // practice; if it did, no peer is sent it and gossip carries the value later).
        let (targets, bytes) = match wire::encode(&message, shared.max_bytes) {
            Ok(bytes) => (&peers[..], bytes),
            Err(_) => (&[][..], Vec::new()),
        };
        let label = match consistency {
            WriteConsistency::Local => "local",
            WriteConsistency::Majority { .. } => "majority",
        };
        metrics::counter!("foundation_crdt_writes_total", "consistency" => label).increment(1);
        let timeout = match consistency {
            WriteConsistency::Local => {
                for (_, peer) in targets {
                    let _ = peer.cast(ReplicatorMsg::Update(Wire::from_encoded(&bytes)));
                }
                return Ok(value);
            }
            WriteConsistency::Majority { timeout } => timeout,
        };
        let known = shared.known_nodes();
        let needed = consistency::majority_of(known);
        let mut calls = tokio::task::JoinSet::new();
        for (_, peer) in targets {
            let wire = Wire::from_encoded(&bytes);
            let peer = peer.clone();
            calls.spawn(
                async move { peer.call(|reply| ReplicatorMsg::Write(wire, reply), Some(timeout)).await },
            );
        }
        let acked =
            gather(&mut calls, needed, timeout, |answer| matches!(answer, CallResult::Success(true))).await;
        if acked >= needed {
            return Ok(value);
        }
        metrics::counter!("foundation_crdt_consistency_failures_total", "op" => "write").increment(1);
        Err(CrdtError::MajorityWrite {
            key: key.name().to_string(),
            acked,
            needed,
            known,
            reachable: peers.len() + 1,
            waited: timeout,
        })
    }

    /// The value of `key` (`None` if no node this read heard from has written it). With
    /// [`ReadConsistency::Majority`], first merges the replicas of a majority of the known
    /// nodes into this node's, or fails with [`CrdtError::MajorityRead`].
    pub async fn get<T: ReplicatedData>(
        &self,
        key: &Key<T>,
        consistency: ReadConsistency,
    ) -> Result<Option<T>, CrdtError> {
        let shared = &self.shared;
        check_key(shared, key)?;
        if let ReadConsistency::Majority { timeout } = consistency {
            let known = shared.known_nodes();
            let needed = consistency::majority_of(known);
            let peers = shared.peers();
            let request = ReadRequest { from: shared.node().to_string(), key: key.name().to_string() };
            let mut calls = tokio::task::JoinSet::new();
            let (targets, bytes) = match wire::encode(&request, shared.max_bytes) {
                Ok(bytes) => (&peers[..], bytes),
                Err(_) => (&[][..], Vec::new()),
            };
            for (node, peer) in targets {
                let wire = Wire::from_encoded(&bytes);
                let (node, peer) = (node.clone(), peer.clone());
                let (shared, key) = (shared.clone(), key.name().to_string());
                calls.spawn(async move {
                    let answer = peer.call(|reply| ReplicatorMsg::Read(wire, reply), Some(timeout)).await?;
                    // Merged as answers come, so a failed read still leaves what it learnt.
                    Ok(match answer {
                        CallResult::Success(wire) => match wire.into_inner() {
                            Ok(ReadReply { value }) => {
                                if let Some(value) = value {
                                    shared.store().merge_in(&key, &value, &node);
                                }
                                CallResult::Success(true)
                            }
                            Err(_) => CallResult::Success(false),
                        },
                        CallResult::Timeout => CallResult::Timeout,
                        CallResult::SenderError => CallResult::SenderError,
                    })
                });
            }
            let answered =
                gather(&mut calls, needed, timeout, |a| matches!(a, CallResult::Success(true))).await;
            if answered < needed {
                metrics::counter!("foundation_crdt_consistency_failures_total", "op" => "read").increment(1);
                return Err(CrdtError::MajorityRead {
                    key: key.name().to_string(),
                    answered,
                    needed,
                    known,
                    reachable: peers.len() + 1,
                    waited: timeout,
                });
            }
        }
        match shared.store().get(key.name()) {
            None => Ok(None),
            Some(v) => T::from_value(v).map(Some).ok_or_else(|| wrong_type(key, v)),
        }
    }

    /// The value of `key` after each change from now on (the first [`changed`](Subscription::changed)
    /// returns at the next change; [`current`](Subscription::current) is the value now). Fails if
    /// the key holds another kind.
    pub fn subscribe<T: ReplicatedData>(&self, key: &Key<T>) -> Result<Subscription<T>, CrdtError> {
        check_key(&self.shared, key)?;
        let mut store = self.shared.store();
        if let Some(v) = store.get(key.name())
            && v.kind() != T::KIND
        {
            return Err(wrong_type(key, v));
        }
        Ok(Subscription { rx: store.watch(key.name()), kind: std::marker::PhantomData })
    }

    /// Stops this node's replicator (every clone of the handle); subscriptions end. The other
    /// nodes keep their replicas.
    pub async fn stop(&self) {
        let supervisor = self.supervisor.lock_or_recover().take();
        if let Some(supervisor) = supervisor {
            supervisor.stop().await;
        }
        self.shared.store().close_watchers();
    }
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator").field("name", &self.name()).field("node", &self.replica_id()).finish()
    }
}

/// Refuses a key longer than the replicator accepts ([`CrdtError::KeyTooLong`]).
fn check_key<T: ReplicatedData>(shared: &Shared, key: &Key<T>) -> Result<(), CrdtError> {
    shared.check_key(key.name()).map_err(|(size, max)| {
        let name = key.name();
        let cut = (0..=32.min(name.len())).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
        CrdtError::KeyTooLong { prefix: name[..cut].to_string(), size, max }
    })
}

fn wrong_type<T: ReplicatedData>(key: &Key<T>, found: &CrdtValue) -> CrdtError {
    CrdtError::WrongType { key: key.name().to_string(), expected: T::KIND, found: found.kind() }
}

/// Waits for answers until `needed - 1` of them pass `ok` (this node counts as one), all are
/// in, or `timeout` passes; the number of nodes that have it, this one included.
async fn gather<T: Send + 'static>(
    calls: &mut tokio::task::JoinSet<Result<CallResult<T>, ractor::MessagingErr<ReplicatorMsg>>>,
    needed: usize,
    timeout: Duration,
    ok: impl Fn(&CallResult<T>) -> bool,
) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut count = 1;
    while count < needed {
        match tokio::time::timeout_at(deadline, calls.join_next()).await {
            Ok(Some(Ok(Ok(answer)))) if ok(&answer) => count += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    count
}
