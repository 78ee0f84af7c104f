//! `foundation node --register NAME`: hold a cluster-wide name for as long as the node runs,
//! taking it whenever it is free, and say when it is gained, refused or lost. Takes no commands.

use std::fmt;
use std::time::Duration;

use foundation_cluster::Cluster;
use serde::Serialize;

use super::reply::emit;

/// What happened to a name this node tries to hold.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[expect(clippy::enum_variant_names, reason = "a variant's name is its event's name, unique across features")]
pub enum Reply {
    /// This node now holds `name`.
    NameRegistered { name: String },
    /// This node lost `name`; `now_on` is its holder now, if any.
    NameLost { name: String, now_on: Option<String> },
    /// The name could not be taken (printed once per distinct error while retrying).
    NameRefused { name: String, error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::NameRegistered { name } => write!(f, "registered {name}"),
            Reply::NameLost { name, now_on: Some(node) } => {
                write!(f, "lost name {name} (now held on {node})")
            }
            Reply::NameLost { name, now_on: None } => write!(f, "lost name {name} (vacant)"),
            Reply::NameRefused { error, .. } => write!(f, "{error}"),
        }
    }
}

/// Holds each of `names` in the background.
pub fn start(cluster: &Cluster, names: &[String]) {
    for name in names {
        tokio::spawn(hold(cluster.clone(), name.clone()));
    }
}

/// A remotable actor to hold a registered name (remotable, so other nodes see the name).
pub struct NamedWorker;

#[derive(ractor_cluster::RactorClusterMessage)]
pub enum NamedMsg {
    Ping,
}

impl ractor::Actor for NamedWorker {
    type Msg = NamedMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ractor::ActorRef<NamedMsg>,
        _: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ractor::ActorRef<NamedMsg>,
        _: NamedMsg,
        _: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

/// Holds `name` for as long as the node runs, taking it whenever it is free.
async fn hold(cluster: Cluster, name: String) {
    // A node that is joining first waits to see the cluster, so that it does not take a name
    // the cluster already has (it would then lose it by the conflict rule, a needless flap).
    if cluster.seed_count() > 0 {
        let _ = cluster.wait_for_members(1, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut holder: Option<ractor::ActorCell> = None;
    let mut last_error = String::new();
    loop {
        if let Some(cell) = &holder
            && cell.get_status() == ractor::ActorStatus::Stopped
        {
            let now_on = cluster.whereis_node(&name).await;
            emit(&Reply::NameLost { name: name.clone(), now_on });
            holder = None;
            last_error.clear();
        }
        if holder.is_none() {
            match ractor::Actor::spawn(None, NamedWorker, ()).await {
                Ok((worker, _)) => match cluster.register_name(&name, worker.get_cell()).await {
                    Ok(()) => {
                        emit(&Reply::NameRegistered { name: name.clone() });
                        holder = Some(worker.get_cell());
                    }
                    Err(e) => {
                        worker.stop(None);
                        let error = e.to_string();
                        if error != last_error {
                            emit(&Reply::NameRefused { name: name.clone(), error: error.clone() });
                            last_error = error;
                        }
                    }
                },
                Err(e) => tracing::error!(%name, error = %e, "cannot start a worker for a name"),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
