//! Cluster singletons: one copy in the cluster, run under a lease granted by a majority,
//! restarted on a survivor when its node is lost, never two at once.
//!
//! Every node that declares a singleton (its **candidates**) runs a small manager:
//!
//! - it announces the candidacy in the pg group `NAME@NODE` of scope [`CANDIDATES_SCOPE`]
//!   (observers never do); nodes that did not declare the singleton are never placed;
//! - when no live holder is visible, the lowest-named candidate that is up (in its view; a new
//!   candidate first waits half a second, so that candidates declared together see each other)
//!   campaigns for the [coordination](crate::coordination) lock `singleton:NAME` with a lease of
//!   [`LEASE`], granted by a majority of the cluster's known nodes (every node grants, candidate
//!   or not). If no holder has been seen for 20 s (the lowest candidate cannot get a
//!   majority), every candidate campaigns;
//! - the winner starts the copy under a local supervisor, keeps a marker in the pg group
//!   `NAME@NODE` of scope [`SCOPE`] (so every node sees who holds it) and renews the lease
//!   every third of it. A copy runs only while its lease is valid: when a renewal cannot reach
//!   a majority before the holder's end of the lease (nine tenths of it, counted from before
//!   the request), the copy is **killed** at that moment, and the other nodes grant the lock
//!   again only once the whole lease has run out as *they* measure it, from when they granted.
//!
//! Guarantee: at most one copy runs at any time (with clocks that run at rates within a tenth
//! of each other; no clock is compared between nodes), and only on a candidate of a connected
//! majority. A holder that was frozen (SIGSTOP) past its lease wakes with its lease over: its
//! copy must not act first — [`lease_valid`] says whether it may, and the copy is killed as
//! soon as its node's manager runs. Cost: a lost holder (killed, frozen, cut off) is replaced
//! about one [`LEASE`] (3 s) after its last renewal, not at once, because a killed node and
//! one cut off by a partition look alike; a holder that leaves on purpose (its handle dropped,
//! [`Cluster::shutdown`]) gives its lease back and is replaced at once. A minority side runs no
//! copy. The lease check is each copy's own business: a copy that ignores [`lease_valid`]
//! could act for the moment between its lease's end and its kill.

use foundation_core::sync::MutexRecover;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::supervision::{ChildSpec, Strategy, Supervisor, SupervisorHandle, SupervisorSpec};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Cluster;
use crate::coordination::{Coordination, CoordinationConfig, LockGuard};

/// The pg scope of holder markers (`NAME@NODE`: the node runs the singleton).
pub const SCOPE: &str = foundation_actors::pg_scopes::SINGLETONS;
/// The pg scope of candidate markers (`NAME@NODE`: the node declared the singleton).
pub const CANDIDATES_SCOPE: &str = foundation_actors::pg_scopes::SINGLETON_CANDIDATES;
/// A singleton's lease: a lost holder is replaced about this long after its last renewal.
pub const LEASE: Duration = Duration::from_secs(3);
/// How often a manager re-evaluates even without membership events.
pub const EVALUATE_EVERY: Duration = Duration::from_millis(250);
/// Names of nodes that are observers (`foundation cluster status`), not members: they never
/// hold singletons and do not count towards the majority.
pub const OBSERVER_PREFIX: &str = "status-";
/// With no holder seen for this long, every candidate campaigns, not only the lowest (which may
/// be unable to reach a majority). Longer than a restarted coordinator's wait
/// (`DEFAULT_MAX_LEASE`) and a lease, so that it does not compete with the usual path.
const NO_HOLDER_FALLBACK: Duration = Duration::from_secs(20);
/// How long a new candidate waits before its first campaign (see `Manager::run`).
const SETTLE: Duration = Duration::from_millis(500);
/// How long a request to another node's coordinator may take during a campaign or renewal.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// What happened to a singleton on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingletonEvent {
    /// It started here.
    Started,
    /// It stopped here, and why.
    Stopped(String),
}

/// A singleton declared on this node. Dropping it withdraws the declaration here: if this node
/// runs the singleton, it is stopped and its lease given back (and another node that declared
/// it takes over).
#[derive(Debug)]
pub struct SingletonHandle {
    events: broadcast::Sender<SingletonEvent>,
    /// Subscribed before the manager started, so the first subscriber misses nothing.
    first: std::sync::Mutex<Option<broadcast::Receiver<SingletonEvent>>>,
    /// Tells the manager to stop the singleton here and end.
    release: Option<oneshot::Sender<()>>,
}

impl SingletonHandle {
    /// Where the singleton starts and stops on this node. The first call sees every event since
    /// the singleton was declared; later calls see events from then on.
    pub fn subscribe(&self) -> broadcast::Receiver<SingletonEvent> {
        let first = self.first.lock_or_recover().take();
        first.unwrap_or_else(|| self.events.subscribe())
    }
}

impl Drop for SingletonHandle {
    fn drop(&mut self) {
        // The manager stops a copy running here and ends (it cannot be aborted: that would
        // leave the copy running with no one to stop it).
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

/// Whether the copy of singleton `name` running in this process may act now: its lease is
/// valid (renewed in time, and not past its end by this process's clock). Call it before each
/// action with effects outside the copy (a reply that grants something, a write): a copy that
/// wakes from a pause (SIGSTOP) past its lease reads `false` before its manager has had time
/// to kill it. `false` when no copy of `name` runs in this process.
///
/// Per process: with several nodes in one process (tests), it reads the lease of whichever of
/// them runs the copy. The clock is the monotonic one, which on Linux does not advance while
/// the machine is suspended: a host suspended past a lease is not covered (a paused process
/// is).
pub fn lease_valid(name: &str) -> bool {
    lease_valid_until(name).is_some()
}

/// Until when the copy of singleton `name` running in this process may act, if it may act now
/// (see [`lease_valid`]): the end of its lease as this process counts it, moved on by every
/// renewal. A copy that records what it does can stamp each act with it, so that a checker can
/// tell that no two copies acted under valid leases at once.
pub fn lease_valid_until(name: &str) -> Option<std::time::Instant> {
    Leases::lock().as_ref().and_then(|map| map.get(name)).and_then(Validity::until)
}

/// The fencing token of the lease under which the copy of singleton `name` in this process
/// runs, if it may act now (see [`lease_valid`]): larger than every earlier holder's, on any
/// node. A copy that writes somewhere shared passes it along, so that a copy that outlived its
/// lease is refused (a [replicated log](crate::replicated_log)'s `lead` takes it).
pub fn lease_token(name: &str) -> Option<u64> {
    Leases::lock().as_ref().and_then(|map| map.get(name)).and_then(|v| v.until().map(|_| v.token))
}

/// A running copy's lease, as [`lease_valid`] reads it.
#[derive(Clone)]
struct Validity {
    held: watch::Receiver<bool>,
    until: Arc<Mutex<Instant>>,
    token: u64,
}

impl Validity {
    fn until(&self) -> Option<std::time::Instant> {
        let until = *self.until.lock_or_recover();
        (*self.held.borrow() && Instant::now() < until).then(|| until.into_std())
    }
}

/// Leases of the copies running in this process, by singleton name.
static LEASES: Mutex<Option<HashMap<String, Validity>>> = Mutex::new(None);

/// [`LEASES`] with its map made.
struct Leases;

impl Leases {
    fn lock() -> std::sync::MutexGuard<'static, Option<HashMap<String, Validity>>> {
        LEASES.lock_or_recover()
    }

    fn insert(name: &str, validity: Validity) {
        Self::lock().get_or_insert_with(HashMap::new).insert(name.to_string(), validity);
    }

    /// Removes `name`'s entry if it is still the one given (another in-process node may have
    /// taken the singleton since).
    fn remove(name: &str, validity: &Validity) {
        let mut leases = Self::lock();
        if let Some(map) = leases.as_mut()
            && map.get(name).is_some_and(|v| Arc::ptr_eq(&v.until, &validity.until))
        {
            map.remove(name);
        }
    }
}

/// The singleton managers of one node, so that leaving stops their copies first.
#[derive(Default)]
pub(crate) struct Managers {
    leaving: std::sync::OnceLock<watch::Sender<bool>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Managers {
    fn leaving(&self) -> &watch::Sender<bool> {
        self.leaving.get_or_init(|| watch::channel(false).0)
    }

    fn add(&self, task: JoinHandle<()>) {
        let mut tasks = self.tasks.lock_or_recover();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Tells every manager that the node leaves (each stops its copy and gives its lease back)
    /// and waits for them, at most `timeout`.
    pub(crate) async fn stop_all(&self, timeout: Duration) {
        self.leaving().send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock_or_recover());
        let _ = tokio::time::timeout(timeout, join_each(tasks)).await;
    }
}

async fn join_each(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// The marker a holder, a candidate (or a replica's node) keeps in pg: remotable (so peers see
/// it), and otherwise idle.
pub(crate) struct Marker;

#[derive(RactorClusterMessage)]
pub(crate) enum MarkerMsg {
    Ping,
}

impl Actor for Marker {
    type Msg = MarkerMsg;
    type State = ();
    /// (scope, group) to join.
    type Arguments = (String, String);

    async fn pre_start(
        &self,
        myself: ActorRef<MarkerMsg>,
        (scope, group): (String, String),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(scope, group, vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<MarkerMsg>,
        _: MarkerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

impl SingletonHandle {
    /// Declares a singleton called `name`, run from `spec` on exactly one of the nodes that
    /// declare it (see the module docs for what is guaranteed). Declare it on every node that
    /// may run it; the copy should check [`lease_valid`] before acting.
    pub fn start(cluster: &Cluster, name: &str, spec: ChildSpec) -> SingletonHandle {
        let (events, first) = broadcast::channel(64);
        let (release, released) = oneshot::channel::<()>();
        let leaving = cluster.singleton_managers().leaving().subscribe();
        let manager =
            Manager { cluster: cluster.clone(), name: name.to_string(), spec, events: events.clone() };
        let task = tokio::spawn(manager.run(released, leaving));
        cluster.singleton_managers().add(task);
        SingletonHandle { events, first: std::sync::Mutex::new(Some(first)), release: Some(release) }
    }
}

/// Nodes whose marker in `scope` says they hold (or are candidates for) `name`, by name.
fn nodes_in(cluster: &Cluster, scope: &str, name: &str) -> BTreeSet<String> {
    crate::pg_nodes::live_by_node(cluster, scope, &format!("{name}@"))
        .into_iter()
        .map(|(node, _)| node)
        .collect()
}

struct Manager {
    cluster: Cluster,
    name: String,
    spec: ChildSpec,
    events: broadcast::Sender<SingletonEvent>,
}

/// The copy running here.
struct Running {
    supervisor: SupervisorHandle,
    marker: ActorRef<MarkerMsg>,
    guard: LockGuard,
    validity: Validity,
}

impl Manager {
    async fn run(self, mut released: oneshot::Receiver<()>, mut leaving: watch::Receiver<bool>) {
        let me = self.cluster.name().to_string();
        let observer = me.starts_with(OBSERVER_PREFIX);
        // An observer may declare a singleton (the trace coordinators every node that hears of
        // a cluster trace declares) but never holds one.
        let candidacy = match observer {
            true => None,
            false => Actor::spawn(
                None,
                Marker,
                (CANDIDATES_SCOPE.to_string(), format!("{}@{me}", self.name)),
            )
            .await
            .map(|(marker, _)| marker)
            .map_err(|e| tracing::error!(singleton = %self.name, error = %e, "cannot announce the candidacy"))
            .ok(),
        };
        let config = CoordinationConfig { lease: LEASE, max_lease: LEASE, call_timeout: CALL_TIMEOUT };
        let lock = format!("singleton:{}", self.name);
        let mut membership = self.cluster.subscribe();
        let mut holder_seen = Instant::now();
        // Candidates declared together (every node that hears of a cluster trace, nodes
        // started together) see each other's candidacy before the first campaign, so that the
        // lowest-named of them takes it rather than the first to declare.
        tokio::select! {
            _ = tokio::time::sleep(SETTLE) => {}
            _ = &mut released => return self.end(candidacy),
            _ = leaving.changed() => return self.end(candidacy),
        }
        loop {
            if *leaving.borrow() {
                break;
            }
            let coordination =
                self.cluster.coordinator().map(|shared| Coordination::with(shared, config.clone()));
            let campaign = match (&candidacy, coordination) {
                (Some(_), Some(coordination)) if self.should_campaign(&me, &mut holder_seen) => {
                    Some(coordination)
                }
                _ => None,
            };
            let Some(coordination) = campaign else {
                tokio::select! {
                    _ = membership.recv() => {}
                    _ = tokio::time::sleep(EVALUATE_EVERY) => {}
                    _ = &mut released => break,
                    _ = leaving.changed() => break,
                }
                continue;
            };
            // A campaign is given up (and what it was granted given back) as soon as this node
            // should no longer campaign: a holder appeared, or a lower candidate came up.
            let campaign = coordination.lock_with_lease(&lock, LEASE, LEASE);
            tokio::pin!(campaign);
            let attempt = loop {
                tokio::select! {
                    attempt = &mut campaign => break Some(attempt),
                    _ = tokio::time::sleep(EVALUATE_EVERY) => {
                        if !self.should_campaign(&me, &mut holder_seen) {
                            break None;
                        }
                    }
                    _ = &mut released => return self.end(candidacy),
                    _ = leaving.changed() => return self.end(candidacy),
                }
            };
            let Some(Ok(guard)) = attempt else { continue };
            let Some(mut running) = self.start_copy(&me, guard).await else {
                tokio::time::sleep(EVALUATE_EVERY).await;
                continue;
            };
            // Ok: a stop asked for here (the lease is still held); Err: the lease is gone.
            let stopped: Result<&str, String> = loop {
                tokio::select! {
                    _ = running.guard.lost() => {
                        break Err(format!("lost its lease (no majority renewed it within {LEASE:?})"));
                    }
                    _ = &mut released => break Ok("its handle was dropped here"),
                    _ = leaving.changed() => break Ok("this node is leaving"),
                    _ = tokio::time::sleep(EVALUATE_EVERY) => {
                        if running.validity.until().is_none() {
                            break Err("its lease ran out (this process was paused past it)".into());
                        }
                        if running.supervisor.children().await.is_err() {
                            break Err("its supervisor stopped".into());
                        }
                    }
                }
            };
            holder_seen = Instant::now();
            match stopped {
                Ok(reason) => {
                    self.stop_copy(&me, running, reason, true).await;
                    break;
                }
                Err(reason) => self.stop_copy(&me, running, &reason, false).await,
            }
        }
        self.end(candidacy);
    }

    /// Withdraws this node's candidacy.
    fn end(&self, candidacy: Option<ActorRef<MarkerMsg>>) {
        if let Some(candidacy) = candidacy {
            candidacy.stop(None);
        }
    }

    /// Whether this node should campaign now: no live holder is visible and this node is the
    /// lowest-named candidate up, or no holder has been seen for [`NO_HOLDER_FALLBACK`] (the
    /// lowest candidate cannot get a majority: every candidate tries).
    fn should_campaign(&self, me: &str, holder_seen: &mut Instant) -> bool {
        let up: BTreeSet<String> =
            self.cluster.up().into_iter().chain(std::iter::once(me.to_string())).collect();
        let holders = nodes_in(&self.cluster, SCOPE, &self.name);
        if holders.iter().any(|h| up.contains(h)) {
            *holder_seen = Instant::now();
            return false;
        }
        let candidates = nodes_in(&self.cluster, CANDIDATES_SCOPE, &self.name);
        let lowest = candidates.iter().find(|c| up.contains(*c) && !c.starts_with(OBSERVER_PREFIX));
        let campaign = lowest.is_some_and(|l| l == me) || holder_seen.elapsed() > NO_HOLDER_FALLBACK;
        if campaign {
            tracing::trace!(singleton = %self.name, node = %me, ?candidates, ?up, "campaigning");
        }
        campaign
    }

    /// Starts the copy under a local supervisor, once the lease is held.
    async fn start_copy(&self, me: &str, guard: LockGuard) -> Option<Running> {
        let (held, until) = guard.validity();
        let validity = Validity { held, until, token: guard.token() };
        let spec = SupervisorSpec::new(Strategy::OneForOne).child(self.spec.clone());
        // Registered first: the copy may check its lease from its `pre_start`.
        Leases::insert(&self.name, validity.clone());
        let supervisor = match Supervisor::start(format!("singleton:{}", self.name), spec).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(singleton = %self.name, error = %e, "singleton failed to start");
                Leases::remove(&self.name, &validity);
                guard.release().await;
                return None;
            }
        };
        match Actor::spawn(None, Marker, (SCOPE.to_string(), format!("{}@{me}", self.name))).await {
            Ok((marker, _)) => {
                tracing::info!(singleton = %self.name, node = %me, token = guard.token(), "singleton started here");
                metrics::counter!("foundation_singleton_starts_total", "singleton" => singleton_label(&self.name))
                    .increment(1);
                let _ = self.events.send(SingletonEvent::Started);
                Some(Running { supervisor, marker, guard, validity })
            }
            Err(e) => {
                tracing::error!(singleton = %self.name, error = %e, "cannot announce the singleton");
                supervisor.cell().kill();
                let _ = supervisor.wait().await;
                Leases::remove(&self.name, &validity);
                guard.release().await;
                None
            }
        }
    }

    /// Stops the copy, then gives the lease back (a no-op if it was lost). `graceful`: a stop
    /// asked for while the lease is held (children stop within their shutdown timeouts);
    /// otherwise the lease is over and the copy is killed at once.
    async fn stop_copy(&self, me: &str, running: Running, reason: &str, graceful: bool) {
        let Running { supervisor, marker, mut guard, validity } = running;
        marker.stop(None);
        if graceful {
            // Its children stop within their shutdown timeouts, but never past the lease: if the
            // lease is lost meanwhile (the node is leaving and its renewals stop), the copy is
            // killed at that moment.
            let cell = supervisor.cell();
            let stop = supervisor.stop();
            tokio::pin!(stop);
            tokio::select! {
                _ = &mut stop => {}
                _ = guard.lost() => {
                    Leases::remove(&self.name, &validity);
                    cell.kill();
                    let _ = stop.await;
                }
            }
        } else {
            Leases::remove(&self.name, &validity);
            supervisor.cell().kill();
            let _ = supervisor.wait().await;
        }
        Leases::remove(&self.name, &validity);
        guard.release().await;
        tracing::warn!(singleton = %self.name, node = %me, %reason, "singleton stopped here");
        metrics::counter!("foundation_singleton_stops_total", "singleton" => singleton_label(&self.name))
            .increment(1);
        let _ = self.events.send(SingletonEvent::Stopped(reason.to_string()));
    }
}

/// The `singleton` label of a singleton: its name, capped by `bounded_label`; the tracer's
/// per-trace coordinators (`scope.trace.ID`, one name per cluster trace) together as
/// `scope.trace`, so that they do not use up the label's values.
fn singleton_label(name: &str) -> String {
    if name.starts_with("scope.trace.") {
        "scope.trace".to_string()
    } else {
        foundation_core::telemetry::bounded_label("singleton", name)
    }
}
