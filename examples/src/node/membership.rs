//! What a node says about itself and the cluster: where it listens and keeps its state, the
//! membership changes it sees, what it serves, and that it leaves; and `remove-member`, the
//! operator's command that forgets a node stopped for good.

use std::fmt;

use foundation_cluster::{Cluster, MembershipEvent};
use serde::Serialize;

use super::reply::{Usage, emit};

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[Usage {
    command: "remove-member",
    usage: "remove-member NODE",
    what: "forget NODE, stopped for good, in every majority (refused while it is up here)",
    needs: None,
}];

/// `remove-member NODE`.
#[derive(Debug, PartialEq)]
pub struct Command {
    node: String,
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not `remove-member`.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        match (op, args) {
            ("remove-member", [node]) => Some(Ok(Command { node: node.to_string() })),
            ("remove-member", _) => {
                Some(Err(Usage::error(COMMANDS, op, "`remove-member` takes one node name")))
            }
            _ => None,
        }
    }
}

/// Removes the node in the background ([`Cluster::remove_member`]); prints `member_removed`
/// (from the membership events) or `remove_refused`.
pub fn run(cluster: &Cluster, Command { node }: Command) {
    let cluster = cluster.clone();
    tokio::spawn(async move {
        if let Err(e) = cluster.remove_member(&node).await {
            emit(&Reply::RemoveRefused { name: node, error: e.to_string() });
        }
    });
}

/// The node's own lifecycle and the membership changes it sees.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// The node keeps its state in `dir` and remembers these members from earlier runs.
    State { dir: String, remembers: Vec<String> },
    /// The node listens for other nodes on `addr`.
    Listening { node: String, addr: String },
    /// Prometheus metrics are served at `url`.
    MetricsServing { url: String },
    /// The dashboard is served at `url`.
    DashboardServing { url: String },
    /// The node is leaving the cluster (Ctrl-C, SIGTERM, or its launcher went away).
    Leaving { node: String },
    /// A member is up (joined, or came back).
    MemberUp { name: String, addr: String },
    /// A member's connection was replaced by another (two dialled each other at once); it stayed
    /// up, and what was in flight on the old connection is lost.
    MemberReconnected { name: String, addr: String },
    /// A member is down, and why.
    MemberDown { name: String, reason: String },
    /// A member stopped answering heartbeats (phi accrual suspicion; after a long silence phi
    /// is infinite, which JSON shows as `null`).
    MemberUnreachable { name: String, phi: f64 },
    /// A member left on purpose.
    MemberLeft { name: String },
    /// A member was removed for good (`foundation cluster remove`, `remove-member`).
    MemberRemoved { name: String },
    /// `remove-member` was refused (the node is up here, or is this node).
    RemoveRefused { name: String, error: String },
    /// A peer did not authenticate (wrong cookie or certificate) and was refused.
    Refused { peer_addr: String, peer_name: Option<String> },
    /// This node fell behind the membership events and missed `count` of them.
    MissedEvents { count: u64 },
    /// SIGHUP: the configuration was loaded again and is in force; `restart_needed` are the
    /// changed keys that take effect only after a restart.
    ConfigReloaded { changed: Vec<String>, restart_needed: Vec<String> },
    /// SIGHUP: the new configuration was refused; the old one stays in force.
    ConfigReloadFailed { error: String },
}

impl Reply {
    /// The reply for a membership event.
    pub fn of(event: MembershipEvent) -> Reply {
        match event {
            MembershipEvent::Up { name, addr } => Reply::MemberUp { name, addr },
            MembershipEvent::Reconnected { name, addr } => Reply::MemberReconnected { name, addr },
            MembershipEvent::Down { name, reason } => Reply::MemberDown { name, reason },
            MembershipEvent::Unreachable { name, phi } => Reply::MemberUnreachable { name, phi },
            MembershipEvent::Left { name } => Reply::MemberLeft { name },
            MembershipEvent::Removed { name } => Reply::MemberRemoved { name },
            MembershipEvent::Refused { peer_addr, peer_name } => Reply::Refused { peer_addr, peer_name },
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::State { dir, remembers } if remembers.is_empty() => write!(f, "state in {dir}"),
            Reply::State { dir, remembers } => {
                write!(f, "state in {dir} (remembers {})", remembers.join(", "))
            }
            Reply::Listening { node, addr } => write!(f, "node {node} listening on {addr}"),
            Reply::MetricsServing { url } => write!(f, "metrics on {url}"),
            Reply::DashboardServing { url } => write!(f, "dashboard on {url}"),
            Reply::Leaving { node } => write!(f, "node {node} leaving"),
            Reply::MemberUp { name, addr } => write!(f, "member up: {name} {addr}"),
            Reply::MemberReconnected { name, addr } => {
                write!(f, "member reconnected: {name} {addr} (a new connection replaced the old one)")
            }
            Reply::MemberDown { name, reason } => write!(f, "member down: {name} ({reason})"),
            Reply::MemberUnreachable { name, phi } => write!(f, "member unreachable: {name} (phi {phi:.1})"),
            Reply::MemberLeft { name } => write!(f, "member left: {name}"),
            Reply::MemberRemoved { name } => write!(f, "member removed: {name}"),
            Reply::RemoveRefused { name, error } => write!(f, "not removed: {name}: {error}"),
            Reply::Refused { peer_addr, peer_name } => {
                let who = peer_name.as_ref().map_or(String::new(), |n| format!("node {n}, "));
                write!(f, "refused: {peer_addr} ({who}did not authenticate)")
            }
            Reply::MissedEvents { count } => write!(f, "missed {count} membership events"),
            Reply::ConfigReloaded { changed, restart_needed } if changed.is_empty() => {
                debug_assert!(restart_needed.is_empty());
                write!(f, "configuration reloaded: nothing changed")
            }
            Reply::ConfigReloaded { changed, restart_needed } => write!(
                f,
                "configuration reloaded: {} changed{}",
                changed.join(", "),
                match restart_needed.is_empty() {
                    true => String::new(),
                    false => format!("; needs a restart: {}", restart_needed.join(", ")),
                }
            ),
            Reply::ConfigReloadFailed { error } => write!(f, "configuration not reloaded: {error}"),
        }
    }
}
