//! The coordinator actor every node runs, and the tables it keeps: per lock, the current lease
//! and the largest fencing token recorded; per barrier, who has arrived.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundation_actors::wire::Wire;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{CoordinationConfig, majority_of};
use crate::Cluster;

/// The pg scope of coordinators (`coordinator@NODE`) and bidders (`bidders:CAPABILITY`).
pub const SCOPE: &str = "foundation.coordination";
/// How often the coordinator sweeps finished barriers and a starting node asks for the
/// others' tables.
const TICK: Duration = Duration::from_millis(200);
/// How long a passed barrier is remembered (a late participant passes at once).
const KEEP_PASSED: Duration = Duration::from_secs(600);

/// Asks a node to grant (or renew) a lease on a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrantRequest {
    pub from: String,
    pub lock: String,
    pub owner: String,
    pub lease_ms: u64,
    /// On renewal, the holder's token: recorded as by a commit.
    pub token: Option<u64>,
}

/// A node's answer to a [`GrantRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum GrantReply {
    /// Granted; the largest token this node has recorded for the lock.
    Granted { last_token: u64 },
    /// Held by someone else for this much longer.
    Held { owner: String, remaining_ms: u64 },
    /// This node does not grant yet (it has just started and is learning the others' tables).
    NotReady,
}

/// Records a newly acquired token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CommitRequest {
    pub from: String,
    pub lock: String,
    pub token: u64,
}

/// Gives a lease up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReleaseRequest {
    pub from: String,
    pub lock: String,
    pub owner: String,
}

/// One lock in a [`LockSnapshot`]: its name, last token, and holder with its remaining lease
/// in ms.
type LockRecord = (String, u64, Option<(String, u64)>);

/// A node's lock table, for a node that has just started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LockSnapshot {
    pub locks: Vec<LockRecord>,
}

/// A participant arrived at a barrier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Arrival {
    pub from: String,
    pub barrier: String,
    pub parties: usize,
    pub participant: String,
}

/// A barrier filled: everyone may pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PassedMsg {
    pub from: String,
    pub barrier: String,
    pub participants: Vec<String>,
}

/// What an arrival did.
pub(crate) enum Arrived {
    /// The barrier is not full yet.
    Waiting,
    /// It filled with this arrival: tell everyone.
    Filled(PassedMsg),
    /// It had filled before.
    Before(PassedMsg),
}

#[derive(RactorClusterMessage)]
pub(crate) enum CoordinatorMsg {
    Tick,
    #[rpc]
    Grant(Wire<GrantRequest>, RpcReplyPort<Wire<GrantReply>>),
    #[rpc]
    Commit(Wire<CommitRequest>, RpcReplyPort<bool>),
    Release(Wire<ReleaseRequest>),
    #[rpc]
    Snapshot(Wire<String>, RpcReplyPort<Wire<LockSnapshot>>),
    Arrive(Wire<Arrival>),
    Passed(Wire<PassedMsg>),
}

#[derive(Debug, Default)]
pub(crate) struct LockEntry {
    /// Owner and lease end, as this node granted it.
    pub holder: Option<(String, Instant)>,
    pub last_token: u64,
}

#[derive(Debug)]
pub(crate) struct BarrierEntry {
    pub parties: usize,
    /// Participant → its node.
    pub arrivals: BTreeMap<String, String>,
    /// Set once it filled (sticky), with when.
    pub passed: Option<(Vec<String>, Instant)>,
}

#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub locks: HashMap<String, LockEntry>,
    pub barriers: HashMap<String, BarrierEntry>,
}

/// What the coordinator actor and the handles share.
pub(crate) struct Shared {
    pub cluster: Cluster,
    pub config: CoordinationConfig,
    started: Instant,
    ready: AtomicBool,
    tables: Mutex<Tables>,
    /// Woken when a barrier changes.
    pub changed: Notify,
}

impl Shared {
    pub(crate) fn new(cluster: Cluster, config: CoordinationConfig) -> Self {
        Shared {
            cluster,
            config,
            started: Instant::now(),
            ready: AtomicBool::new(false),
            tables: Mutex::default(),
            changed: Notify::new(),
        }
    }

    pub(crate) fn node(&self) -> &str {
        self.cluster.name()
    }

    pub(crate) fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every reachable coordinator, this node's included, by node name (sorted).
    pub(crate) fn coordinators(&self) -> Vec<(String, ActorRef<CoordinatorMsg>)> {
        let (scope, prefix) = (SCOPE.to_string(), "coordinator@");
        let mut found: Vec<_> = ractor::pg::which_scoped_groups(&scope)
            .into_iter()
            .filter_map(|g| {
                let node = g.strip_prefix(prefix)?.to_string();
                if self.cluster.is_blocked(&node) {
                    return None;
                }
                let member = ractor::pg::get_scoped_members(&scope, &g).into_iter().find(|c| {
                    !matches!(c.get_status(), ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped)
                })?;
                Some((node, ActorRef::<CoordinatorMsg>::from(member)))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// Nodes a majority is counted over (the rule singletons use) and how many make one.
    pub(crate) fn quorum(&self) -> (usize, usize) {
        let known = self.cluster.counted_members().1;
        (known, majority_of(known))
    }

    /// Largest wire message (the cluster's frame limit).
    pub(crate) fn max_bytes(&self) -> usize {
        self.cluster.max_frame_bytes()
    }

    fn grant(&self, request: GrantRequest) -> GrantReply {
        if !self.is_ready() {
            return GrantReply::NotReady;
        }
        let lease = Duration::from_millis(request.lease_ms).min(self.config.max_lease);
        let now = Instant::now();
        let mut tables = self.tables();
        let entry = tables.locks.entry(request.lock).or_default();
        if let Some(token) = request.token {
            entry.last_token = entry.last_token.max(token);
        }
        match &entry.holder {
            Some((owner, until)) if *owner != request.owner && *until > now => {
                GrantReply::Held { owner: owner.clone(), remaining_ms: (*until - now).as_millis() as u64 }
            }
            _ => {
                entry.holder = Some((request.owner, now + lease));
                GrantReply::Granted { last_token: entry.last_token }
            }
        }
    }

    fn snapshot(&self) -> LockSnapshot {
        let now = Instant::now();
        let tables = self.tables();
        let locks = tables
            .locks
            .iter()
            .map(|(name, e)| {
                let holder = e
                    .holder
                    .as_ref()
                    .filter(|(_, until)| *until > now)
                    .map(|(owner, until)| (owner.clone(), (*until - now).as_millis() as u64));
                (name.clone(), e.last_token, holder)
            })
            .collect();
        LockSnapshot { locks }
    }

    /// Takes in another node's table: larger tokens, and leases this node does not know of
    /// (it may have granted them before it restarted).
    fn adopt(&self, snapshot: LockSnapshot) {
        let now = Instant::now();
        let mut tables = self.tables();
        for (name, token, holder) in snapshot.locks {
            let entry = tables.locks.entry(name).or_default();
            entry.last_token = entry.last_token.max(token);
            if let Some((owner, remaining)) = holder {
                let until = now + Duration::from_millis(remaining);
                match &entry.holder {
                    Some((_, mine)) if *mine >= until => {}
                    _ => entry.holder = Some((owner, until)),
                }
            }
        }
    }

    /// Counts an arrival; says whether the barrier filled with it, or had filled before.
    pub(crate) fn arrive(&self, arrival: Arrival) -> Arrived {
        let mut tables = self.tables();
        let entry = tables.barriers.entry(arrival.barrier.clone()).or_insert_with(|| BarrierEntry {
            parties: arrival.parties,
            arrivals: BTreeMap::new(),
            passed: None,
        });
        let from = self.node().to_string();
        if let Some((participants, _)) = &entry.passed {
            let participants = participants.clone();
            return Arrived::Before(PassedMsg { from, barrier: arrival.barrier, participants });
        }
        entry.arrivals.insert(arrival.participant, arrival.from);
        // Only participants on nodes up now count, even if the loss of a node was not yet
        // taken into account here (`forget_node` runs apart).
        let up = self.cluster.up();
        entry.arrivals.retain(|_, node| node == self.cluster.name() || up.contains(node));
        let arrived = if entry.arrivals.len() >= entry.parties {
            let participants: Vec<String> = entry.arrivals.keys().cloned().collect();
            entry.passed = Some((participants.clone(), Instant::now()));
            Arrived::Filled(PassedMsg { from, barrier: arrival.barrier, participants })
        } else {
            Arrived::Waiting
        };
        drop(tables);
        self.changed.notify_waiters();
        arrived
    }

    fn passed(&self, msg: PassedMsg) {
        let mut tables = self.tables();
        let entry = tables.barriers.entry(msg.barrier).or_insert_with(|| BarrierEntry {
            parties: msg.participants.len(),
            arrivals: BTreeMap::new(),
            passed: None,
        });
        if entry.passed.is_none() {
            entry.passed = Some((msg.participants, Instant::now()));
        }
        drop(tables);
        self.changed.notify_waiters();
    }

    /// Tells every other coordinator (or only `to`) that a barrier filled.
    pub(crate) fn announce_passed(&self, passed: PassedMsg, to: Option<&str>) {
        let Ok(bytes) = foundation_actors::wire::encode(&passed, self.max_bytes()) else {
            return tracing::warn!(barrier = %passed.barrier, "barrier pass too large to announce");
        };
        for (node, peer) in self.coordinators() {
            if node != self.node() && to.is_none_or(|to| to == node) {
                let _ = peer.cast(CoordinatorMsg::Passed(Wire::from_encoded(bytes.clone())));
            }
        }
    }

    /// Forgets arrivals from a node that was lost, at barriers that have not filled: its
    /// participants cannot go on, so the barrier waits for others.
    pub(crate) fn forget_node(&self, node: &str) {
        let mut tables = self.tables();
        for entry in tables.barriers.values_mut().filter(|e| e.passed.is_none()) {
            entry.arrivals.retain(|_, n| n != node);
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut tables = self.tables();
        tables.barriers.retain(|_, e| e.passed.as_ref().is_none_or(|(_, at)| now - *at < KEEP_PASSED));
        tables.locks.values_mut().for_each(|e| {
            if e.holder.as_ref().is_some_and(|(_, until)| *until <= now) {
                e.holder = None;
            }
        });
    }

    /// Until this node grants locks: asks every reachable coordinator for its table. It is
    /// ready once every node it counts has answered (then it knows every lease still held), or
    /// once `max_lease` has passed since it started and a majority has (every lease it may
    /// have granted before a restart has expired by then).
    async fn learn_tables(self: Arc<Self>) {
        let mut answered_by = std::collections::BTreeSet::new();
        loop {
            for (node, peer) in self.coordinators() {
                if node == self.node() || answered_by.contains(&node) {
                    continue;
                }
                let from = Wire::encode(&self.node().to_string(), self.max_bytes());
                let Ok(from) = from else { continue };
                let answer =
                    peer.call(|reply| CoordinatorMsg::Snapshot(from, reply), Some(self.config.call_timeout));
                if let Ok(ractor::rpc::CallResult::Success(wire)) = answer.await
                    && let Ok(snapshot) = wire.into_inner()
                {
                    self.adopt(snapshot);
                    answered_by.insert(node);
                }
            }
            let (known, needed) = self.quorum();
            let answered = answered_by.len() + 1;
            let waited = self.started.elapsed() >= self.config.max_lease;
            if answered >= known || (waited && answered >= needed) {
                self.ready.store(true, Ordering::Release);
                tracing::debug!(node = %self.node(), answered, known, "coordinator grants locks");
                return;
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

/// The coordinator: answers other nodes' lock and barrier messages from the shared tables.
pub(crate) struct CoordinatorActor;

impl Actor for CoordinatorActor {
    type Msg = CoordinatorMsg;
    type State = Arc<Shared>;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        shared: Arc<Shared>,
    ) -> Result<Arc<Shared>, ActorProcessingErr> {
        let group = format!("coordinator@{}", shared.node());
        ractor::pg::join_scoped(SCOPE.to_string(), group, vec![myself.get_cell()]);
        myself.send_interval(TICK, || CoordinatorMsg::Tick);
        if !shared.is_ready() {
            tokio::spawn(shared.clone().learn_tables());
        }
        Ok(shared)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        shared: &mut Arc<Shared>,
    ) -> Result<(), ActorProcessingErr> {
        let group = format!("coordinator@{}", shared.node());
        ractor::pg::leave_scoped(SCOPE.to_string(), group, vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<CoordinatorMsg>,
        msg: CoordinatorMsg,
        shared: &mut Arc<Shared>,
    ) -> Result<(), ActorProcessingErr> {
        let blocked = |from: &str| shared.cluster.is_blocked(from);
        // Messages that do not decode were counted and logged by the wire adapter: skipped.
        match msg {
            CoordinatorMsg::Tick => shared.sweep(),
            CoordinatorMsg::Grant(wire, reply) => {
                if let Ok(request) = wire.into_inner()
                    && !blocked(&request.from)
                    && let Ok(answer) = Wire::encode(&shared.grant(request), shared.max_bytes())
                {
                    let _ = reply.send(answer);
                }
            }
            CoordinatorMsg::Commit(wire, reply) => {
                if let Ok(request) = wire.into_inner()
                    && !blocked(&request.from)
                {
                    let mut tables = shared.tables();
                    let entry = tables.locks.entry(request.lock).or_default();
                    entry.last_token = entry.last_token.max(request.token);
                    let _ = reply.send(true);
                }
            }
            CoordinatorMsg::Release(wire) => {
                if let Ok(request) = wire.into_inner()
                    && !blocked(&request.from)
                    && let Some(entry) = shared.tables().locks.get_mut(&request.lock)
                    && entry.holder.as_ref().is_some_and(|(owner, _)| *owner == request.owner)
                {
                    entry.holder = None;
                }
            }
            CoordinatorMsg::Snapshot(wire, reply) => {
                if let Ok(from) = wire.into_inner()
                    && !blocked(&from)
                    && let Ok(answer) = Wire::encode(&shared.snapshot(), shared.max_bytes())
                {
                    let _ = reply.send(answer);
                }
            }
            CoordinatorMsg::Arrive(wire) => {
                // From a node this one counts as down: an arrival sent before it was lost and
                // read after it was forgotten (a node that is back sends it again).
                if let Ok(arrival) = wire.into_inner()
                    && !blocked(&arrival.from)
                    && shared.cluster.up().contains(&arrival.from)
                {
                    let from = arrival.from.clone();
                    match shared.arrive(arrival) {
                        Arrived::Filled(passed) => shared.announce_passed(passed, None),
                        // The sender missed it (it was cut off when the barrier filled).
                        Arrived::Before(passed) => shared.announce_passed(passed, Some(&from)),
                        Arrived::Waiting => {}
                    }
                }
            }
            CoordinatorMsg::Passed(wire) => {
                if let Ok(passed) = wire.into_inner()
                    && !blocked(&passed.from)
                {
                    shared.passed(passed);
                }
            }
        }
        Ok(())
    }
}
