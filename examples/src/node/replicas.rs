//! `foundation node --replicated NAME` and the `replicas` command: an actor with one replica on
//! every node that asks for it.

use std::fmt;

use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, PerNodeHandle};
use serde::Serialize;

use super::reply::{Usage, emit, refuse};
use super::singletons::Idle;

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[Usage {
    command: "replicas",
    usage: "replicas NAME",
    what: "the nodes that run a replica of NAME",
    needs: Some("--replicated NAME"),
}];

/// `replicas NAME`.
#[derive(Debug, PartialEq)]
pub struct Command {
    name: String,
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        match (op, args) {
            ("replicas", [name]) => Some(Ok(Command { name: name.to_string() })),
            ("replicas", _) => Some(Err(Usage::error(COMMANDS, op, "`replicas` takes one name"))),
            _ => None,
        }
    }
}

/// The nodes that run a replica.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename = "replicas")]
pub struct Reply {
    name: String,
    nodes: Vec<String>,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replicas {}: {}", self.name, self.nodes.join(","))
    }
}

/// Runs a replica of each of `names` here.
pub async fn start(cluster: &Cluster, names: &[String]) -> anyhow::Result<Vec<PerNodeHandle>> {
    let mut replicas = Vec::new();
    for name in names {
        let spec = ChildSpec::new(name.clone(), || (Idle, ()));
        replicas.push(PerNodeHandle::start(cluster, name, spec).await?);
    }
    Ok(replicas)
}

/// Runs `replicas NAME` (`line`, for a refusal).
pub fn run(replicas: &[PerNodeHandle], line: &str, Command { name }: Command) {
    match replicas.iter().find(|r| r.name() == name) {
        Some(handle) => emit(&Reply { name, nodes: handle.nodes() }),
        None => refuse(line, format!("not run on this node (start it with --replicated {name})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_takes_one_name() {
        assert_eq!(Command::parse("replicas", &["cache"]), Some(Ok(Command { name: "cache".into() })));
        assert!(Command::parse("replicas", &[]).unwrap().unwrap_err().contains("usage: `replicas NAME`"));
        assert_eq!(Command::parse("services", &[]), None);
    }
}
