//! Test hooks: faults a multi-process test injects through a node's standard input. A node
//! takes them only when started with `--test-hooks` (hidden from `--help`); otherwise they are
//! unknown commands, so a user's node does not offer them.
//!
//! A flag rather than a separate build: the multi-process tests drive the very binary users run
//! (`CARGO_BIN_EXE_foundation`), and a second build of it for tests would cost a full link of
//! every crate on a 2-core machine. The hooks are invoked only through this node's own standard
//! input (no peer can trigger one), so the flag is the whole gate. (`forge-leaving` then sends
//! forged notices to the peers: that is the fault it injects.) The flag is hidden from
//! `--help`; clap may still suggest it for a mistyped `--test-hook`, which offers nothing.

use std::fmt;

use foundation_cluster::Cluster;
use serde::Serialize;

use super::reply::{Usage, emit};

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "partition",
        usage: "partition NODE,NODE,...",
        what: "refuse every session with these nodes (do the same on their side: a partition cuts both ways)",
        needs: Some("--test-hooks"),
    },
    Usage { command: "heal", usage: "heal", what: "end `partition`", needs: Some("--test-hooks") },
    Usage {
        command: "forge-leaving",
        usage: "forge-leaving NODE",
        what: "send every peer a leave notice in NODE's name (a lying peer: the others must not believe it)",
        needs: Some("--test-hooks"),
    },
    Usage {
        command: "forge-suspect",
        usage: "forge-suspect NODE",
        what: "tell every peer that a watcher gave up on NODE (a lying peer: the others must check NODE themselves)",
        needs: Some("--test-hooks"),
    },
];

/// A test hook.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `partition NODE,NODE,...`.
    Partition { nodes: Vec<String> },
    /// `heal`.
    Heal,
    /// `forge-leaving NODE`.
    ForgeLeaving { node: String },
    /// `forge-suspect NODE`.
    ForgeSuspect { node: String },
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a test hook.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        Some(Ok(match (op, args) {
            ("partition", [nodes]) => {
                Command::Partition { nodes: nodes.split(',').map(str::to_string).collect() }
            }
            ("heal", []) => Command::Heal,
            ("forge-leaving", [node]) => Command::ForgeLeaving { node: node.to_string() },
            ("forge-suspect", [node]) => Command::ForgeSuspect { node: node.to_string() },
            ("partition" | "heal" | "forge-leaving" | "forge-suspect", _) => {
                return Some(Err(Usage::error(COMMANDS, op, &format!("wrong arguments for `{op}`"))));
            }
            _ => return None,
        }))
    }
}

/// What a test hook did.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// Sessions with these nodes are refused.
    Partitioned { nodes: Vec<String> },
    /// Sessions are allowed again.
    Healed {},
    /// A forged leave notice for `node` went to `told` peers.
    ForgedLeaving { node: String, told: usize },
    /// A forged suspect notice for `node` went to `told` peers.
    ForgedSuspect { node: String, told: usize },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Partitioned { nodes } => write!(f, "partitioned from {}", nodes.join(",")),
            Reply::Healed {} => write!(f, "healed"),
            Reply::ForgedLeaving { node, told } => {
                write!(f, "forged a leave notice for {node} to {told} node(s)")
            }
            Reply::ForgedSuspect { node, told } => {
                write!(f, "forged a suspect notice for {node} to {told} node(s)")
            }
        }
    }
}

/// Runs a test hook.
pub async fn run(cluster: &Cluster, command: Command) {
    match command {
        Command::Partition { nodes } => {
            let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
            cluster.block_peers(&names).await;
            emit(&Reply::Partitioned { nodes });
        }
        Command::Heal => {
            cluster.unblock_all();
            emit(&Reply::Healed {});
        }
        Command::ForgeLeaving { node } => {
            let told = cluster.forge_leaving(&node).await;
            emit(&Reply::ForgedLeaving { node, told });
        }
        Command::ForgeSuspect { node } => {
            let told = cluster.forge_suspect(&node).await;
            emit(&Reply::ForgedSuspect { node, told });
        }
    }
}
