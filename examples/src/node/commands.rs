//! The commands a node takes on standard input, one per line: each feature module parses and
//! runs its own; this module tries them in turn, lists them all for `help`, and runs a command
//! against the features this node runs. A line that does not parse, and a command whose
//! feature does not run here, is answered with an `error` reply whose `command` is the line
//! (the latter naming the option that starts the feature); nothing else happens.

use std::sync::Arc;

use foundation_actors::channels::Channels;
use foundation_actors::registry::ServiceRegistry;
use foundation_cluster::crdt_state::Replicator;
use foundation_cluster::shared_cache::SharedCacheHandle;
use foundation_cluster::{Cluster, PerNodeHandle};

use super::reply::{Help, Usage, emit, refuse};
use super::{
    approvals, cache, conversations, coordination, crdt, llm_load, membership, models, optimize, replicas,
    services, test_hooks, topics, trace, workload,
};

/// A command read from standard input.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `help`: every command this node takes.
    Help,
    /// `broadcast`, `broadcast-bytes`.
    Topics(topics::Command),
    /// `services`, `health`.
    Services(services::Command),
    /// `replicas`.
    Replicas(replicas::Command),
    /// `budget`, `usage`.
    Budget(llm_load::Command),
    /// `stop-run`.
    StopRun(optimize::Command),
    /// `crdt-*`.
    Crdt(crdt::Command),
    /// `cache-*`.
    Cache(cache::Command),
    /// `lock`, `unlock`, `elect`, `resign`, `barrier`, `bid`, `allocate`.
    Coordination(coordination::CoordCommand),
    /// `trace-*`, `profile`.
    Trace(trace::Command),
    /// `remove-member`.
    Membership(membership::Command),
    /// `workload-*`.
    Workload(workload::Command),
    /// `model-*`.
    Models(models::Command),
    /// `agent-ask`, `approvals`, `approve`, `deny`.
    Approvals(approvals::Command),
    /// `chat`, `chat-agent`, `conversation`.
    Conversations(conversations::Command),
    /// `partition`, `heal`, `forge-leaving`, `forge-suspect` (only with `--test-hooks`).
    TestHook(test_hooks::Command),
}

/// Every command a node takes, in `help` order (the test hooks only with `test_hooks`).
pub fn usages(test_hooks: bool) -> Vec<Usage> {
    let mut all = vec![Usage { command: "help", usage: "help", what: "this list", needs: None }];
    for table in [
        topics::COMMANDS,
        services::COMMANDS,
        replicas::COMMANDS,
        crdt::COMMANDS,
        cache::COMMANDS,
        coordination::COMMANDS,
        trace::COMMANDS,
        llm_load::COMMANDS,
        optimize::COMMANDS,
        membership::COMMANDS,
        workload::COMMANDS,
        models::COMMANDS,
        approvals::COMMANDS,
        conversations::COMMANDS,
    ] {
        all.extend_from_slice(table);
    }
    if test_hooks {
        all.extend_from_slice(test_hooks::COMMANDS);
    }
    all
}

impl Command {
    /// Parses a line; the error says what is wrong and how to write it. The test hooks are
    /// unknown commands unless `test_hooks`.
    pub fn parse(line: &str, test_hooks: bool) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&op, args)) = words.split_first() else {
            return Err("empty command; `help` lists the commands".into());
        };
        let parsed = match (op, args) {
            ("help", []) => Some(Ok(Command::Help)),
            _ => None,
        }
        .or_else(|| map(topics::Command::parse(op, args), Command::Topics))
        .or_else(|| map(services::Command::parse(op, args), Command::Services))
        .or_else(|| map(replicas::Command::parse(op, args), Command::Replicas))
        .or_else(|| map(llm_load::Command::parse(op, args), Command::Budget))
        .or_else(|| map(optimize::Command::parse(op, args), Command::StopRun))
        .or_else(|| map(crdt::Command::parse(op, args), Command::Crdt))
        .or_else(|| map(cache::Command::parse(op, args), Command::Cache))
        .or_else(|| map(coordination::CoordCommand::parse(op, args), Command::Coordination))
        .or_else(|| map(trace::Command::parse(op, args), Command::Trace))
        .or_else(|| map(membership::Command::parse(op, args), Command::Membership))
        .or_else(|| map(workload::Command::parse(op, args), Command::Workload))
        .or_else(|| map(models::Command::parse(op, args), Command::Models))
        .or_else(|| map(approvals::Command::parse(op, args), Command::Approvals))
        .or_else(|| map(conversations::Command::parse(op, args), Command::Conversations))
        .or_else(|| match test_hooks {
            true => map(test_hooks::Command::parse(op, args), Command::TestHook),
            false => None,
        });
        parsed.unwrap_or_else(|| Err(format!("unknown command `{}`; `help` lists the commands", line.trim())))
    }
}

fn map<T>(
    parsed: Option<Result<T, String>>,
    into: impl FnOnce(T) -> Command,
) -> Option<Result<Command, String>> {
    parsed.map(|r| r.map(into))
}

/// The features this node runs, which the commands act on.
pub struct Features {
    /// The cluster this node is part of.
    pub cluster: Cluster,
    /// Its channels (`broadcast`).
    pub channels: Channels,
    /// Its service registry (`services`, `health`).
    pub registry: ServiceRegistry,
    /// Replicated actors run here (`--replicated`).
    pub replicas: Vec<PerNodeHandle>,
    /// The CRDT replicator (`--crdt`).
    pub crdt: Option<Replicator>,
    /// This node's part of a shared cache (`--shared-cache`).
    pub cache: Option<SharedCacheHandle>,
    /// The coordinator (`--coordination`).
    pub coordination: Option<coordination::CoordCommands>,
    /// The optimization run (`--optimize`).
    pub run: Option<Arc<super::optimize::Serving>>,
    /// This node's share of the provider budget and of its tenant's quota, and its shared usage
    /// ledger (`--provider-url`).
    pub budget: Option<llm_load::LlmLoad>,
    /// Whether traces are recorded here (`--trace-rate`).
    pub tracing: bool,
    /// Where stopped cluster traces go (`--otlp`).
    pub otlp: Option<String>,
    /// Whether the test hooks are taken (`--test-hooks`).
    pub test_hooks: bool,
    /// The nemesis workload (`--history`).
    pub workload: Option<workload::Workload>,
    /// Models served here (`--serve-model`), and streams from any node's.
    pub models: models::Models,
    /// The operator agent (`--operator-agent`) and the process's approval desk.
    pub approvals: approvals::Approvals,
    /// The cluster's conversations (`--conversations`) and the chat agent (`--chat-agent`).
    pub conversations: conversations::ConversationCommands,
}

impl Features {
    /// Parses and runs one line; a command that waits for other nodes runs in the background
    /// and prints its outcome when it has one. Test hooks are run before the next line is read,
    /// so that a partition is in place before the commands that follow it.
    pub async fn run_line(&self, line: &str) {
        let line = line.trim();
        let command = match Command::parse(line, self.test_hooks) {
            Ok(command) => command,
            Err(error) => return refuse(line, error),
        };
        let absent =
            |what: &str, option: &str| refuse(line, format!("{what} (start the node with {option})"));
        match command {
            Command::Help => emit(&Help { commands: usages(self.test_hooks) }),
            Command::Topics(command) => topics::run(&self.channels, command),
            Command::Services(command) => services::run(&self.registry, command),
            Command::Replicas(command) => replicas::run(&self.replicas, line, command),
            Command::Budget(command) => match &self.budget {
                Some(budget) => llm_load::run(budget, command),
                None => absent("no provider load here", "--provider-url"),
            },
            Command::StopRun(command) => match &self.run {
                Some(run) => optimize::run(run, command),
                None => absent("no run here", "--optimize RUN"),
            },
            Command::Crdt(command) => match &self.crdt {
                Some(replicator) => crdt::run(replicator, command),
                None => absent("no replicator here", "--crdt"),
            },
            Command::Cache(command) => match &self.cache {
                Some(cache) => cache::run(cache, command),
                None => absent("no shared cache here", "--shared-cache NAME"),
            },
            Command::Coordination(command) => match &self.coordination {
                Some(coordination) => coordination.run(command),
                None => absent("coordination is not running here", "--coordination"),
            },
            Command::Trace(command) => match self.tracing {
                true => trace::run(&self.cluster, self.otlp.as_deref(), command),
                false => absent("no tracing here", "--trace-rate RATE"),
            },
            Command::Membership(command) => membership::run(&self.cluster, command),
            Command::Workload(command) => match &self.workload {
                Some(workload) => workload.run(command),
                None => absent("no nemesis workload here", "--history FILE"),
            },
            Command::Models(command) => self.models.run(line, command),
            Command::Approvals(command) => self.approvals.run(line, command),
            Command::Conversations(command) => self.conversations.run(line, command).await,
            Command::TestHook(command) => test_hooks::run(&self.cluster, command).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_bad_ones_say_what_is_wrong() {
        assert_eq!(Command::parse("help", false), Ok(Command::Help));
        assert!(matches!(Command::parse("broadcast news hello  world", false), Ok(Command::Topics(_))));
        assert!(matches!(Command::parse("services", false), Ok(Command::Services(_))));
        assert!(matches!(Command::parse("lock a 100 200", false), Ok(Command::Coordination(_))));
        assert!(matches!(Command::parse("crdt-get k majority", false), Ok(Command::Crdt(_))));
        assert!(matches!(Command::parse("trace-start 0.5 n1,n2", false), Ok(Command::Trace(_))));
        let unknown = Command::parse("launch rockets", false).unwrap_err();
        assert!(unknown.contains("unknown command `launch rockets`"), "{unknown}");
        let health = Command::parse("health llm sideways", false).unwrap_err();
        assert!(health.contains("`up` or `down`") && health.contains("usage: `health SERVICE up|down`"));
        assert!(Command::parse("broadcast-bytes big lots", false).unwrap_err().contains("byte count"));
        // The exact commands, arguments and all.
        assert_eq!(
            Command::parse("broadcast news hello  world", false),
            Ok(Command::Topics(topics::Command::Broadcast {
                topic: "news".into(),
                text: "hello world".into()
            }))
        );
        assert_eq!(
            Command::parse("broadcast-bytes big 100", false),
            Ok(Command::Topics(topics::Command::BroadcastBytes { topic: "big".into(), len: 100 }))
        );
        assert_eq!(
            Command::parse("health llm down", false),
            Ok(Command::Services(services::Command::Health { service: "llm".into(), healthy: false }))
        );
        assert_eq!(Command::parse("services", false), Ok(Command::Services(services::Command::Services)));
        assert_eq!(Command::parse("budget", false), Ok(Command::Budget(llm_load::Command::Budget)));
        assert_eq!(Command::parse("usage", false), Ok(Command::Budget(llm_load::Command::Usage)));
        assert_eq!(Command::parse("stop-run", false), Ok(Command::StopRun(optimize::Command)));
        assert_eq!(
            Command::parse("cache-put k a  b", false),
            Ok(Command::Cache(cache::Command::Put { key: "k".into(), value: "a b".into() }))
        );
        assert_eq!(
            Command::parse("trace-start 0.5 n1,n2", false),
            Ok(Command::Trace(trace::Command::Start { rate: 0.5, nodes: vec!["n1".into(), "n2".into()] }))
        );
        assert_eq!(
            Command::parse("trace-start", false),
            Ok(Command::Trace(trace::Command::Start { rate: 1.0, nodes: vec![] }))
        );
        assert!(Command::parse("trace-start fast", false).unwrap_err().contains("rate from 0 to 1"));
        assert_eq!(
            Command::parse("partition n1,n2", true),
            Ok(Command::TestHook(test_hooks::Command::Partition { nodes: vec!["n1".into(), "n2".into()] }))
        );
        assert_eq!(Command::parse("heal", true), Ok(Command::TestHook(test_hooks::Command::Heal)));
        assert_eq!(Command::parse("workload-read", false), Ok(Command::Workload(workload::Command::Read)));
        assert!(Command::parse("workload-stop now", false).unwrap_err().contains("takes no arguments"));
        assert!(matches!(Command::parse("remove-member n3", false), Ok(Command::Membership(_))));
        assert!(Command::parse("remove-member", false).unwrap_err().contains("one node name"));
        assert_eq!(
            Command::parse("model-stream sim 3 tell  me", false),
            Ok(Command::Models(models::Command::Stream {
                model: "sim".into(),
                drop_after: 3,
                prompt: "tell me".into()
            }))
        );
        assert!(
            Command::parse("model-stream sim many words", false).unwrap_err().contains("number of pieces")
        );
        assert!(Command::parse("model-hold sim", false).unwrap_err().contains("usage: `model-hold"));
        assert_eq!(Command::parse("model-server", false), Ok(Command::Models(models::Command::Server)));
        assert_eq!(
            Command::parse("deny 7 not  today", false),
            Ok(Command::Approvals(approvals::Command::Deny(7, "not today".into())))
        );
        assert!(Command::parse("approve seven", false).unwrap_err().contains("ID must be a number"));
        assert!(Command::parse("deny 7", false).unwrap_err().contains("an ID and a reason"));
        assert_eq!(
            Command::parse("forge-leaving n3", true),
            Ok(Command::TestHook(test_hooks::Command::ForgeLeaving { node: "n3".into() }))
        );
        // Extra words are refused, not ignored.
        for extra in ["replicas a b", "services x", "trace-stop a b", "heal now"] {
            assert!(Command::parse(extra, true).unwrap_err().contains("usage: `"), "{extra}");
        }
    }

    #[test]
    fn test_hooks_are_unknown_commands_unless_asked_for() {
        for hook in ["partition n1,n2", "heal", "forge-leaving n3", "forge-suspect n3"] {
            let refused = Command::parse(hook, false).unwrap_err();
            assert!(refused.starts_with("unknown command"), "{hook}: {refused}");
            assert!(matches!(Command::parse(hook, true), Ok(Command::TestHook(_))), "{hook}");
        }
        assert!(!usages(false).iter().any(|u| u.command == "partition"));
        assert!(usages(true).iter().any(|u| u.command == "partition"));
    }

    #[test]
    fn help_lists_every_command_that_parses_once() {
        let all = usages(true);
        let mut names: Vec<&str> = all.iter().map(|u| u.command).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a command is listed twice");
        for usage in &all {
            // The usage's own example (optional parts left out, placeholders filled in) parses.
            let example: Vec<&str> = usage
                .usage
                .split_whitespace()
                .filter(|w| !w.starts_with('['))
                .map(|w| match w {
                    "N" | "PARTIES" | "LEASE_MS" | "WAIT_MS" | "WORK_MS" | "MAX_TOKENS" | "ID" => "2",
                    "COST" => "1.5",
                    "up|down" => "up",
                    w if w.chars().all(|c| c.is_ascii_uppercase() || "_,.".contains(c)) => "x",
                    w => w,
                })
                .collect();
            let line = example.join(" ");
            assert!(Command::parse(&line, true).is_ok(), "`{line}` (from `{}`) does not parse", usage.usage);
        }
    }
}
