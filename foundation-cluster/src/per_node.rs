//! Replicated actors: one instance per node, each under its node's supervision, visible
//! cluster-wide.
//!
//! [`PerNodeHandle::start`] runs one instance of a spec on this node, under a local
//! supervisor, and keeps a marker in the pg group `NAME@node` (scope [`SCOPE`]) so that every
//! node sees which nodes run a replica ([`PerNodeHandle::nodes`]). Closures do not cross
//! nodes, so each node starts its own replica from its own spec: the application calls
//! `PerNodeHandle::start` at start-up on every node, and a node that joins later does the same when
//! it starts, so it gets its replica and is seen by the others as soon as it connects. When a
//! node goes, its marker's stand-ins die and it drops out of every node's list.
//!
//! To send to the replicas on other nodes, give the replica a remotable message type and have
//! it join a pg group in its `pre_start` (or register it as a service): pg keeps that
//! membership current across restarts and node loss.

use std::collections::BTreeSet;

use foundation_actors::supervision::{
    ChildInfo, ChildSpec, Strategy, SupervisionError, Supervisor, SupervisorHandle, SupervisorSpec,
};
use ractor::{Actor, ActorRef};

use crate::singleton::{Marker, MarkerMsg};
use crate::{Cluster, ClusterError};

/// The pg scope of replica markers.
pub const SCOPE: &str = foundation_actors::pg_scopes::REPLICATED;

/// This node's replica of a replicated actor. Dropping the handle leaves the replica running;
/// [`stop`](Self::stop) stops it.
#[derive(Debug)]
pub struct PerNodeHandle {
    name: String,
    supervisor: SupervisorHandle,
    marker: ActorRef<MarkerMsg>,
}

impl PerNodeHandle {
    /// The replicated actor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The nodes that run a replica now, by name (this one included).
    pub fn nodes(&self) -> Vec<String> {
        replica_nodes(&self.name).into_iter().collect()
    }

    /// This node's replica as its supervisor sees it (its actor, restarts).
    pub async fn local(&self) -> Result<ChildInfo, SupervisionError> {
        let children = self.supervisor.children().await?;
        children
            .into_iter()
            .next()
            .ok_or_else(|| SupervisionError::NotRunning(format!("replicated:{}", self.name)))
    }

    /// Stops this node's replica; the other nodes see it gone.
    pub async fn stop(self) {
        self.marker.stop(None);
        self.supervisor.stop().await;
    }
}

/// Nodes with a live replica marker for `name`.
fn replica_nodes(name: &str) -> BTreeSet<String> {
    let (scope, prefix) = (SCOPE.to_string(), format!("{name}@"));
    ractor::pg::which_scoped_groups(&scope)
        .into_iter()
        .filter(|g| !ractor::pg::get_scoped_members(&scope, g).is_empty())
        .filter_map(|g| g.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

impl PerNodeHandle {
    /// Starts this node's replica of `name` from `spec`, under a local supervisor (one-for-one,
    /// default intensity), and announces it to the cluster. Call it on every node that should
    /// run one, including nodes that join later (see the [module docs](crate::per_node)).
    pub async fn start(
        cluster: &Cluster,
        name: &str,
        spec: ChildSpec,
    ) -> Result<PerNodeHandle, ClusterError> {
        let error =
            |source: foundation_core::BoxError| ClusterError::Replicated { name: name.to_string(), source };
        if replica_nodes(name).contains(cluster.name()) {
            return Err(error("this node already runs a replica of it".into()));
        }
        let supervisor_spec = SupervisorSpec::new(Strategy::OneForOne).child(spec);
        let supervisor = Supervisor::start(format!("replicated:{name}"), supervisor_spec)
            .await
            .map_err(|e| error(e.into()))?;
        let marker =
            match Actor::spawn(None, Marker, (SCOPE.to_string(), format!("{name}@{}", cluster.name()))).await
            {
                Ok((marker, _)) => marker,
                Err(e) => {
                    supervisor.stop().await;
                    return Err(error(format!("cannot announce it: {e}").into()));
                }
            };
        tracing::info!(replicated = %name, node = %cluster.name(), "replica started here");
        Ok(PerNodeHandle { name: name.to_string(), supervisor, marker })
    }
}
