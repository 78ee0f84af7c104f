//! Cluster singletons: one instance in the cluster, restarted on a survivor when its node is
//! lost, and stopped on the minority side of a partition.
//!
//! Every node that declares a singleton runs a small manager that decides from what the node
//! itself sees, with no extra protocol:
//!
//! - the node holding the singleton runs it under a local supervisor and keeps a marker actor in
//!   the pg group `NAME@node` (scope [`SCOPE`]), so every node sees who holds it; when the
//!   holder's node is lost its marker's stand-ins die and the group empties everywhere;
//! - a node starts the singleton only if no live holder is visible, it is the lowest-named node
//!   among those up (itself included), and it sees a majority of the nodes it has ever known
//!   (its seeds count as known before it reaches them, so a joining node waits until it has
//!   joined);
//! - a holder stops it when it loses that majority, or when a lower-named node also holds it
//!   (two holders after a partition heals: the lower name keeps it).
//!
//! Guarantee: at most one copy runs within any connected majority, and none on a minority side.
//! Not guaranteed: during the failure-detection delay a frozen holder still runs its copy while
//! the majority starts another (the frozen one does no work, and stops when it resumes and finds
//! itself alone); and the majority is counted over every node ever seen (except nodes that
//! left on purpose), so a node lost for good still counts until this process restarts.

use std::collections::BTreeSet;
use std::time::Duration;

use foundation_actors::supervision::{ChildSpec, Strategy, Supervisor, SupervisorHandle, SupervisorSpec};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::broadcast;

use crate::Cluster;

/// The pg scope of singleton markers.
pub const SCOPE: &str = "foundation.singletons";
/// How often a manager re-evaluates even without membership events.
pub const EVALUATE_EVERY: Duration = Duration::from_millis(250);
/// Names of nodes that are observers (`foundation cluster status`), not members: they never
/// hold singletons and do not count towards the majority.
pub const OBSERVER_PREFIX: &str = "status-";

/// What happened to a singleton on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingletonEvent {
    /// It started here.
    Started,
    /// It stopped here, and why.
    Stopped(String),
}

/// A singleton declared on this node. Dropping it withdraws the declaration here: if this node
/// runs the singleton, it is stopped (and another node that declared it takes over).
#[derive(Debug)]
pub struct SingletonHandle {
    events: broadcast::Sender<SingletonEvent>,
    /// Subscribed before the manager started, so the first subscriber misses nothing.
    first: std::sync::Mutex<Option<broadcast::Receiver<SingletonEvent>>>,
    /// Tells the manager to stop the singleton here and end.
    release: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SingletonHandle {
    /// Where the singleton starts and stops on this node. The first call sees every event since
    /// the singleton was declared; later calls see events from then on.
    pub fn subscribe(&self) -> broadcast::Receiver<SingletonEvent> {
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
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

/// The marker a holder (or a replica's node) keeps in pg: remotable (so peers see it), and
/// otherwise idle.
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

struct Running {
    supervisor: SupervisorHandle,
    marker: ActorRef<MarkerMsg>,
}

impl Cluster {
    /// Declares a singleton called `name`, run from `spec` on exactly one node of the cluster
    /// (see the module docs for what is guaranteed). Declare it on every node that may run it.
    pub fn start_singleton(&self, name: &str, spec: ChildSpec) -> SingletonHandle {
        let (events, first) = broadcast::channel(64);
        let (cluster, name, tx) = (self.clone(), name.to_string(), events.clone());
        let (release, mut released) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut membership = cluster.subscribe();
            let mut running: Option<Running> = None;
            loop {
                evaluate(&cluster, &name, &spec, &mut running, &tx).await;
                tokio::select! {
                    _ = membership.recv() => {}
                    _ = tokio::time::sleep(EVALUATE_EVERY) => {}
                    _ = &mut released => {
                        if let Some(r) = running.take() {
                            r.marker.stop(None);
                            r.supervisor.stop().await;
                            let _ = tx.send(SingletonEvent::Stopped("its handle was dropped here".into()));
                        }
                        return;
                    }
                }
            }
        });
        SingletonHandle { events, first: std::sync::Mutex::new(Some(first)), release: Some(release) }
    }
}

/// Nodes (not observers) currently holding the singleton `name`, by name.
fn holders(name: &str) -> BTreeSet<String> {
    let prefix = format!("{name}@");
    ractor::pg::which_scoped_groups(&SCOPE.to_string())
        .into_iter()
        .filter_map(|g| g.strip_prefix(&prefix).map(str::to_string).map(|node| (g, node)))
        .filter(|(g, _)| !ractor::pg::get_scoped_members(&SCOPE.to_string(), g).is_empty())
        .map(|(_, node)| node)
        .collect()
}

async fn evaluate(
    cluster: &Cluster,
    name: &str,
    spec: &ChildSpec,
    running: &mut Option<Running>,
    events: &broadcast::Sender<SingletonEvent>,
) {
    let me = cluster.name().to_string();
    // Observers never count; nor do nodes that left on purpose (the cluster shrank); seeds never
    // reached do (see `Cluster::counted_members`).
    let (members, known) = cluster.counted_members();
    let up: BTreeSet<String> = members
        .iter()
        .filter(|m| m.status == crate::MemberStatus::Up)
        .map(|m| m.name.clone())
        .chain(std::iter::once(me.clone()))
        .collect();
    let majority = up.len() * 2 > known;
    let live_holders: BTreeSet<String> = holders(name).into_iter().filter(|h| up.contains(h)).collect();

    if let Some(current) = running.as_ref() {
        let stop_reason = if !majority {
            Some(format!("lost the majority ({} of {known} nodes reachable)", up.len()))
        } else {
            live_holders.iter().find(|h| **h < me).map(|h| format!("{h} also holds it and keeps it"))
        };
        if let Some(reason) = stop_reason {
            current.marker.stop(None);
            if let Some(r) = running.take() {
                r.supervisor.stop().await;
            }
            tracing::warn!(singleton = %name, node = %me, %reason, "singleton stopped here");
            let _ = events.send(SingletonEvent::Stopped(reason));
        } else if current.supervisor.children().await.is_err() {
            // Its supervisor gave up (restart intensity exceeded): let the decision run again.
            current.marker.stop(None);
            running.take();
            let _ = events.send(SingletonEvent::Stopped("its supervisor stopped".into()));
        }
        return;
    }

    // An observer never holds one, whatever its name (it may declare one, e.g. the trace
    // coordinators every node that hears of a cluster trace declares).
    let lowest = !me.starts_with(OBSERVER_PREFIX) && up.iter().next().is_some_and(|first| *first == me);
    if majority && live_holders.is_empty() && lowest {
        let supervisor_spec = SupervisorSpec::new(Strategy::OneForOne).child(spec.clone());
        let supervisor = match Supervisor::start(format!("singleton:{name}"), supervisor_spec).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(singleton = %name, error = %e, "singleton failed to start");
                return;
            }
        };
        match Actor::spawn(None, Marker, (SCOPE.to_string(), format!("{name}@{me}"))).await {
            Ok((marker, _)) => {
                tracing::info!(singleton = %name, node = %me, "singleton started here");
                *running = Some(Running { supervisor, marker });
                let _ = events.send(SingletonEvent::Started);
            }
            Err(e) => {
                tracing::error!(singleton = %name, error = %e, "cannot announce the singleton");
                supervisor.stop().await;
            }
        }
    }
}
