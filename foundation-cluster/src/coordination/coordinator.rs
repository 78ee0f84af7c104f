//! The coordinator actor every node runs, and the tables it keeps: per lock, the current lease
//! and the largest fencing token recorded; per barrier, who has arrived.

use foundation_core::sync::MutexRecover;
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
pub const SCOPE: &str = foundation_actors::pg_scopes::COORDINATION;
/// How often the coordinator sweeps finished barriers and a starting node asks for the
/// others' tables.
const TICK: Duration = Duration::from_millis(200);
/// How long a passed barrier is remembered (a late participant passes at once).
const KEEP_PASSED: Duration = Duration::from_secs(600);
/// How long a barrier that has not filled is remembered after its last arrival.
const KEEP_UNFILLED: Duration = Duration::from_secs(60);
/// An arrival not sent again for this long no longer counts: its participant stopped waiting
/// (it gave up, or its node is gone). Waiting participants send theirs every 250 ms.
pub(crate) const STALE_ARRIVAL: Duration = Duration::from_secs(3);

/// Asks a node to grant (or renew) a lease on a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrantRequest {
    pub from: String,
    pub lock: String,
    pub owner: String,
    pub lease_ms: u64,
    /// On renewal, the holder's token: granted only while this owner's lease is still
    /// recorded, and recorded as by a commit.
    pub token: Option<u64>,
}

/// A node's answer to a [`GrantRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum GrantReply {
    /// Granted; the largest token this node has recorded (for any lock: tokens grow
    /// across all locks, which keeps one number per node instead of one per lock name).
    Granted {
        last_token: u64,
        /// The lease granted (at most this node's `max_lease`): the holder counts on the
        /// shortest of its grants.
        lease_ms: u64,
    },
    /// Held by someone else for this much longer.
    Held { owner: String, remaining_ms: u64 },
    /// A renewal of a lease this node no longer holds for the owner (it ran out here): the
    /// lock may have had another holder since.
    Lapsed,
    /// This node does not grant yet (it has just started and is learning the others' tables).
    NotReady,
}

/// Records a newly acquired token; acknowledged only by a node that holds the owner's lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CommitRequest {
    pub from: String,
    pub lock: String,
    pub owner: String,
    pub token: u64,
}

/// Gives a lease up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReleaseRequest {
    pub from: String,
    pub lock: String,
    pub owner: String,
}

/// A node's lock table, for a node that has just started: its largest token, its running
/// leases (lock, owner, remaining ms), and how many nodes it counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LockSnapshot {
    pub max_token: u64,
    pub leases: Vec<(String, String, u64)>,
    pub known: usize,
    /// Whether the answering coordinator has learned (if not, it answers as a first start).
    pub ready: bool,
    /// The answering process's incarnation: a learner that knew an earlier one of that node
    /// does not take an unlearned table from it (it is a restart, whatever its directory says).
    pub incarnation: u64,
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

#[derive(Debug)]
pub(crate) struct BarrierEntry {
    pub parties: usize,
    /// Participant → its node, and when its arrival was last heard of.
    pub arrivals: BTreeMap<String, (String, Instant)>,
    /// Set once it filled (sticky), with when.
    pub passed: Option<(Vec<String>, Instant)>,
}

#[derive(Debug, Default)]
pub(crate) struct Tables {
    /// Running leases as this node granted them: lock → (owner, end).
    pub leases: HashMap<String, (String, Instant)>,
    /// The largest fencing token this node has recorded, for any lock.
    pub max_token: u64,
    pub barriers: HashMap<String, BarrierEntry>,
}

/// What the coordinator actor and the handles share.
pub(crate) struct Shared {
    pub cluster: Cluster,
    pub config: CoordinationConfig,
    ready: AtomicBool,
    /// A first start of this node (see `Cluster::is_fresh`): its table is complete even before
    /// it has learned the others'.
    fresh: bool,
    /// Whether a task is reading the other nodes' tables (one at a time).
    learning: AtomicBool,
    tables: Mutex<Tables>,
    /// Woken when a barrier changes.
    pub changed: Notify,
}

impl Shared {
    pub(crate) fn new(cluster: Cluster, config: CoordinationConfig) -> Self {
        // The largest token this node recorded before it restarted, if its state directory
        // kept it.
        let tables = Tables { max_token: cluster.remembered_max_token(), ..Tables::default() };
        Shared {
            fresh: cluster.is_fresh(),
            cluster,
            config,
            ready: AtomicBool::new(false),
            learning: AtomicBool::new(false),
            tables: Mutex::new(tables),
            changed: Notify::new(),
        }
    }

    pub(crate) fn node(&self) -> &str {
        self.cluster.name()
    }

    pub(crate) fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock_or_recover()
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every reachable coordinator, this node's included, by node name (sorted): only those of
    /// members that are up and count towards majorities (never an observer's, nor one seen in
    /// pg before its node is up here), so that a grant majority is drawn from the nodes a
    /// majority is counted over.
    pub(crate) fn coordinators(&self) -> Vec<(String, ActorRef<CoordinatorMsg>)> {
        crate::pg_nodes::live_by_node(&self.cluster, SCOPE, "coordinator@")
            .into_iter()
            .filter(|(node, _)| !self.cluster.is_blocked(node) && self.cluster.counts_up(node))
            .map(|(node, member)| (node, ActorRef::<CoordinatorMsg>::from(member)))
            .collect()
    }

    /// Sends the encoded `bytes` to the coordinator of every reachable node that `to` accepts.
    pub(crate) fn cast_to<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        to: impl Fn(&str) -> bool,
        bytes: &[u8],
        message: impl Fn(Wire<T>) -> CoordinatorMsg,
    ) {
        for (node, peer) in self.coordinators() {
            if to(&node) {
                let _ = peer.cast(message(Wire::from_encoded(bytes)));
            }
        }
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

    /// Answers a lease request, counting the answer in `foundation_lock_grants_total{outcome}`
    /// (the granting side's view: every node of a majority answers each acquisition).
    fn grant(&self, request: GrantRequest) -> GrantReply {
        let renewal = request.token.is_some();
        let reply = self.decide_grant(request);
        let outcome = match &reply {
            GrantReply::Granted { .. } if renewal => "renewed",
            GrantReply::Granted { .. } => "granted",
            GrantReply::Held { .. } => "held",
            GrantReply::Lapsed => "lapsed",
            GrantReply::NotReady => "not_ready",
        };
        metrics::counter!("foundation_lock_grants_total", "outcome" => outcome).increment(1);
        reply
    }

    fn decide_grant(&self, request: GrantRequest) -> GrantReply {
        if !self.is_ready() {
            return GrantReply::NotReady;
        }
        let lease = Duration::from_millis(request.lease_ms).min(self.config.max_lease);
        let now = Instant::now();
        let mut tables = self.tables();
        let current = tables.leases.get(&request.lock).filter(|(_, until)| *until > now).cloned();
        match (current, request.token) {
            (Some((owner, until)), _) if owner != request.owner => {
                GrantReply::Held { owner, remaining_ms: (until - now).as_millis() as u64 }
            }
            // A renewal extends a running lease only: once it ran out here, another owner may
            // have held the lock (and released it) in between.
            (None, Some(_)) => GrantReply::Lapsed,
            (_, token) => {
                tables.max_token = tables.max_token.max(token.unwrap_or(0));
                tables.leases.insert(request.lock, (request.owner, now + lease));
                GrantReply::Granted { last_token: tables.max_token, lease_ms: lease.as_millis() as u64 }
            }
        }
    }

    /// Records a token; whether this node holds the owner's running lease (the only case in
    /// which it acknowledges, once a restart would still know the token: see `cover_token`),
    /// and the largest token now recorded.
    fn commit(&self, request: CommitRequest) -> (bool, u64) {
        let now = Instant::now();
        let mut tables = self.tables();
        tables.max_token = tables.max_token.max(request.token);
        let held = tables
            .leases
            .get(&request.lock)
            .is_some_and(|(owner, until)| *owner == request.owner && *until > now);
        (held, tables.max_token)
    }

    fn release(&self, request: ReleaseRequest) {
        let mut tables = self.tables();
        if tables.leases.get(&request.lock).is_some_and(|(owner, _)| *owner == request.owner) {
            tables.leases.remove(&request.lock);
        }
    }

    fn snapshot(&self) -> LockSnapshot {
        let now = Instant::now();
        let tables = self.tables();
        let leases = tables
            .leases
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(lock, (owner, until))| (lock.clone(), owner.clone(), (*until - now).as_millis() as u64))
            .collect();
        LockSnapshot {
            max_token: tables.max_token,
            leases,
            known: self.quorum().0,
            ready: self.is_ready(),
            incarnation: self.cluster.incarnation(),
        }
    }

    /// Takes in another node's table: a larger token, and leases this node does not know of
    /// (it may have granted them before it restarted).
    fn adopt(&self, snapshot: LockSnapshot) {
        let now = Instant::now();
        let mut tables = self.tables();
        tables.max_token = tables.max_token.max(snapshot.max_token);
        for (lock, owner, remaining) in snapshot.leases {
            let until = now + Duration::from_millis(remaining);
            match tables.leases.get(&lock) {
                Some((_, mine)) if *mine >= until => {}
                _ => {
                    tables.leases.insert(lock, (owner, until));
                }
            }
        }
    }

    /// Counts an arrival (or hears of it again); says whether the barrier filled with it, or
    /// had filled before. Only arrivals heard of within [`STALE_ARRIVAL`], from this node or
    /// nodes up now, count.
    pub(crate) fn arrive(&self, arrival: Arrival) -> Arrived {
        let now = Instant::now();
        let up = self.cluster.up();
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
        let new = entry.arrivals.insert(arrival.participant, (arrival.from, now)).is_none();
        // Not counted: participants that stopped sending (gave up, or their node is gone),
        // even if the loss of their node was not yet taken into account here.
        entry.arrivals.retain(|_, (node, seen)| {
            now - *seen < STALE_ARRIVAL && (node == self.cluster.name() || up.contains(node))
        });
        let arrived = if entry.arrivals.len() >= entry.parties {
            let participants: Vec<String> = entry.arrivals.keys().cloned().collect();
            entry.passed = Some((participants.clone(), now));
            Arrived::Filled(PassedMsg { from, barrier: arrival.barrier, participants })
        } else {
            Arrived::Waiting
        };
        drop(tables);
        if new || matches!(arrived, Arrived::Filled(_)) {
            self.changed.notify_waiters();
        }
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
        let others = |node: &str| node != self.node() && to.is_none_or(|to| to == node);
        self.cast_to(others, &bytes, CoordinatorMsg::Passed);
    }

    /// Forgets arrivals from a node that was lost, at barriers that have not filled: its
    /// participants cannot go on, so the barrier waits for others.
    pub(crate) fn forget_node(&self, node: &str) {
        let mut tables = self.tables();
        for entry in tables.barriers.values_mut().filter(|e| e.passed.is_none()) {
            entry.arrivals.retain(|_, (n, _)| n != node);
        }
    }

    /// Drops ended leases, barriers passed long ago and barriers nobody waits at any more.
    fn sweep(&self) {
        let now = Instant::now();
        let mut tables = self.tables();
        tables.leases.retain(|_, (_, until)| *until > now);
        tables.barriers.retain(|_, e| match &e.passed {
            Some((_, at)) => now - *at < KEEP_PASSED,
            None => e.arrivals.values().any(|(_, seen)| now - *seen < KEEP_UNFILLED),
        });
    }

    /// Until this node grants locks: asks every reachable coordinator for its table. It is
    /// ready once enough other nodes have answered that every majority of the known nodes
    /// (counted by it or by any node that answered) includes one of them besides itself: then
    /// it knows the largest token committed and every lease still running, even if it
    /// restarted and forgot what it had granted. Or, failing that, once `max_lease` has passed
    /// since it started: every lease it granted before it restarted has ended, and leases the
    /// nodes it could not read granted are still refused by them (they remember), so a grant
    /// majority that includes this node is safe again; tokens stay above earlier ones by the
    /// clock floor (see `lock`). (A node that knows of no other node, and whose
    /// `cluster.expected_nodes` does not say there are more, is ready at once: a new
    /// cluster. Known nodes include members remembered in the state directory, so a restarted
    /// node with one is never such a node.)
    async fn learn_tables(weak: std::sync::Weak<Self>) {
        let mut answered_by = std::collections::BTreeSet::new();
        let mut known_elsewhere = 0;
        let started = Instant::now();
        loop {
            let Some(this) = weak.upgrade() else { return };
            if started.elapsed() >= this.config.max_lease {
                this.ready.store(true, Ordering::Release);
                this.learning.store(false, Ordering::Release);
                tracing::info!(
                    node = %this.node(), answered = answered_by.len(),
                    "coordinator grants locks: every lease it may have granted before it started has ended"
                );
                return;
            }
            for (node, peer) in this.coordinators() {
                if node == this.node() || answered_by.contains(&node) {
                    continue;
                }
                let Ok(from) = Wire::encode(&this.node().to_string(), this.max_bytes()) else { continue };
                let answer =
                    peer.call(|reply| CoordinatorMsg::Snapshot(from, reply), Some(this.config.call_timeout));
                if let Ok(ractor::rpc::CallResult::Success(wire)) = answer.await
                    && let Ok(snapshot) = wire.into_inner()
                {
                    // An unlearned table from a node this one knew in an earlier process is a
                    // restart's forgotten table, not a first start's: not counted.
                    let known_before = this.cluster.known_incarnation(&node);
                    if !snapshot.ready && known_before.is_some_and(|k| k > 0 && k < snapshot.incarnation) {
                        continue;
                    }
                    known_elsewhere = known_elsewhere.max(snapshot.known);
                    this.adopt(snapshot);
                    answered_by.insert(node);
                }
            }
            let known = this.quorum().0.max(known_elsewhere);
            let required = (known - 1).min(known - majority_of(known) + 1);
            if answered_by.len() >= required {
                this.ready.store(true, Ordering::Release);
                this.learning.store(false, Ordering::Release);
                tracing::debug!(node = %this.node(), answered = answered_by.len(), known, "coordinator grants locks");
                return;
            }
            drop(this);
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
        if !shared.is_ready() && !shared.learning.swap(true, Ordering::AcqRel) {
            tokio::spawn(Shared::learn_tables(Arc::downgrade(&shared)));
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
            // Grants and commits only for nodes that count as up here (a process held back
            // for its removal, or an observer, gets nothing), and said so at once rather than
            // left to time out. (`from` is the requester's own claim: it narrows, it does not
            // prove; the grant itself travels back over the session of the node asked.)
            CoordinatorMsg::Grant(wire, reply) => {
                if let Ok(request) = wire.into_inner()
                    && !blocked(&request.from)
                {
                    let answer = match shared.cluster.counts_up(&request.from) {
                        true => shared.grant(request),
                        false => GrantReply::NotReady,
                    };
                    if let Ok(answer) = Wire::encode(&answer, shared.max_bytes()) {
                        let _ = reply.send(answer);
                    }
                }
            }
            CoordinatorMsg::Commit(wire, reply) => {
                if let Ok(request) = wire.into_inner()
                    && !blocked(&request.from)
                {
                    if !shared.cluster.counts_up(&request.from) {
                        let _ = reply.send(false);
                    } else {
                        // The token is made durable off this actor (a synced write): grants
                        // and renewals are not held up behind the disk.
                        let (held, max) = shared.commit(request);
                        let cluster = shared.cluster.clone();
                        tokio::task::spawn_blocking(move || {
                            let _ = reply.send(held && cluster.cover_token(max));
                        });
                    }
                }
            }
            CoordinatorMsg::Release(wire) => {
                if let Ok(request) = wire.into_inner()
                    && !blocked(&request.from)
                {
                    shared.release(request);
                }
            }
            // A coordinator that has not learned yet answers only if it is a first start (its
            // empty table is the truth); a restarted one answers nothing: its table may be
            // empty only because it forgot, and a node learning from it would learn nothing.
            CoordinatorMsg::Snapshot(wire, reply) => {
                if let Ok(from) = wire.into_inner()
                    && !blocked(&from)
                    && (shared.is_ready() || shared.fresh)
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
