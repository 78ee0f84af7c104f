//! A distributed name registry (what Horde.Registry is to Elixir), on ractor's process groups:
//! a name is a pg group in scope [`SCOPE`] with one member, visible on every node.
//!
//! - [`Cluster::register_name`] refuses a name that has a live holder anywhere in the cluster.
//! - When the holder's node is lost its stand-ins die, the group empties everywhere and the
//!   name is free again.
//! - Two nodes that were partitioned may both register a name. When they reconnect, the rule is:
//!   **the holder on the node with the lowest name keeps it**; every other holder is stopped by
//!   its own node with the reason `name conflict: NAME is held on NODE`.
//!
//! Only remotable actors (message type derived with `RactorClusterMessage`) are visible on other
//! nodes; registering a local-only actor makes the name unique on this node only.

use std::collections::HashMap;

use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::NodeServerMessage;

use crate::Cluster;

/// The pg scope of registered names.
pub const SCOPE: &str = foundation_actors::pg_scopes::NAMES;

/// Errors of the name registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name has a live holder.
    #[error("name `{name}` is already held on node `{node}`")]
    Taken {
        /// The name.
        name: String,
        /// The node holding it.
        node: String,
    },
    /// The actor is not running.
    #[error("cannot register `{0}`: the actor is not running")]
    NotRunning(String),
}

impl Cluster {
    /// Registers `actor` under `name`, unique across the cluster (see [`names`](crate::names)).
    pub async fn register_name(&self, name: &str, actor: ActorCell) -> Result<(), NameError> {
        if matches!(actor.get_status(), ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped) {
            return Err(NameError::NotRunning(name.to_string()));
        }
        if let Some(holder) = self.whereis(name) {
            let node = self.node_of(&holder.get_id()).await;
            return Err(NameError::Taken { name: name.to_string(), node });
        }
        ractor::pg::join_scoped(SCOPE.to_string(), name.to_string(), vec![actor]);
        Ok(())
    }

    /// The actor holding `name`, on whichever node; `None` if nobody holds it.
    pub fn whereis(&self, name: &str) -> Option<ActorCell> {
        ractor::pg::get_scoped_members(&SCOPE.to_string(), &name.to_string())
            .into_iter()
            .find(|c| !matches!(c.get_status(), ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped))
    }

    /// The name of the node whose actor holds `name`.
    pub async fn whereis_node(&self, name: &str) -> Option<String> {
        let holder = self.whereis(name)?;
        Some(self.node_of(&holder.get_id()).await)
    }

    /// Gives up `name` if `actor` holds it.
    pub fn unregister_name(&self, name: &str, actor: ActorCell) {
        ractor::pg::leave_scoped(SCOPE.to_string(), name.to_string(), vec![actor]);
    }

    /// The name of the node an actor lives on.
    pub(crate) async fn node_of(&self, id: &ActorId) -> String {
        match id {
            ActorId::Local(_) => self.name().to_string(),
            ActorId::Remote { node_id, .. } => node_name(&self.session_names().await, *node_id),
        }
    }

    /// The names of the nodes `cells` live on, in order, with one lookup of the sessions.
    pub(crate) async fn nodes_of(&self, cells: &[ActorCell]) -> Vec<String> {
        let sessions = self.session_names().await;
        cells
            .iter()
            .map(|c| match c.get_id() {
                ActorId::Local(_) => self.name().to_string(),
                ActorId::Remote { node_id, .. } => node_name(&sessions, node_id),
            })
            .collect()
    }

    /// ractor_cluster's per-session node ids, mapped to our node names.
    pub(crate) async fn session_names(&self) -> HashMap<u64, String> {
        let Ok(sessions) = ractor::call_t!(self.server(), NodeServerMessage::GetSessions, 2000) else {
            return HashMap::new();
        };
        sessions
            .into_iter()
            .filter_map(|(id, s)| Some((id, crate::membership::node_name(&s.peer_name?.name))))
            .collect()
    }
}

/// A session's node name, or `node #ID` if the session is gone.
fn node_name(sessions: &HashMap<u64, String>, node_id: u64) -> String {
    sessions.get(&node_id).cloned().unwrap_or_else(|| format!("node #{node_id}"))
}

/// Watches the names scope and stops this node's losing holders after a partition heals.
pub(crate) struct Resolver;

pub(crate) enum ResolverMsg {}

// Local-only: explicit because ractor's `cluster` feature removes the blanket impl.
impl ractor::Message for ResolverMsg {}

impl Actor for Resolver {
    type Msg = ResolverMsg;
    type State = Cluster;
    type Arguments = Cluster;

    async fn pre_start(
        &self,
        myself: ActorRef<ResolverMsg>,
        cluster: Cluster,
    ) -> Result<Cluster, ActorProcessingErr> {
        ractor::pg::monitor_scope(SCOPE.to_string(), myself.get_cell());
        Ok(cluster)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ResolverMsg>,
        _: &mut Cluster,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor_scope(SCOPE.to_string(), myself.get_id());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<ResolverMsg>,
        event: SupervisionEvent,
        cluster: &mut Cluster,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(GroupChangeMessage::Join(_, name, _)) = event {
            resolve(cluster, &name).await;
        }
        Ok(())
    }
}

/// If `name` has several holders, keeps the one on the lowest-named node and stops this node's
/// other holders.
async fn resolve(cluster: &Cluster, name: &str) {
    let holders = ractor::pg::get_scoped_members(&SCOPE.to_string(), &name.to_string());
    if holders.len() < 2 {
        return;
    }
    let sessions = cluster.session_names().await;
    let node_of = |c: &ActorCell| match c.get_id() {
        ActorId::Local(_) => cluster.name().to_string(),
        ActorId::Remote { node_id, .. } => {
            sessions.get(&node_id).cloned().unwrap_or_else(|| format!("~{node_id}"))
        }
    };
    let Some(winner) = holders.iter().min_by_key(|c| (node_of(c), c.get_id().pid())) else { return };
    let winner_node = node_of(winner);
    for loser in holders.iter().filter(|c| c.get_id() != winner.get_id() && c.get_id().is_local()) {
        let reason = format!("name conflict: {name} is held on {winner_node}");
        tracing::warn!(%name, %winner_node, "stopping this node's duplicate holder of a name");
        metrics::counter!("foundation_names_conflicts_total").increment(1);
        ractor::pg::leave_scoped(SCOPE.to_string(), name.to_string(), vec![loser.clone()]);
        loser.stop(Some(reason));
    }
}
