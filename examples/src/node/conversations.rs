//! `foundation node --conversations` and `--chat-agent NAME`: the cluster's conversations kept in
//! a replicated log, and a chat agent whose conversation is kept there, so that it resumes after a
//! crash (its supervisor restarts it) or on another node (`chat-agent NAME` there) after its node
//! was lost. Commands `chat`, `chat-agent`, `conversation`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use foundation_actors::agents::{Agent, AgentContext, AgentError, AgentHandle, AgentSpec, ConversationStore};
use foundation_actors::providers::{Role, SimulatedConfig, SimulatedModel};
use foundation_actors::registry::ServiceRegistry;
use foundation_cluster::Cluster;
use foundation_cluster::conversations::{Conversations, ConversationsConfig};
use foundation_core::sync::MutexRecover;
use serde::Serialize;

use super::reply::{Usage, emit, refuse};

/// Options of the cluster's conversations on this node.
#[derive(Debug, Clone, Args)]
pub struct ConversationArgs {
    /// Keep a replica of the cluster's conversations and stand for their keeper (start it on
    /// every node: the log's majority is of all the known nodes).
    #[arg(long)]
    pub conversations: bool,
    /// Run a chat agent called NAME (simulated model) whose conversation, `NAME`, is kept by
    /// the cluster (implies --conversations). Asked with `chat`.
    #[arg(long, value_name = "NAME")]
    pub chat_agent: Option<String>,
}

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "chat",
        usage: "chat TEXT…",
        what: "ask the chat agent; `chat crash` makes its step panic (its supervisor restarts it)",
        needs: Some("--chat-agent NAME"),
    },
    Usage {
        command: "chat-agent",
        usage: "chat-agent NAME",
        what: "start a chat agent NAME here, resuming its conversation",
        needs: Some("--conversations"),
    },
    Usage {
        command: "conversation",
        usage: "conversation ID",
        what: "the conversation ID as the cluster keeps it",
        needs: Some("--conversations"),
    },
];

/// A conversation command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `chat TEXT…`.
    Chat(String),
    /// `chat-agent NAME`.
    Start(String),
    /// `conversation ID`.
    Show(String),
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        Some(Ok(match (op, args) {
            ("chat", text) if !text.is_empty() => Command::Chat(text.join(" ")),
            ("chat", _) => return bad("`chat` needs some text"),
            ("chat-agent", [name]) => Command::Start(name.to_string()),
            ("chat-agent", _) => return bad("`chat-agent` takes one NAME"),
            ("conversation", [id]) => Command::Show(id.to_string()),
            ("conversation", _) => return bad("`conversation` takes one ID"),
            _ => return None,
        }))
    }
}

/// What a conversation command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// The chat agent answered; `memory` messages are in its memory now.
    ChatAnswer { agent: String, answer: String, memory: usize },
    /// The chat agent did not answer.
    ChatFailed { agent: String, error: String },
    /// A chat agent started here.
    ChatAgentStarted { agent: String },
    /// A conversation as the cluster keeps it: its version and latest messages (`role: text`).
    Conversation { id: String, version: u64, messages: Vec<String> },
    /// A conversation could not be read.
    ConversationFailed { id: String, error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::ChatAnswer { agent, answer, memory } => {
                write!(f, "{agent}: {answer} ({memory} in memory)")
            }
            Reply::ChatFailed { agent, error } => write!(f, "{agent} failed: {error}"),
            Reply::ChatAgentStarted { agent } => write!(f, "chat agent {agent} started"),
            Reply::Conversation { id, version, messages } => {
                write!(f, "conversation {id} (version {version}): {} messages", messages.len())?;
                for m in messages {
                    write!(f, "\n  {m}")?;
                }
                Ok(())
            }
            Reply::ConversationFailed { id, error } => write!(f, "conversation {id}: {error}"),
        }
    }
}

/// The chat agent: each prompt goes to the model with the conversation so far.
struct Chat;

impl Agent for Chat {
    type Input = String;
    type Output = (String, usize);

    async fn step(&mut self, ctx: &mut AgentContext, prompt: String) -> Result<(String, usize), AgentError> {
        if prompt == "crash" {
            panic!("asked to crash");
        }
        let answer = ctx.ask_model(prompt).await?;
        Ok((answer, ctx.memory().len()))
    }
}

/// The cluster's conversations on this node, and its chat agent.
pub struct ConversationCommands {
    conversations: Option<Conversations>,
    registry: ServiceRegistry,
    agent: Arc<Mutex<Option<Arc<AgentHandle<Chat>>>>>,
}

/// Starts this node's part of the conversations (and the chat agent) if asked for.
pub async fn start(
    cluster: &Cluster,
    registry: &ServiceRegistry,
    args: &ConversationArgs,
) -> anyhow::Result<ConversationCommands> {
    let conversations = match args.conversations || args.chat_agent.is_some() {
        true => Some(Conversations::start(cluster, ConversationsConfig::default()).await?),
        false => None,
    };
    let commands =
        ConversationCommands { conversations, registry: registry.clone(), agent: Arc::new(Mutex::new(None)) };
    if let Some(name) = &args.chat_agent {
        commands.start_agent(name).await?;
    }
    Ok(commands)
}

impl ConversationCommands {
    async fn start_agent(&self, name: &str) -> anyhow::Result<()> {
        let Some(store) = &self.conversations else { anyhow::bail!("no conversations here") };
        if self.agent.lock_or_recover().is_some() {
            anyhow::bail!("a chat agent runs here already");
        }
        let model = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
        let store: Arc<dyn ConversationStore> = Arc::new(store.clone());
        let handle =
            AgentSpec::new(name, || Chat).model(model).durable(store, name).start(&self.registry).await?;
        *self.agent.lock_or_recover() = Some(Arc::new(handle));
        Ok(())
    }

    /// Runs a conversation command (in the background: it may wait for the keeper).
    pub async fn run(&self, line: &str, command: Command) {
        let Some(conversations) = self.conversations.clone() else {
            return refuse(line, "no conversations here (start the node with --conversations)");
        };
        match command {
            Command::Chat(text) => {
                let Some(agent) = self.agent.lock_or_recover().clone() else {
                    return refuse(line, "no chat agent here (--chat-agent NAME, or the chat-agent command)");
                };
                tokio::spawn(async move {
                    let name = agent.name().to_string();
                    match agent.ask(text, Duration::from_secs(30)).await {
                        Ok((answer, memory)) => emit(&Reply::ChatAnswer { agent: name, answer, memory }),
                        Err(e) => emit(&Reply::ChatFailed { agent: name, error: e.to_string() }),
                    }
                });
            }
            Command::Start(name) => match self.start_agent(&name).await {
                Ok(()) => emit(&Reply::ChatAgentStarted { agent: name }),
                Err(e) => refuse(line, e.to_string()),
            },
            Command::Show(id) => {
                tokio::spawn(async move {
                    match conversations.load(&id).await {
                        Ok(c) => {
                            let messages = c
                                .messages
                                .iter()
                                .map(|m| {
                                    let role = match m.role {
                                        Role::System => "system",
                                        Role::User => "user",
                                        Role::Assistant => "assistant",
                                        Role::Tool => "tool",
                                    };
                                    format!("{role}: {}", m.text())
                                })
                                .collect();
                            emit(&Reply::Conversation { id, version: c.version, messages });
                        }
                        Err(e) => emit(&Reply::ConversationFailed { id, error: e.to_string() }),
                    }
                });
            }
        }
    }
}
