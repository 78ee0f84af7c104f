//! `foundation node --service NAME[:CAP+CAP]` and the `services` and `health` commands: services
//! registered on this node, and what the node can see of every node's.

use std::fmt;

use foundation_actors::registry::{Query, ServiceRegistry};
use serde::Serialize;

use super::names::NamedWorker;
use super::reply::{Usage, emit};

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "services",
        usage: "services",
        what: "every service instance this node can see, on any node",
        needs: None,
    },
    Usage {
        command: "health",
        usage: "health SERVICE up|down",
        what: "report this node's instances of SERVICE (`--service`) healthy or not",
        needs: None,
    },
];

/// A service command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `services`.
    Services,
    /// `health SERVICE up|down`.
    Health { service: String, healthy: bool },
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        Some(Ok(match (op, args) {
            ("services", []) => Command::Services,
            ("health", [service, state @ ("up" | "down")]) => {
                Command::Health { service: service.to_string(), healthy: *state == "up" }
            }
            ("health", _) => return bad("`health` needs a service and `up` or `down`"),
            ("services", _) => return bad("`services` takes no arguments"),
            _ => return None,
        }))
    }
}

/// One service instance as `services` lists it.
#[derive(Debug, Serialize)]
pub struct Instance {
    /// The service name.
    pub name: String,
    /// The node it runs on (from its metadata; `?` if it has none).
    pub node: String,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// Whether it is reported healthy.
    pub healthy: bool,
    /// Whether it runs on this node.
    pub local: bool,
}

/// What a service command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// Every instance this node can see.
    Services { instances: Vec<Instance> },
    /// `instances` local instances of `service` were reported healthy or not.
    HealthReported { service: String, instances: usize, healthy: bool },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Services { instances } => {
                for i in instances {
                    let caps = i.capabilities.join("+");
                    writeln!(
                        f,
                        "service {}@{} caps={caps} healthy={} local={}",
                        i.name, i.node, i.healthy, i.local
                    )?;
                }
                write!(f, "services: {} found", instances.len())
            }
            Reply::HealthReported { service, instances, healthy } => {
                let state = if *healthy { "up" } else { "down" };
                write!(f, "health {service}: {instances} instance(s) reported {state}")
            }
        }
    }
}

/// Registers each of `services` (`NAME` or `NAME:CAP+CAP`) on this node, with its node in the
/// metadata; returns the workers that stand for them.
pub async fn register(
    registry: &ServiceRegistry,
    node: &str,
    services: &[String],
) -> anyhow::Result<Vec<ractor::ActorRef<super::names::NamedMsg>>> {
    let mut workers = Vec::new();
    for service in services {
        let (name, caps) = service.split_once(':').unwrap_or((service.as_str(), ""));
        let (worker, _) = ractor::Actor::spawn(None, NamedWorker, ()).await?;
        let caps = caps.split('+').filter(|c| !c.is_empty());
        registry.register_service(name, worker.get_cell(), caps, [("node", node)])?;
        workers.push(worker);
    }
    Ok(workers)
}

/// Runs a service command.
pub fn run(registry: &ServiceRegistry, command: Command) {
    match command {
        Command::Services => {
            let instances = registry
                .discover(&Query::new())
                .into_iter()
                .map(|i| Instance {
                    node: i.metadata.get("node").cloned().unwrap_or_else(|| "?".into()),
                    name: i.name,
                    capabilities: i.capabilities.into_iter().collect(),
                    healthy: i.healthy,
                    local: i.local,
                })
                .collect();
            emit(&Reply::Services { instances });
        }
        Command::Health { service, healthy } => {
            let mine: Vec<_> =
                registry.discover(&Query::new().name(&service)).into_iter().filter(|i| i.local).collect();
            for i in &mine {
                let _ = registry.report_health(i.id, healthy, 0.0);
            }
            emit(&Reply::HealthReported { service, instances: mine.len(), healthy });
        }
    }
}
