//! `foundation node --singleton NAME`: cluster singletons declared here, and what the node says
//! when one starts or stops on it. Takes no commands.

use std::fmt;
use std::path::Path;

use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, SingletonEvent, SingletonHandle};
use serde::Serialize;

use super::reply::emit;
use super::singleton_log;

/// A singleton started or stopped on this node.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// The singleton `name` now runs here.
    SingletonStarted { name: String },
    /// The singleton `name` stopped here, and why.
    SingletonStopped { name: String, reason: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::SingletonStarted { name } => write!(f, "singleton {name} started here"),
            Reply::SingletonStopped { name, reason } => write!(f, "singleton {name} stopped here ({reason})"),
        }
    }
}

/// Declares each singleton of `names` (with `log`, each copy writes its history there: see
/// [`singleton_log`]) and reports its starts and stops here.
pub fn start(cluster: &Cluster, names: &[String], log: Option<&Path>) -> Vec<SingletonHandle> {
    let mut handles = Vec::new();
    for name in names {
        let handle = match log {
            None => SingletonHandle::start(cluster, name, ChildSpec::new(name.clone(), || (Idle, ()))),
            Some(log) => {
                let copy = singleton_log::Copy::new(name, cluster.name(), log);
                SingletonHandle::start(cluster, name, ChildSpec::new(name.clone(), move || copy.actor()))
            }
        };
        let mut events = handle.subscribe();
        let name = name.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                emit(&match event {
                    SingletonEvent::Started => Reply::SingletonStarted { name: name.clone() },
                    SingletonEvent::Stopped(reason) => {
                        Reply::SingletonStopped { name: name.clone(), reason: reason.to_string() }
                    }
                });
            }
        });
        handles.push(handle);
    }
    handles
}

/// The actor a demo singleton (or replica) runs: it only exists, which is what the tests watch.
pub struct Idle;

impl ractor::Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}
