//! Service registry: actors registered by service name with capabilities and metadata,
//! discovered by capability, and selected among healthy instances by a load-balancing strategy.
//!
//! - [`ServiceRegistry::register_service`] puts an actor under a name with capabilities and
//!   metadata; it also joins the pg group [`pg_group`]`(name)` in scope [`PG_SCOPE`], which is how
//!   the cluster layer will see it from other nodes.
//! - [`ServiceRegistry::discover`] finds live instances by name, capabilities and metadata.
//! - [`ServiceRegistry::select`] picks one healthy, live instance by a [`Strategy`]. An instance
//!   whose actor stopped or that reported itself unhealthy is never picked, from the moment it
//!   happened (liveness is checked at selection; the entry itself is removed when pg reports
//!   the actor gone).
//! - Across nodes: each node's registry has a gateway ([`gateway`]) through which it learns the
//!   other nodes' registrations, so a service registered on one node is discovered and selected
//!   on every node, with its capabilities, metadata, health and load, and vanishes everywhere
//!   when its actor stops or its node goes. Its actor must be remotable (a message type that
//!   derives `RactorClusterMessage`) to be reached from other nodes; a local-only actor stays
//!   visible on its own node only.
//! - Instances report health and load ([`ServiceRegistry::report_health`]) and latency
//!   ([`ServiceRegistry::record_latency`], kept as an EWMA).
//!
//! ```
//! use foundation_actors::registry::{Query, ServiceRegistry, Strategy};
//! # use ractor::{Actor, ActorProcessingErr, ActorRef};
//! # struct Model;
//! # impl Actor for Model {
//! #     type Msg = (); type State = (); type Arguments = ();
//! #     async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> { Ok(()) }
//! # }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let registry = ServiceRegistry::start().await?;
//! let (model, _) = Actor::spawn(None, Model, ()).await.unwrap();
//! let id = registry.register_service("llm", model.get_cell(), ["chat", "json"], [("region", "eu")])?;
//! registry.report_health(id, true, 0.3)?;
//!
//! let found = registry.discover(&Query::new().capability("json").metadata("region", "eu"));
//! assert_eq!(found.len(), 1);
//! let chosen = registry.select("llm", Strategy::LeastLoaded)?;
//! assert_eq!(chosen.id, id);
//! # Ok::<(), foundation_actors::registry::RegistryError>(())
//! # }).unwrap();
//! ```

// Built on `ractor::pg` (each service is a process group, membership is cluster-wide once nodes
// connect) rather than `ractor::registry`, whose names are process-local, unique, and carry no
// capabilities, metadata or health.
pub mod gateway;
mod select;

use foundation_core::sync::{MutexRecover, RwLockRecover};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, ActorStatus};
use tokio::sync::Notify;

pub use select::{LATENCY_EWMA_ALPHA, Strategy};

use gateway::{Gateway, GatewayMsg, Record, Records};
use select::{Candidates, choose};

/// The pg scope services live in.
pub const PG_SCOPE: &str = crate::pg_scopes::SERVICES;

/// The pg group of a service's instances.
pub fn pg_group(service: &str) -> String {
    format!("service:{service}")
}

/// Identifies one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Errors of the service registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No instance of the service is registered.
    #[error("no service `{0}` is registered")]
    UnknownService(String),
    /// Instances exist but none is healthy and alive.
    #[error(
        "service `{service}` has no healthy instance ({registered} registered, {unhealthy} unhealthy, {stopped} stopped)"
    )]
    NoHealthyInstance {
        /// The service.
        service: String,
        /// Registered instances.
        registered: usize,
        /// Of which reported unhealthy.
        unhealthy: usize,
        /// Of which whose actor is no longer running.
        stopped: usize,
    },
    /// `wait_for_service` gave up.
    #[error("service `{service}` did not appear within {waited:?}")]
    Timeout {
        /// The service.
        service: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The registration does not exist (deregistered, or its actor stopped).
    #[error("instance {0} is not registered")]
    UnknownInstance(InstanceId),
    /// The actor is not running, or already registered under this name.
    #[error("cannot register under `{service}`: {reason}")]
    Rejected {
        /// The service.
        service: String,
        /// Why.
        reason: String,
    },
    /// The registry's gateway could not start.
    #[error("cannot start the service registry: {0}")]
    Start(#[source] foundation_core::Cause),
}

/// What discovery returns about one live instance.
#[derive(Debug, Clone)]
pub struct ServiceInstance {
    /// The registration.
    pub id: InstanceId,
    /// The service name.
    pub name: String,
    /// The actor.
    pub actor: ActorCell,
    /// What it can do.
    pub capabilities: BTreeSet<String>,
    /// Free-form key/value facts (region, model, version).
    pub metadata: BTreeMap<String, String>,
    /// Its last reported health (instances start healthy).
    pub healthy: bool,
    /// Its last reported load (instances start at 0).
    pub load: f64,
    /// Its latency EWMA, once one was recorded.
    pub latency: Option<Duration>,
    /// Whether it was registered on this node (otherwise it is another node's, learnt through
    /// the gateways, and its health and load are as of the last sync).
    pub local: bool,
}

/// What [`ServiceRegistry::select`] returns: cheap to produce on every call.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The registration (to report health and latency against).
    pub id: InstanceId,
    /// The actor to send to.
    pub actor: ActorCell,
}

/// A discovery query: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Query {
    name: Option<String>,
    capabilities: Vec<String>,
    metadata: Vec<(String, String)>,
}

impl Query {
    /// Matches every live instance.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only instances of this service.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only instances with this capability (repeat for several: all are required).
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Only instances whose metadata has exactly this value for this key.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    fn matches(&self, i: &Instance) -> bool {
        self.name.as_ref().is_none_or(|n| *n == i.name)
            && self.capabilities.iter().all(|c| i.capabilities.contains(c))
            && self.metadata.iter().all(|(k, v)| i.metadata.get(k) == Some(v))
    }
}

/// A node's service registry. Cheap to clone.
#[derive(Clone)]
pub struct ServiceRegistry {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: RwLock<State>,
    next_id: AtomicU64,
    registered: Notify,
    gateway: RwLock<Option<ActorRef<GatewayMsg>>>,
    /// Bumped by every local change that other nodes should see.
    version: AtomicU64,
    /// The version of each other node's registrations last merged, by session node id.
    seen: Mutex<HashMap<u64, u64>>,
    /// Other nodes' gateways this node's gateway follows (one long poll each).
    following: Mutex<std::collections::HashSet<ractor::ActorId>>,
    /// Nodes whose last registrations named actors pg had not announced here.
    unresolved: Mutex<std::collections::HashSet<u64>>,
    /// Nodes whose registrations are being fetched again (one fetch at a time per node).
    pulling: Mutex<std::collections::HashSet<u64>>,
    /// The newest version of each node's registrations merged (an older answer that arrives
    /// later is not merged over it).
    merged: Mutex<HashMap<u64, u64>>,
    /// The largest answer the gateway sends another node (`cluster.max_frame_bytes`).
    max_message_bytes: AtomicUsize,
}

#[derive(Default)]
struct State {
    instances: HashMap<InstanceId, Arc<Instance>>,
    services: HashMap<String, Service>,
}

/// One service's instances in registration order, for selection without lookups.
#[derive(Default)]
struct Service {
    instances: Vec<Arc<Instance>>,
    turn: AtomicUsize,
}

impl Candidates for Service {
    fn len(&self) -> usize {
        self.instances.len()
    }
    fn eligible(&self, i: usize) -> bool {
        let instance = &self.instances[i];
        instance.healthy.load(Ordering::Relaxed) && instance.alive()
    }
    fn load(&self, i: usize) -> f64 {
        f64::from_bits(self.instances[i].load_bits.load(Ordering::Relaxed))
    }
    fn latency_ns(&self, i: usize) -> u64 {
        self.instances[i].latency_ns.load(Ordering::Relaxed)
    }
}

struct Instance {
    id: InstanceId,
    name: String,
    actor: ActorCell,
    capabilities: BTreeSet<String>,
    metadata: BTreeMap<String, String>,
    healthy: AtomicBool,
    load_bits: AtomicU64,
    /// Latency EWMA in nanoseconds; 0 until the first sample.
    latency_ns: AtomicU64,
    /// For another node's registration: that node's session id and its id for it.
    origin: Option<(u64, u64)>,
}

impl Instance {
    fn alive(&self) -> bool {
        matches!(
            self.actor.get_status(),
            ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
        )
    }

    fn snapshot(&self) -> ServiceInstance {
        let latency = self.latency_ns.load(Ordering::Relaxed);
        ServiceInstance {
            id: self.id,
            name: self.name.clone(),
            actor: self.actor.clone(),
            capabilities: self.capabilities.clone(),
            metadata: self.metadata.clone(),
            healthy: self.healthy.load(Ordering::Relaxed),
            load: f64::from_bits(self.load_bits.load(Ordering::Relaxed)),
            latency: (latency > 0).then(|| Duration::from_nanos(latency)),
            local: self.origin.is_none(),
        }
    }
}

impl ServiceRegistry {
    /// Starts a registry, and its gateway (which removes instances whose actor stops, and
    /// exchanges registrations with the other nodes' registries).
    pub async fn start() -> Result<Self, RegistryError> {
        let inner = Arc::new(Inner {
            state: RwLock::default(),
            next_id: AtomicU64::new(1),
            registered: Notify::new(),
            gateway: RwLock::new(None),
            version: AtomicU64::new(1),
            seen: Mutex::new(HashMap::new()),
            following: Mutex::default(),
            unresolved: Mutex::default(),
            pulling: Mutex::default(),
            merged: Mutex::default(),
            max_message_bytes: AtomicUsize::new(foundation_core::config::DEFAULT_MAX_FRAME_BYTES),
        });
        let (gateway, _) = Actor::spawn(None, Gateway, Arc::downgrade(&inner))
            .await
            .map_err(|e| RegistryError::Start(foundation_core::Cause::new(e)))?;
        *inner.gateway.write_or_recover() = Some(gateway);
        Ok(ServiceRegistry { inner })
    }

    /// Sets the largest message this registry's gateway sends to another node: its
    /// registrations, when another node pulls them (default
    /// [`DEFAULT_MAX_FRAME_BYTES`](foundation_core::config::DEFAULT_MAX_FRAME_BYTES); set it to
    /// the cluster's `max_frame_bytes`). Registrations over it are not sent (logged): the other
    /// node logs that they did not decode and asks again at its next sync.
    pub fn set_max_message_bytes(&self, max: usize) {
        self.inner.max_message_bytes.store(max, Ordering::Relaxed);
    }

    /// Registers `actor` as an instance of `service`. It starts healthy with load 0.
    pub fn register_service<C, K, V>(
        &self,
        service: &str,
        actor: ActorCell,
        capabilities: impl IntoIterator<Item = C>,
        metadata: impl IntoIterator<Item = (K, V)>,
    ) -> Result<InstanceId, RegistryError>
    where
        C: Into<String>,
        K: Into<String>,
        V: Into<String>,
    {
        let reject = |reason: &str| RegistryError::Rejected {
            service: service.to_string(),
            reason: reason.to_string(),
        };
        if service.is_empty() {
            return Err(reject("the service name is empty"));
        }
        let instance = Instance {
            id: InstanceId(self.inner.next_id.fetch_add(1, Ordering::Relaxed)),
            name: service.to_string(),
            actor: actor.clone(),
            capabilities: capabilities.into_iter().map(Into::into).collect(),
            metadata: metadata.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            healthy: AtomicBool::new(true),
            load_bits: AtomicU64::new(0f64.to_bits()),
            latency_ns: AtomicU64::new(0),
            origin: None,
        };
        if !instance.alive() {
            return Err(reject("the actor is not running"));
        }
        let id = instance.id;
        {
            let mut state = self.inner.state.write_or_recover();
            let already = state
                .services
                .get(service)
                .is_some_and(|s| s.instances.iter().any(|x| x.actor.get_id() == actor.get_id()));
            if already {
                return Err(reject("this actor is already registered under it"));
            }
            let instance = Arc::new(instance);
            let entry = state.services.entry(service.to_string()).or_default();
            entry.instances.push(instance.clone());
            let count = entry.instances.len();
            state.instances.insert(id, instance);
            metrics::gauge!("foundation_registry_instances", "service" => foundation_core::telemetry::bounded_label("service", service))
                .set(count as f64);
        }
        ractor::pg::join_scoped(PG_SCOPE.to_string(), pg_group(service), vec![actor]);
        self.inner.version.fetch_add(1, Ordering::Relaxed);
        self.inner.registered.notify_waiters();
        tracing::debug!(%service, instance = %id, "service registered");
        Ok(id)
    }

    /// Removes a registration.
    pub fn deregister(&self, id: InstanceId) -> Result<(), RegistryError> {
        let removed = self.inner.remove(id).ok_or(RegistryError::UnknownInstance(id))?;
        ractor::pg::leave_scoped(PG_SCOPE.to_string(), pg_group(&removed.name), vec![removed.actor.clone()]);
        Ok(())
    }

    /// Live instances matching the query, in registration order.
    pub fn discover(&self, query: &Query) -> Vec<ServiceInstance> {
        let state = self.inner.state.read_or_recover();
        let mut found: Vec<ServiceInstance> = state
            .instances
            .values()
            .filter(|i| i.alive() && query.matches(i))
            .map(|i| i.snapshot())
            .collect();
        found.sort_by_key(|i| i.id);
        found
    }

    /// Waits until `service` has a live instance, up to `timeout`.
    pub async fn wait_for_service(
        &self,
        service: &str,
        timeout: Duration,
    ) -> Result<ServiceInstance, RegistryError> {
        let query = Query::new().name(service);
        let wait = async {
            loop {
                let registered = self.inner.registered.notified();
                if let Some(found) = self.discover(&query).into_iter().next() {
                    return found;
                }
                registered.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| RegistryError::Timeout { service: service.to_string(), waited: timeout })
    }

    /// Picks a healthy, live instance of `service` by `strategy`.
    pub fn select(&self, service: &str, strategy: Strategy) -> Result<Selected, RegistryError> {
        let state = self.inner.state.read_or_recover();
        let entry =
            state.services.get(service).ok_or_else(|| RegistryError::UnknownService(service.to_string()))?;
        let turn = entry.turn.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = choose(strategy, entry, turn) {
            let chosen = &entry.instances[i];
            return Ok(Selected { id: chosen.id, actor: chosen.actor.clone() });
        }
        let stopped = entry.instances.iter().filter(|i| !i.alive()).count();
        Err(RegistryError::NoHealthyInstance {
            service: service.to_string(),
            registered: entry.instances.len(),
            unhealthy: entry
                .instances
                .iter()
                .filter(|i| i.alive() && !i.healthy.load(Ordering::Relaxed))
                .count(),
            stopped,
        })
    }

    /// Reports an instance's health and load; an unhealthy one is not selected from now on.
    ///
    /// For a local instance, every node sees the report at its next sync. For another node's
    /// instance, the report holds on this node only, until that node's next report reaches it.
    pub fn report_health(&self, id: InstanceId, healthy: bool, load: f64) -> Result<(), RegistryError> {
        let state = self.inner.state.read_or_recover();
        let i = state.instances.get(&id).ok_or(RegistryError::UnknownInstance(id))?;
        i.healthy.store(healthy, Ordering::Relaxed);
        i.load_bits
            .store(if load.is_finite() { load.max(0.0) } else { f64::MAX }.to_bits(), Ordering::Relaxed);
        if i.origin.is_none() {
            self.inner.version.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Records one call's latency against an instance (for [`Strategy::LowestLatency`]).
    pub fn record_latency(&self, id: InstanceId, latency: Duration) -> Result<(), RegistryError> {
        let state = self.inner.state.read_or_recover();
        let i = state.instances.get(&id).ok_or(RegistryError::UnknownInstance(id))?;
        let sample = (latency.as_nanos().min(u128::from(u64::MAX / 2)) as u64).max(1);
        let _ = i.latency_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 {
                sample
            } else {
                (LATENCY_EWMA_ALPHA * sample as f64 + (1.0 - LATENCY_EWMA_ALPHA) * old as f64).max(1.0) as u64
            })
        });
        Ok(())
    }

    /// Registered instances of every service, live or not yet removed.
    pub fn len(&self) -> usize {
        self.inner.state.read_or_recover().instances.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn remove(&self, id: InstanceId) -> Option<Arc<Instance>> {
        let mut state = self.state.write_or_recover();
        let instance = state.instances.remove(&id)?;
        if instance.origin.is_none() {
            self.version.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(service) = state.services.get_mut(&instance.name) {
            service.instances.retain(|x| x.id != id);
            metrics::gauge!("foundation_registry_instances", "service" => foundation_core::telemetry::bounded_label("service", &instance.name))
                .set(service.instances.len() as f64);
            if service.instances.is_empty() {
                state.services.remove(&instance.name);
            }
        }
        Some(instance)
    }

    /// Drops the registrations of actors that left a service's pg group (they stopped).
    pub(crate) fn forget_actors(&self, group: &str, cells: &[ActorCell]) {
        let Some(service) = group.strip_prefix("service:") else { return };
        let ids: Vec<InstanceId> = {
            let state = self.state.read_or_recover();
            let Some(entry) = state.services.get(service) else { return };
            entry
                .instances
                .iter()
                .filter(|i| cells.iter().any(|c| c.get_id() == i.actor.get_id()))
                .map(|i| i.id)
                .collect()
        };
        for id in ids {
            self.remove(id);
            tracing::debug!(%service, instance = %id, "service instance left (actor stopped)");
        }
    }
}

// Exchanges with other nodes' registries (see `gateway`).
impl Inner {
    /// This node's own registrations, unless other nodes already have this version.
    fn local_records(&self, since: u64) -> Option<Records> {
        let state = self.state.read_or_recover();
        // Read under the lock: a change made after this read bumps the version again.
        let version = self.version.load(Ordering::Relaxed);
        if version == since {
            return None;
        }
        let records = state
            .instances
            .values()
            .filter(|i| i.origin.is_none() && i.alive())
            .map(|i| Record {
                id: i.id.0,
                service: i.name.clone(),
                pid: i.actor.get_id().pid(),
                capabilities: i.capabilities.clone(),
                metadata: i.metadata.clone(),
                healthy: i.healthy.load(Ordering::Relaxed),
                load: f64::from_bits(i.load_bits.load(Ordering::Relaxed)),
            })
            .collect();
        Some(Records { version, records })
    }

    /// The largest answer to another node ([`ServiceRegistry::set_max_message_bytes`]).
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.load(Ordering::Relaxed)
    }

    fn seen_version(&self, node: u64) -> u64 {
        self.seen.lock_or_recover().get(&node).copied().unwrap_or(0)
    }

    /// Makes this node's view of `node`'s registrations equal to `records`.
    fn merge_remote(&self, node: u64, records: Records) {
        {
            let mut merged = self.merged.lock_or_recover();
            let newest = merged.entry(node).or_default();
            if records.version < *newest {
                return;
            }
            *newest = records.version;
        }
        let mut unresolved = 0;
        let mut added = false;
        {
            let mut state = self.state.write_or_recover();
            let known: HashMap<u64, InstanceId> = state
                .instances
                .values()
                .filter_map(|i| i.origin.filter(|(n, _)| *n == node).map(|(_, remote)| (remote, i.id)))
                .collect();
            let mut kept = BTreeSet::new();
            for record in records.records {
                if let Some(id) = known.get(&record.id) {
                    if let Some(i) = state.instances.get(id) {
                        i.healthy.store(record.healthy, Ordering::Relaxed);
                        i.load_bits.store(record.load.to_bits(), Ordering::Relaxed);
                    }
                    kept.insert(*id);
                    continue;
                }
                // The actor as pg knows it on this node: a stand-in for `node`'s actor.
                let wanted = ractor::ActorId::Remote { node_id: node, pid: record.pid };
                let Some(actor) =
                    ractor::pg::get_scoped_members(&PG_SCOPE.to_string(), &pg_group(&record.service))
                        .into_iter()
                        .find(|c| c.get_id() == wanted)
                else {
                    // Not remotable, or not announced yet: try again at the next sync.
                    unresolved += 1;
                    continue;
                };
                let id = InstanceId(self.next_id.fetch_add(1, Ordering::Relaxed));
                let instance = Arc::new(Instance {
                    id,
                    name: record.service.clone(),
                    actor,
                    capabilities: record.capabilities,
                    metadata: record.metadata,
                    healthy: AtomicBool::new(record.healthy),
                    load_bits: AtomicU64::new(record.load.to_bits()),
                    latency_ns: AtomicU64::new(0),
                    origin: Some((node, record.id)),
                });
                let entry = state.services.entry(record.service.clone()).or_default();
                entry.instances.push(instance.clone());
                metrics::gauge!("foundation_registry_instances", "service" => foundation_core::telemetry::bounded_label("service", &record.service))
                    .set(entry.instances.len() as f64);
                state.instances.insert(id, instance);
                kept.insert(id);
                added = true;
                tracing::debug!(service = %record.service, node, instance = %id, "service learnt from another node");
            }
            let gone: Vec<InstanceId> = known.values().filter(|id| !kept.contains(id)).copied().collect();
            drop(state);
            for id in gone {
                self.remove(id);
            }
        }
        if unresolved == 0 {
            self.seen.lock_or_recover().insert(node, records.version);
        }
        if added {
            self.registered.notify_waiters();
        }
    }

    /// Forgets nodes whose registry left (their node went): their instances go with their actors.
    fn forget_nodes(&self, nodes: impl Iterator<Item = u64>) {
        let nodes: Vec<u64> = nodes.collect();
        self.seen.lock_or_recover().retain(|n, _| !nodes.contains(n));
        self.unresolved.lock_or_recover().retain(|n| !nodes.contains(n));
        self.merged.lock_or_recover().retain(|n, _| !nodes.contains(n));
        let ids: Vec<InstanceId> = {
            let state = self.state.read_or_recover();
            state
                .instances
                .values()
                .filter(|i| i.origin.is_some_and(|(n, _)| nodes.contains(&n)))
                .map(|i| i.id)
                .collect()
        };
        for id in ids {
            self.remove(id);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(gateway) = self.gateway.write_or_recover().take() {
            gateway.stop(None);
        }
    }
}

impl std::fmt::Debug for ServiceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRegistry").field("instances", &self.len()).finish()
    }
}
