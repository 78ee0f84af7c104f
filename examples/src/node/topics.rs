//! `foundation node --subscribe TOPIC` and the `broadcast` commands: cluster-wide topics of text
//! messages.

use std::fmt;

use foundation_actors::channels::{Channels, Topic};
use serde::Serialize;

use super::reply::{Usage, emit};

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "broadcast",
        usage: "broadcast TOPIC TEXT",
        what: "send TEXT to the topic's subscribers on every node",
        needs: None,
    },
    Usage {
        command: "broadcast-bytes",
        usage: "broadcast-bytes TOPIC N",
        what: "broadcast a text of N bytes (to try the frame limit)",
        needs: None,
    },
];

/// A topic command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `broadcast TOPIC TEXT`.
    Broadcast { topic: String, text: String },
    /// `broadcast-bytes TOPIC N`.
    BroadcastBytes { topic: String, len: usize },
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        Some(Ok(match (op, args) {
            ("broadcast", [topic, text @ ..]) => {
                Command::Broadcast { topic: topic.to_string(), text: text.join(" ") }
            }
            ("broadcast-bytes", [topic, n]) => match n.parse() {
                Ok(len) => Command::BroadcastBytes { topic: topic.to_string(), len },
                Err(_) => return bad("`broadcast-bytes` needs a byte count"),
            },
            ("broadcast" | "broadcast-bytes", _) => return bad(&format!("wrong arguments for `{op}`")),
            _ => return None,
        }))
    }
}

/// What a broadcast or a subscription printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// A message arrived on a topic this node subscribes to.
    Received { topic: String, text: String },
    /// The message was sent; `local_subscribers` on this node got it at once.
    BroadcastSent { topic: String, bytes: Option<usize>, local_subscribers: usize },
    /// The message was refused (e.g. larger than the cluster's frame limit).
    BroadcastRefused { topic: String, error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Received { topic, text } => write!(f, "received {topic}: {text}"),
            Reply::BroadcastSent { topic, bytes: None, local_subscribers } => {
                write!(f, "broadcast {topic}: sent ({local_subscribers} subscribers here)")
            }
            Reply::BroadcastSent { topic, bytes: Some(bytes), local_subscribers } => {
                write!(f, "broadcast {topic}: sent {bytes} bytes ({local_subscribers} subscribers here)")
            }
            Reply::BroadcastRefused { topic, error } => write!(f, "broadcast {topic} refused: {error}"),
        }
    }
}

fn text_topic(name: &str) -> Topic<String> {
    Topic::new(name).cluster_wide()
}

/// Subscribes to each of `topics`, printing what arrives.
pub fn subscribe(channels: &Channels, topics: &[String]) -> anyhow::Result<()> {
    for topic in topics {
        let mut subscription = channels.subscribe(&text_topic(topic))?;
        let topic = topic.clone();
        tokio::spawn(async move {
            while let Ok(text) = subscription.recv().await {
                emit(&Reply::Received { topic: topic.clone(), text });
            }
        });
    }
    Ok(())
}

/// Runs a topic command.
pub fn run(channels: &Channels, command: Command) {
    let (topic, text, bytes) = match command {
        Command::Broadcast { topic, text } => (topic, text, None),
        Command::BroadcastBytes { topic, len } => (topic, "x".repeat(len), Some(len)),
    };
    emit(&match channels.broadcast(&text_topic(&topic), text) {
        Ok(local_subscribers) => Reply::BroadcastSent { topic, bytes, local_subscribers },
        Err(e) => Reply::BroadcastRefused { topic, error: e.to_string() },
    });
}
