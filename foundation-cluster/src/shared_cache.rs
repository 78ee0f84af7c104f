//! The cluster cache tier (L2): one cache shared by the nodes, each key held by one owner node
//! chosen by consistent hashing.
//!
//! [`SharedCacheHandle::start`] starts this node's part of the cache `NAME`: a supervised,
//! remotable store actor (a [replicated actor](crate::per_node) named `cache:NAME`) that joins
//! the pg group `NAME@NODE` in scope [`SCOPE`]. Start it with the same name and config on every
//! node that shares the cache.
//!
//! - **Owner.** A key's owner is found on a consistent-hash ring (`hashring` with the workspace's
//!   stable hash, `foundation_core::hash`: the same on every node and in every process, never a
//!   per-process random seed) of the
//!   nodes whose part of the cache is visible now (this node and every connected node running
//!   it), each placed [`VIRTUAL_NODES`] times. Every node that sees the same nodes picks the
//!   same owner; when a node joins or goes, only the keys on its arcs move (about 1/N of them).
//! - **Get and put** go to the owner: directly when it is this node (no serialization), else
//!   by a call with a timeout ([`SharedCacheConfig::call_timeout`]). Values are bytes
//!   (or serde values as JSON, [`SharedCacheHandle::put_json`]); larger than
//!   [`SharedCacheConfig::max_value_bytes`] they are refused before sending.
//! - **Owner lost.** Its entries are lost with it (the cache is a cache: nothing is replicated).
//!   Until the failure detector closes its connection, calls to it time out and a get returns
//!   a miss ([`SharedCacheHandle::get`]; [`SharedCacheHandle::try_get`] says why), counted in
//!   `foundation_cache_unreachable_total`; once it is gone from pg its keys belong to the
//!   survivors, so puts go to the new owner.
//! - **Optional L1 in front** ([`SharedCacheConfig::near`]): a hit there never asks the owner,
//!   so it may return a value up to the near cache's TTL older than the owner's (a put on another
//!   node does not invalidate it). A node's own puts update its near cache once the owner has
//!   stored the value (a put that fails leaves the near cache as it was).
//! - **Stopped.** After [`SharedCacheHandle::stop`] this node is no longer one of the
//!   [`nodes`](SharedCacheHandle::nodes); its gets and puts go to the other nodes, and fail
//!   with [`SharedCacheError::Unreachable`] when there are none.
//!
//! Counted per tier (labels `cache`, `tier`): `l1` (the near cache), `l2` (lookups that asked the
//! owner, counted on the asking node; an unreachable owner counts as a miss) and `l2_owner`
//! (lookups served by this node's part, counted on the owner).
//!
//! ```no_run
//! use foundation_cluster::shared_cache::{SharedCacheConfig, SharedCacheHandle};
//! use foundation_cluster::Cluster;
//! use foundation_core::cache::EntryOptions;
//!
//! # async fn run(cluster: Cluster) -> Result<(), foundation_cluster::shared_cache::SharedCacheError> {
//! let cache = SharedCacheHandle::start(&cluster, "answers", SharedCacheConfig::default()).await?;
//! let owner = cache.put("q:42", b"Paris".to_vec(), EntryOptions::cost(0.01)).await?;
//! println!("stored on {owner}");
//! assert_eq!(cache.get("q:42").await.as_deref(), Some(&b"Paris"[..]));
//! # Ok(())
//! # }
//! ```

use foundation_core::sync::MutexRecover;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::supervision::ChildSpec;
use foundation_actors::wire::Wire;
use foundation_core::Cause;
use foundation_core::cache::{CacheCounters, CacheStats, EntryOptions, LocalCache, LocalCacheConfig};
use hashring::HashRing;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Cluster, PerNodeHandle};

/// The pg scope of the shared caches' store actors (groups `NAME@NODE`).
pub const SCOPE: &str = foundation_actors::pg_scopes::SHARED_CACHE;
/// Default [`SharedCacheConfig::call_timeout`]: 500 ms.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Default [`SharedCacheConfig::max_value_bytes`]: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
/// Default [`SharedCacheConfig::max_bytes`]: 64 MiB per node.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default [`SharedCacheConfig::time_to_live`]: 5 minutes.
pub const DEFAULT_TIME_TO_LIVE: Duration = Duration::from_secs(300);
/// Keys longer than this are refused (4 KiB).
pub const MAX_KEY_BYTES: usize = 4096;
/// Points per node on the hash ring: with 64, each of 3 nodes owns close to a third of the keys.
pub const VIRTUAL_NODES: usize = 64;
/// Room for the message around a value (key, cost, TTL, encoding).
const ENVELOPE_BYTES: usize = MAX_KEY_BYTES + 256;

/// How a shared cache holds and reaches its entries. Use the same on every node.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedCacheConfig {
    /// The most this node's part holds, in bytes (keys and values). Default
    /// [`DEFAULT_MAX_BYTES`] (64 MiB): the cache holds at most 64 MiB × nodes; beyond it the
    /// entries least likely to be used again are evicted.
    pub max_bytes: u64,
    /// How long an entry lives after it is written (a put may ask for less). Default
    /// [`DEFAULT_TIME_TO_LIVE`] (5 min). `None`: until evicted.
    pub time_to_live: Option<Duration>,
    /// The largest value accepted, in bytes. Default [`DEFAULT_MAX_VALUE_BYTES`] (1 MiB). Keep it
    /// below `cluster.max_frame_bytes` (8 MiB by default) minus a few KiB: a larger message would
    /// be refused by the transport.
    pub max_value_bytes: usize,
    /// How long a get or put waits for a remote owner. Default [`DEFAULT_CALL_TIMEOUT`]
    /// (500 ms): with a frozen owner, a get is a miss after 500 ms until the failure detector
    /// removes the owner (about 2 s with the default heartbeat settings).
    pub call_timeout: Duration,
    /// An L1 cache on this node in front of the cluster tier, weighed in bytes
    /// (`max_capacity` = bytes). Default `None`. With one, a value may be served up to its
    /// `time_to_live` after another node replaced it: keep that short.
    pub near: Option<LocalCacheConfig>,
}

impl Default for SharedCacheConfig {
    fn default() -> Self {
        SharedCacheConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            time_to_live: Some(DEFAULT_TIME_TO_LIVE),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            near: None,
        }
    }
}

/// Errors of the shared cache.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SharedCacheError {
    /// This node's part could not start.
    #[error("shared cache `{cache}` cannot start on this node: {source}")]
    Start {
        /// The cache.
        cache: String,
        /// Why (the underlying error, or an explanation).
        #[source]
        source: Cause,
    },
    /// The value is larger than [`SharedCacheConfig::max_value_bytes`].
    #[error("value for `{key}` is {size} bytes, over the shared cache's {max}-byte limit (max_value_bytes)")]
    TooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("a shared cache key of {size} bytes is over the {max}-byte limit")]
    KeyTooLong {
        /// The key's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The owner of the key did not answer (lost, frozen, or its part is not running).
    #[error("owner `{owner}` of `{key}` is unreachable: {source}")]
    Unreachable {
        /// The key.
        key: String,
        /// The owner node.
        owner: String,
        /// What happened (the underlying error, or an explanation).
        #[source]
        source: Cause,
    },
    /// A value could not be encoded or decoded.
    #[error("shared cache value for `{key}`: {source}")]
    Codec {
        /// The key.
        key: String,
        /// What went wrong (the underlying error).
        #[source]
        source: Cause,
    },
}

/// A value found in the shared cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The value.
    pub value: Vec<u8>,
    /// The cost recorded with it (what this hit saved).
    pub saved_cost: f64,
    /// The node that owns the key.
    pub owner: String,
    /// Whether it came from this node's near cache (without asking the owner).
    pub near: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct GetRequest {
    key: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct GetReply {
    found: Option<(Vec<u8>, f64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PutRequest {
    key: String,
    value: Vec<u8>,
    cost: f64,
    ttl_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PutReply {
    stored: bool,
}

/// Messages of a node's store actor (remotable: the other nodes call it).
#[derive(RactorClusterMessage)]
enum StoreMsg {
    #[rpc]
    Get(Wire<GetRequest>, RpcReplyPort<Wire<GetReply>>),
    #[rpc]
    Put(Wire<PutRequest>, RpcReplyPort<Wire<PutReply>>),
}

/// This node's part of a shared cache, reachable from the other nodes. Its entries outlive the
/// actor: a restarted store serves the same entries.
#[derive(Clone)]
struct Store {
    group: String,
    entries: LocalCache<Vec<u8>>,
    max_message: usize,
}

impl Actor for Store {
    type Msg = StoreMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<StoreMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), self.group.clone(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<StoreMsg>,
        msg: StoreMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        // A request that does not decode was logged and counted by the wire adapter; the caller
        // gets no answer and times out (a miss), and this actor keeps serving.
        match msg {
            StoreMsg::Get(request, reply) => {
                let Ok(request) = request.into_inner() else { return Ok(()) };
                let found = self.entries.get_entry(&request.key).await.map(|e| (e.value, e.cost));
                match Wire::encode(&GetReply { found }, self.max_message) {
                    Ok(answer) => drop(reply.send(answer)),
                    Err(e) => {
                        tracing::error!(group = %self.group, error = %e, "a cache reply did not encode")
                    }
                }
            }
            StoreMsg::Put(request, reply) => {
                let Ok(request) = request.into_inner() else { return Ok(()) };
                let options =
                    EntryOptions { cost: request.cost, ttl: request.ttl_ms.map(Duration::from_millis) };
                self.entries.insert_with(request.key, request.value, options).await;
                if let Ok(answer) = Wire::encode(&PutReply { stored: true }, self.max_message) {
                    let _ = reply.send(answer);
                }
            }
        }
        Ok(())
    }
}

/// A point on the ring: hashed by its label only (bytes, so the same on every architecture).
#[derive(Debug, Clone, PartialEq, Eq)]
struct VirtualNode {
    label: String,
    node: String,
}

impl Hash for VirtualNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.label.as_bytes());
    }
}

/// The ring for one set of nodes, rebuilt when the set changes.
struct Ring {
    nodes: Vec<String>,
    ring: HashRing<VirtualNode, foundation_core::hash::StableBuildHasher>,
}

impl Ring {
    fn new(nodes: Vec<String>) -> Self {
        // The workspace's stable hash: every node, whatever it was built with, places a key on
        // the same owner.
        let mut ring = HashRing::with_hasher(foundation_core::hash::StableBuildHasher::default());
        for node in &nodes {
            for i in 0..VIRTUAL_NODES {
                ring.add(VirtualNode { label: format!("{node}#{i}"), node: node.clone() });
            }
        }
        Ring { nodes, ring }
    }

    fn owner(&self, key: &str) -> Option<&str> {
        self.ring.get(&KeyHash(key)).map(|v| v.node.as_str())
    }
}

/// A key as the ring hashes it: its bytes.
struct KeyHash<'a>(&'a str);

impl Hash for KeyHash<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

/// This node's access to a shared cache. Cheap to clone.
#[derive(Clone)]
pub struct SharedCacheHandle {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    node: String,
    /// This node (to tell which node a part's actor runs on by its session).
    cluster: Cluster,
    config: SharedCacheConfig,
    entries: LocalCache<Vec<u8>>,
    near: Option<LocalCache<Vec<u8>>>,
    counters: CacheCounters,
    unreachable: AtomicU64,
    unreachable_metric: metrics::Counter,
    ring: Mutex<Ring>,
    replica: Mutex<Option<PerNodeHandle>>,
}

impl SharedCacheHandle {
    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The nodes the cache is spread over now, by name, sorted: this one while its part runs
    /// (not after [`stop`](Self::stop)), and every other node whose part is visible.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: BTreeSet<String> =
            crate::pg_nodes::live_by_node(&self.inner.cluster, SCOPE, &format!("{}@", self.inner.name))
                .into_iter()
                .map(|(node, _)| node)
                .collect();
        // Its pg entry may outlive a stop for a moment: what this handle knows decides.
        if self.running() {
            nodes.insert(self.inner.node.clone());
        } else {
            nodes.remove(&self.inner.node);
        }
        nodes.into_iter().collect()
    }

    /// Whether this node's part runs (not [`stop`](Self::stop)ped).
    fn running(&self) -> bool {
        self.inner.replica.lock_or_recover().is_some()
    }

    /// The error for a key whose owner is this node while its part is stopped (no node left).
    fn stopped(&self, key: &str) -> SharedCacheError {
        self.inner.unreachable.fetch_add(1, Ordering::Relaxed);
        self.inner.unreachable_metric.increment(1);
        SharedCacheError::Unreachable {
            key: key.to_string(),
            owner: self.inner.node.clone(),
            source: "this node's part of the cache is stopped and no other node runs it".into(),
        }
    }

    /// The node that owns `key` now (this node if no node runs the cache).
    pub fn owner(&self, key: &str) -> String {
        let nodes = self.nodes();
        let mut ring = self.inner.ring.lock_or_recover();
        if ring.nodes != nodes {
            *ring = Ring::new(nodes);
        }
        ring.owner(key).unwrap_or(&self.inner.node).to_string()
    }

    /// The value under `key`, or `None` if no node has it, or if its owner cannot be asked (the
    /// reason is logged; [`try_get`](Self::try_get) returns it).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.try_get(key).await {
            Ok(found) => found.map(|f| f.value),
            Err(e) => {
                tracing::debug!(cache = %self.inner.name, error = %e, "shared cache get fell back to a miss");
                None
            }
        }
    }

    /// The value under `key` with where it came from; an error if the owner cannot be asked
    /// (counted as a miss and in [`unreachable`](Self::unreachable)).
    pub async fn try_get(&self, key: &str) -> Result<Option<Fetched>, SharedCacheError> {
        check_key(key)?;
        let inner = &self.inner;
        if let Some(near) = &inner.near
            && let Some(entry) = near.get_entry(key).await
        {
            return Ok(Some(Fetched {
                value: entry.value,
                saved_cost: entry.cost,
                owner: self.owner(key),
                near: true,
            }));
        }
        let owner = self.owner(key);
        let found = if owner == inner.node {
            if !self.running() {
                inner.counters.miss();
                return Err(self.stopped(key));
            }
            inner.entries.get_entry(key).await.map(|e| (e.value, e.cost))
        } else {
            let request = GetRequest { key: key.to_string() };
            let reply: GetReply = match self.call(&owner, key, request, StoreMsg::Get).await {
                Ok(reply) => reply,
                Err(e) => {
                    inner.counters.miss();
                    return Err(e);
                }
            };
            reply.found
        };
        let Some((value, cost)) = found else {
            inner.counters.miss();
            return Ok(None);
        };
        inner.counters.hit(cost);
        if let Some(near) = &inner.near {
            near.insert_with(key, value.clone(), EntryOptions::cost(cost)).await;
        }
        Ok(Some(Fetched { value, saved_cost: cost, owner, near: false }))
    }

    /// Stores `value` under `key` on its owner (replacing any value there), then in this node's
    /// near cache if there is one; the owner's name. Refused if the value is over
    /// [`SharedCacheConfig::max_value_bytes`] or the owner cannot be reached (the near cache is
    /// then left as it was).
    pub async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        options: EntryOptions,
    ) -> Result<String, SharedCacheError> {
        check_key(key)?;
        let inner = &self.inner;
        if value.len() > inner.config.max_value_bytes {
            return Err(SharedCacheError::TooLarge {
                key: key.to_string(),
                size: value.len(),
                max: inner.config.max_value_bytes,
            });
        }
        // The near cache is written only once the owner has the value: a failed put must not
        // leave this node serving it.
        let near_copy = inner.near.as_ref().map(|_| value.clone());
        let owner = self.owner(key);
        if owner == inner.node {
            if !self.running() {
                return Err(self.stopped(key));
            }
            inner.entries.insert_with(key, value, options).await;
        } else {
            let ttl_ms = options.ttl.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64);
            let request = PutRequest { key: key.to_string(), value, cost: options.cost, ttl_ms };
            let _: PutReply = self.call(&owner, key, request, StoreMsg::Put).await?;
        }
        if let (Some(near), Some(value)) = (&inner.near, near_copy) {
            near.insert_with(key, value, options).await;
        }
        Ok(owner)
    }

    /// [`try_get`](Self::try_get) for a value stored with [`put_json`](Self::put_json).
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SharedCacheError> {
        let Some(found) = self.try_get(key).await? else { return Ok(None) };
        serde_json::from_slice(&found.value)
            .map(Some)
            .map_err(|e| SharedCacheError::Codec { key: key.to_string(), source: Cause::new(e) })
    }

    /// [`put`](Self::put) of a serde value, as JSON.
    pub async fn put_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        options: EntryOptions,
    ) -> Result<String, SharedCacheError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| SharedCacheError::Codec { key: key.to_string(), source: Cause::new(e) })?;
        self.put(key, bytes, options).await
    }

    /// Lookups from this node that asked the owner (tier `l2`): hits, misses (unreachable owners
    /// included) and saved cost.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.stats()
    }

    /// The near cache's counts (tier `l1`), if there is one.
    pub fn near_stats(&self) -> Option<CacheStats> {
        self.inner.near.as_ref().map(LocalCache::stats)
    }

    /// Lookups served by this node's part, asked from any node (tier `l2_owner`).
    pub fn owner_stats(&self) -> CacheStats {
        self.inner.entries.stats()
    }

    /// Gets and puts that could not reach the key's owner.
    pub fn unreachable(&self) -> u64 {
        self.inner.unreachable.load(Ordering::Relaxed)
    }

    /// Stops this node's part (its entries and its near cache's are dropped); the other nodes
    /// take over its keys, and this node is no longer one of the [`nodes`](Self::nodes). The
    /// handle still reaches the other nodes' parts.
    pub async fn stop(&self) {
        let replica = self.inner.replica.lock_or_recover().take();
        if let Some(replica) = replica {
            replica.stop().await;
        }
        self.inner.entries.invalidate_all();
        if let Some(near) = &self.inner.near {
            near.invalidate_all();
        }
    }

    /// Asks the owner's store actor.
    async fn call<Q, R>(
        &self,
        owner: &str,
        key: &str,
        request: Q,
        message: fn(Wire<Q>, RpcReplyPort<Wire<R>>) -> StoreMsg,
    ) -> Result<R, SharedCacheError>
    where
        Q: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let inner = &self.inner;
        let unreachable = |source: Cause| {
            inner.unreachable.fetch_add(1, Ordering::Relaxed);
            inner.unreachable_metric.increment(1);
            SharedCacheError::Unreachable { key: key.to_string(), owner: owner.to_string(), source }
        };
        let group = format!("{}@{owner}", inner.name);
        let Some(store) = ractor::pg::get_scoped_members(&SCOPE.to_string(), &group).into_iter().next()
        else {
            return Err(unreachable("its part of the cache is not running".into()));
        };
        let store: ActorRef<StoreMsg> = store.into();
        let wire = Wire::encode(&request, inner.config.max_value_bytes + ENVELOPE_BYTES)
            .map_err(|e| SharedCacheError::Codec { key: key.to_string(), source: Cause::new(e) })?;
        match store.call(|port| message(wire, port), Some(inner.config.call_timeout)).await {
            Ok(ractor::rpc::CallResult::Success(reply)) => reply
                .into_inner()
                .map_err(|e| SharedCacheError::Codec { key: key.to_string(), source: Cause::new(e) }),
            Ok(ractor::rpc::CallResult::Timeout) => {
                Err(unreachable(format!("no answer within {:?}", inner.config.call_timeout).into()))
            }
            Ok(ractor::rpc::CallResult::SenderError) => Err(unreachable("it dropped the request".into())),
            // Without the request it failed to carry (the error would hold it as long as it lives).
            Err(e) => Err(unreachable(Cause::new(e.map(drop)))),
        }
    }
}

fn check_key(key: &str) -> Result<(), SharedCacheError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(SharedCacheError::KeyTooLong { size: key.len(), max: MAX_KEY_BYTES });
    }
    Ok(())
}

fn weigh(key: &str, value: &[u8]) -> u32 {
    (key.len() + value.len()).min(u32::MAX as usize) as u32
}

impl std::fmt::Debug for SharedCacheHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCacheHandle")
            .field("name", &self.inner.name)
            .field("node", &self.inner.node)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The cluster cache as a second tier of a cache below it (the model-call cache's): a get that
/// fails is a miss, a put that fails is logged and dropped.
impl foundation_core::cache::CacheTier for SharedCacheHandle {
    fn get<'a>(&'a self, key: &'a str) -> foundation_core::cache::TierFuture<'a, Option<Vec<u8>>> {
        Box::pin(SharedCacheHandle::get(self, key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        cost: f64,
    ) -> foundation_core::cache::TierFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = SharedCacheHandle::put(self, key, value, EntryOptions::cost(cost)).await {
                tracing::debug!(cache = %self.name(), error = %e, "a put to the cluster tier failed: dropped");
            }
        })
    }
}

impl SharedCacheHandle {
    /// Starts this node's part of the shared cache `name` (see the
    /// [module docs](crate::shared_cache)): call it with the same name and config on every node
    /// that shares the cache. Fails if this node already runs it or the name contains `@`.
    pub async fn start(
        cluster: &Cluster,
        name: &str,
        config: SharedCacheConfig,
    ) -> Result<SharedCacheHandle, SharedCacheError> {
        let error = |source: Cause| SharedCacheError::Start { cache: name.to_string(), source };
        if name.is_empty() || name.contains('@') {
            return Err(error("a cache name must be non-empty and without `@`".into()));
        }
        let store_config = LocalCacheConfig {
            max_capacity: config.max_bytes,
            time_to_live: config.time_to_live,
            time_to_idle: None,
        };
        let entries = LocalCache::weighted(name, store_config, |k: &str, v: &Vec<u8>| weigh(k, v))
            .with_tier("l2_owner");
        let near = config
            .near
            .clone()
            .map(|near| LocalCache::weighted(name, near, |k: &str, v: &Vec<u8>| weigh(k, v)));
        let store = Store {
            group: format!("{name}@{}", cluster.name()),
            entries: entries.clone(),
            max_message: config.max_value_bytes + ENVELOPE_BYTES,
        };
        let spec = ChildSpec::new(format!("cache:{name}"), move || (store.clone(), ()));
        let replica = PerNodeHandle::start(cluster, &format!("cache:{name}"), spec)
            .await
            .map_err(|e| error(Cause::new(e)))?;
        tracing::info!(cache = %name, node = %cluster.name(), "shared cache part started here");
        Ok(SharedCacheHandle {
            inner: Arc::new(Inner {
                name: name.to_string(),
                node: cluster.name().to_string(),
                cluster: cluster.clone(),
                counters: CacheCounters::new(name, "l2"),
                unreachable_metric: metrics::counter!("foundation_cache_unreachable_total", "cache" => name.to_string()),
                unreachable: AtomicU64::new(0),
                ring: Mutex::new(Ring::new(vec![cluster.name().to_string()])),
                replica: Mutex::new(Some(replica)),
                config,
                entries,
                near,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_deterministic_balanced_and_moves_few_keys() {
        let three = Ring::new(vec!["n1".into(), "n2".into(), "n3".into()]);
        let keys: Vec<String> = (0..3000).map(|i| format!("key-{i}")).collect();
        let owners: Vec<String> = keys.iter().map(|k| three.owner(k).unwrap().to_string()).collect();
        // Same ring built again (as on another node): same owners.
        let again = Ring::new(vec!["n1".into(), "n2".into(), "n3".into()]);
        assert!(keys.iter().zip(&owners).all(|(k, o)| again.owner(k) == Some(o.as_str())));
        // Pinned: the placement must not change between processes or versions.
        assert_eq!(
            ["a", "b", "c", "d"].map(|k| three.owner(k).unwrap().to_string()),
            PINNED_OWNERS.map(str::to_string)
        );
        for node in ["n1", "n2", "n3"] {
            let share = owners.iter().filter(|o| *o == node).count();
            assert!((500..=1500).contains(&share), "{node} owns {share} of 3000");
        }
        // n2 goes: only n2's keys move.
        let two = Ring::new(vec!["n1".into(), "n3".into()]);
        for (k, o) in keys.iter().zip(&owners) {
            let now = two.owner(k).unwrap();
            if o != "n2" {
                assert_eq!(now, o, "{k} moved although its owner stayed");
            }
            assert_ne!(now, "n2");
        }
    }

    /// Under the stable hash (`foundation_core::hash`, xxh3). Nodes of versions before it
    /// (SipHash) place keys elsewhere: while a cluster is upgraded one node at a time, nodes
    /// may ask different owners for a key, so expect misses and entries older than the latest
    /// put (within their TTL) until every node runs the same placement.
    const PINNED_OWNERS: [&str; 4] = ["n2", "n2", "n1", "n1"];

    /// One node in this process: every key is its own, so this exercises the local path, the
    /// limits and the near cache (across nodes: `examples/tests/shared_cache.rs`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_node_cache_stores_refuses_oversized_values_and_counts() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = foundation_core::config::ClusterConfig {
            listen: ([127, 0, 0, 1], port).into(),
            ..Default::default()
        };
        let cluster = Cluster::start("solo-cache", &config, None).await.unwrap();
        let near = LocalCacheConfig { max_capacity: 1 << 20, ..Default::default() };
        let cache_config =
            SharedCacheConfig { max_value_bytes: 1000, near: Some(near), ..Default::default() };
        let cache = SharedCacheHandle::start(&cluster, "unit", cache_config.clone()).await.unwrap();
        let again = SharedCacheHandle::start(&cluster, "unit", cache_config).await.unwrap_err();
        assert!(matches!(again, SharedCacheError::Start { .. }), "{again}");
        let bad = SharedCacheHandle::start(&cluster, "a@b", SharedCacheConfig::default()).await.unwrap_err();
        assert!(bad.to_string().contains("without `@`"), "{bad}");

        assert_eq!(cache.nodes(), ["solo-cache"]);
        assert_eq!(cache.owner("anything"), "solo-cache");
        assert_eq!(cache.get("k").await, None);
        assert_eq!(cache.put("k", b"v".to_vec(), EntryOptions::cost(0.5)).await.unwrap(), "solo-cache");
        let found = cache.try_get("k").await.unwrap().unwrap();
        // The writer's near cache has it.
        assert_eq!((found.value.as_slice(), found.saved_cost, found.near), (&b"v"[..], 0.5, true));

        let err = cache.put("big", vec![0; 1001], EntryOptions::default()).await.unwrap_err();
        assert!(matches!(err, SharedCacheError::TooLarge { size: 1001, max: 1000, .. }), "{err}");
        assert!(err.to_string().contains("max_value_bytes"), "{err}");
        assert_eq!(cache.get("big").await, None);

        cache.put_json("json", &vec![1, 2, 3], EntryOptions::default()).await.unwrap();
        assert_eq!(cache.get_json::<Vec<u32>>("json").await.unwrap(), Some(vec![1, 2, 3]));
        assert!(cache.get_json::<String>("json").await.is_err(), "a type mismatch is an error");

        // The owner tier counts what reached it: "k" (the first get, a miss) and "big" (a miss).
        let owner = cache.owner_stats();
        assert_eq!((owner.hits, owner.misses), (0, 2));
        let near = cache.near_stats().unwrap();
        assert_eq!((near.hits, near.saved_cost), (3, 0.5));
        assert_eq!(cache.unreachable(), 0);
        cache.stop().await;
        // Stopped: not one of the nodes any more, and with no other node nothing is served.
        assert!(cache.nodes().is_empty(), "{:?}", cache.nodes());
        let err = cache.put("k", b"w".to_vec(), EntryOptions::default()).await.unwrap_err();
        assert!(matches!(err, SharedCacheError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("stopped"), "{err}");
        assert!(cache.try_get("k").await.is_err(), "neither the near cache nor the stopped part answers");
        cluster.shutdown().await;
    }

    /// A store actor that takes requests and never answers (drops the reply port).
    struct Silent(String);

    impl Actor for Silent {
        type Msg = StoreMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, myself: ActorRef<StoreMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            ractor::pg::join_scoped(SCOPE.to_string(), self.0.clone(), vec![myself.get_cell()]);
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<StoreMsg>,
            _: StoreMsg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    /// A put whose owner does not store the value fails, and leaves nothing in the writer's
    /// near cache (which would otherwise serve a value no owner holds).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_put_leaves_the_near_cache_alone() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = foundation_core::config::ClusterConfig {
            listen: ([127, 0, 0, 1], port).into(),
            ..Default::default()
        };
        let cluster = Cluster::start("near-writer", &config, None).await.unwrap();
        let near = LocalCacheConfig { max_capacity: 1 << 20, ..Default::default() };
        let cache_config = SharedCacheConfig {
            near: Some(near),
            call_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let cache = SharedCacheHandle::start(&cluster, "near-unit", cache_config).await.unwrap();
        // A second node's part, in pg like a remote one, that never answers.
        let (ghost, ghost_task) = Actor::spawn(None, Silent("near-unit@ghost".into()), ()).await.unwrap();
        assert_eq!(cache.nodes(), ["ghost", "near-writer"]);
        let key_of =
            |owner: &str| (0..1000).map(|i| format!("key-{i}")).find(|k| cache.owner(k) == owner).unwrap();
        let (remote, local) = (key_of("ghost"), key_of("near-writer"));

        let err = cache.put(&remote, b"lost".to_vec(), EntryOptions::default()).await.unwrap_err();
        assert!(matches!(err, SharedCacheError::Unreachable { ref owner, .. } if owner == "ghost"), "{err}");
        let near = cache.inner.near.as_ref().unwrap();
        assert!(near.get_entry(&remote).await.is_none(), "the failed put is not in the near cache");
        assert!(cache.try_get(&remote).await.is_err(), "a get asks the owner, and fails");

        // A put the owner accepted is in the near cache.
        cache.put(&local, b"kept".to_vec(), EntryOptions::default()).await.unwrap();
        assert!(cache.try_get(&local).await.unwrap().unwrap().near);

        // Stopped here: only the ghost is left, and owns every key.
        cache.stop().await;
        assert_eq!(cache.nodes(), ["ghost"]);
        assert_eq!(cache.owner(&local), "ghost");
        assert!(cache.try_get(&local).await.is_err(), "the near cache was dropped with the part");
        ghost.stop(None);
        ghost_task.await.unwrap();
        cluster.shutdown().await;
    }

    #[test]
    fn a_value_must_fit() {
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        let err = check_key(&"k".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
        assert!(err.to_string().contains("over the 4096-byte limit"), "{err}");
    }
}
