//! `foundation node --serve-model NAME` and the `model-*` commands: models served to the
//! cluster ([`ModelServer`]) and streamed from any node ([`RemoteModel`]), to see a stream
//! forwarded between nodes, dropped by its reader, or cut by a node's death.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use foundation_actors::providers::{
    ChatRequest, LanguageModel, ModelServer, ModelServerHandle, RemoteModel, SimulatedConfig, SimulatedModel,
    StreamEvent,
};
use foundation_actors::registry::ServiceRegistry;
use serde::Serialize;

use super::reply::{Usage, emit};

/// Options of the model server.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Serve the simulated model to the cluster under NAME (repeatable): any node's
    /// `model-stream NAME …` streams from it.
    #[arg(long = "serve-model", value_name = "NAME")]
    pub serve: Vec<String>,
    /// Milliseconds between a served stream's pieces.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub model_interval_ms: u64,
    /// Completion tokens of a served model's free-form answers.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub model_tokens: u64,
    /// How long the server keeps a stream nobody pulls, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub model_idle_ms: u64,
}

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "model-stream",
        usage: "model-stream NAME N PROMPT…",
        what: "stream PROMPT from the model NAME served on any node, printing each piece; N > 0: drop the stream after N pieces",
        needs: None,
    },
    Usage {
        command: "model-hold",
        usage: "model-hold NAME PROMPT…",
        what: "open a stream of the model NAME, read one piece and hold it unread",
        needs: None,
    },
    Usage {
        command: "model-time",
        usage: "model-time NAME MAX_TOKENS PROMPT…",
        what: "stream PROMPT (up to MAX_TOKENS) from the model NAME, printing only the pieces, tokens and time (for benchmarks)",
        needs: None,
    },
    Usage {
        command: "model-server",
        usage: "model-server",
        what: "what this node's model server has done (streams, open, cancelled, expired)",
        needs: Some("--serve-model NAME"),
    },
];

/// A model command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `model-stream NAME N PROMPT…`.
    Stream { model: String, drop_after: usize, prompt: String },
    /// `model-hold NAME PROMPT…`.
    Hold { model: String, prompt: String },
    /// `model-time NAME MAX_TOKENS PROMPT…`.
    Time { model: String, max_tokens: u64, prompt: String },
    /// `model-server`.
    Server,
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        Some(Ok(match (op, args) {
            ("model-stream", [model, n, prompt @ ..]) if !prompt.is_empty() => match n.parse() {
                Ok(drop_after) => {
                    Command::Stream { model: model.to_string(), drop_after, prompt: prompt.join(" ") }
                }
                Err(_) => return bad(&format!("N must be a number of pieces, not `{n}`")),
            },
            ("model-stream", _) => return bad("`model-stream` needs a model, a number and a prompt"),
            ("model-hold", [model, prompt @ ..]) if !prompt.is_empty() => {
                Command::Hold { model: model.to_string(), prompt: prompt.join(" ") }
            }
            ("model-hold", _) => return bad("`model-hold` needs a model and a prompt"),
            ("model-time", [model, n, prompt @ ..]) if !prompt.is_empty() => match n.parse() {
                Ok(max_tokens) => {
                    Command::Time { model: model.to_string(), max_tokens, prompt: prompt.join(" ") }
                }
                Err(_) => return bad(&format!("MAX_TOKENS must be a number, not `{n}`")),
            },
            ("model-time", _) => return bad("`model-time` needs a model, a number of tokens and a prompt"),
            ("model-server", []) => Command::Server,
            ("model-server", _) => return bad("`model-server` takes no arguments"),
            _ => return None,
        }))
    }
}

/// What a model command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[expect(clippy::enum_variant_names, reason = "a variant's name is its event's name, unique across features")]
pub enum Reply {
    /// A piece of text, the `n`th.
    ModelPiece { n: usize, text: String },
    /// The stream ended with its answer.
    ModelDone { pieces: usize, content: String, completion_tokens: u64 },
    /// The stream was dropped after `pieces`.
    ModelDropped { pieces: usize },
    /// A stream is held unread after its first piece.
    ModelHeld,
    /// The stream failed.
    ModelError { pieces: usize, error: String },
    /// A timed stream: its pieces and tokens, and how long it took from asking to the end.
    ModelTimed { pieces: usize, completion_tokens: u64, micros: u64 },
    /// The model server's counts.
    ModelServer { streams: u64, open: u64, cancelled: u64, expired: u64 },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::ModelPiece { n, text } => write!(f, "piece {n}: {text:?}"),
            Reply::ModelDone { pieces, content, completion_tokens } => {
                write!(f, "done after {pieces} pieces ({completion_tokens} tokens): {content}")
            }
            Reply::ModelDropped { pieces } => write!(f, "dropped after {pieces} pieces"),
            Reply::ModelHeld => write!(f, "holding a stream unread"),
            Reply::ModelTimed { pieces, completion_tokens, micros } => {
                write!(f, "{pieces} pieces, {completion_tokens} tokens in {micros} µs")
            }
            Reply::ModelError { pieces, error } => write!(f, "stream failed after {pieces} pieces: {error}"),
            Reply::ModelServer { streams, open, cancelled, expired } => {
                write!(
                    f,
                    "model server: {streams} streams, {open} open, {cancelled} cancelled, {expired} expired"
                )
            }
        }
    }
}

/// The models this node serves and the registry callers find them in.
pub struct Models {
    registry: ServiceRegistry,
    server: Option<ModelServerHandle>,
    held: Arc<std::sync::Mutex<Vec<foundation_actors::providers::CompletionStream>>>,
}

/// Starts the model server if `--serve-model` was given.
pub async fn start(registry: &ServiceRegistry, args: &ModelArgs, max_frame: usize) -> anyhow::Result<Models> {
    let server = if args.serve.is_empty() {
        None
    } else {
        let mut server = ModelServer::new()
            .max_message_bytes(max_frame)
            .idle_timeout(Duration::from_millis(args.model_idle_ms));
        for name in &args.serve {
            let model = SimulatedModel::new(SimulatedConfig {
                model: name.clone(),
                latency: Duration::from_millis(5),
                completion_tokens: Some(args.model_tokens),
                stream_interval: Duration::from_millis(args.model_interval_ms),
                ..Default::default()
            });
            server = server.serve(name.clone(), Arc::new(model));
        }
        Some(server.start(registry).await?)
    };
    Ok(Models { registry: registry.clone(), server, held: Default::default() })
}

impl Models {
    /// Runs a model command (streams in the background).
    pub fn run(&self, line: &str, command: Command) {
        match command {
            Command::Server => match &self.server {
                Some(server) => {
                    let s = server.stats();
                    emit(&Reply::ModelServer {
                        streams: s.streams(),
                        open: s.open(),
                        cancelled: s.cancelled(),
                        expired: s.expired(),
                    });
                }
                None => super::reply::refuse(
                    line,
                    "no model server here (start the node with --serve-model NAME)",
                ),
            },
            Command::Stream { model, drop_after, prompt } => {
                let model = RemoteModel::new(&self.registry, model);
                tokio::spawn(async move {
                    let mut stream = match model.stream(&ChatRequest::prompt(prompt)).await {
                        Ok(stream) => stream,
                        Err(e) => return emit(&Reply::ModelError { pieces: 0, error: e.to_string() }),
                    };
                    let mut pieces = 0;
                    while let Some(event) = stream.next().await {
                        match event {
                            Ok(StreamEvent::Text(text)) => {
                                pieces += 1;
                                emit(&Reply::ModelPiece { n: pieces, text });
                                if pieces == drop_after {
                                    drop(stream);
                                    return emit(&Reply::ModelDropped { pieces });
                                }
                            }
                            Ok(StreamEvent::ToolCall(_)) => {}
                            Ok(StreamEvent::Done(c)) => {
                                return emit(&Reply::ModelDone {
                                    pieces,
                                    content: c.content,
                                    completion_tokens: c.usage.completion_tokens,
                                });
                            }
                            Err(e) => return emit(&Reply::ModelError { pieces, error: e.to_string() }),
                        }
                    }
                });
            }
            Command::Time { model, max_tokens, prompt } => {
                let model = RemoteModel::new(&self.registry, model);
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let request = ChatRequest::prompt(prompt).max_tokens(max_tokens);
                    let mut stream = match model.stream(&request).await {
                        Ok(stream) => stream,
                        Err(e) => return emit(&Reply::ModelError { pieces: 0, error: e.to_string() }),
                    };
                    let mut pieces = 0;
                    while let Some(event) = stream.next().await {
                        match event {
                            Ok(StreamEvent::Done(c)) => {
                                let micros = started.elapsed().as_micros() as u64;
                                let completion_tokens = c.usage.completion_tokens;
                                return emit(&Reply::ModelTimed { pieces, completion_tokens, micros });
                            }
                            Ok(_) => pieces += 1,
                            Err(e) => return emit(&Reply::ModelError { pieces, error: e.to_string() }),
                        }
                    }
                });
            }
            Command::Hold { model, prompt } => {
                let model = RemoteModel::new(&self.registry, model);
                let held = self.held.clone();
                tokio::spawn(async move {
                    match model.stream(&ChatRequest::prompt(prompt)).await {
                        Ok(mut stream) => {
                            let _ = stream.next().await;
                            foundation_core::sync::MutexRecover::lock_or_recover(&*held).push(stream);
                            emit(&Reply::ModelHeld);
                        }
                        Err(e) => emit(&Reply::ModelError { pieces: 0, error: e.to_string() }),
                    }
                });
            }
        }
    }
}
