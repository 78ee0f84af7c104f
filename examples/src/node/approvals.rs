//! `foundation node --operator-agent` and the approval commands: an agent whose tool
//! `delete_file` needs a person's approval, asked with `agent-ask`; its pending calls listed
//! with `approvals` and decided with `approve` and `deny` (on the process's
//! [`ApprovalDesk`], where every agent of the node files its approvals).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use foundation_actors::agents::{
    Agent, AgentContext, AgentError, AgentHandle, AgentSpec, ApprovalDesk, Decision, LoopEvent,
    PendingApproval, ToolLoop, Tools,
};
use foundation_actors::providers::{SimulatedConfig, SimulatedModel};
use foundation_actors::registry::ServiceRegistry;
use foundation_core::sync::MutexRecover;
use serde::{Deserialize, Serialize};

use super::reply::{Usage, emit, refuse};

/// Options of the operator agent.
#[derive(Debug, Clone, Args)]
pub struct ApprovalArgs {
    /// Run an agent (`operator`, simulated model) with tools `list_files` and `delete_file`
    /// over a few files in memory; `delete_file` needs approval. Asked with `agent-ask`.
    #[arg(long)]
    pub operator_agent: bool,
    /// How long a call waiting for approval waits for a decision, in milliseconds.
    #[arg(long, default_value_t = 600_000, value_name = "MS")]
    pub approval_timeout_ms: u64,
}

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "agent-ask",
        usage: "agent-ask PROMPT…",
        what: "ask the operator agent (tool loop); its calls of delete_file wait for approval",
        needs: Some("--operator-agent"),
    },
    Usage {
        command: "approvals",
        usage: "approvals",
        what: "the tool calls waiting for approval on this node, and the recent decisions",
        needs: None,
    },
    Usage { command: "approve", usage: "approve ID", what: "let the waiting call ID run", needs: None },
    Usage {
        command: "deny",
        usage: "deny ID REASON…",
        what: "refuse the waiting call ID; the model reads REASON",
        needs: None,
    },
];

/// An approval command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `agent-ask PROMPT…`.
    Ask(String),
    /// `approvals`.
    List,
    /// `approve ID`.
    Approve(u64),
    /// `deny ID REASON…`.
    Deny(u64, String),
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        let id = |word: &str| word.parse::<u64>().map_err(|_| format!("ID must be a number, not `{word}`"));
        Some(Ok(match (op, args) {
            ("agent-ask", prompt) if !prompt.is_empty() => Command::Ask(prompt.join(" ")),
            ("agent-ask", _) => return bad("`agent-ask` needs a prompt"),
            ("approvals", []) => Command::List,
            ("approvals", _) => return bad("`approvals` takes no arguments"),
            ("approve", [word]) => match id(word) {
                Ok(id) => Command::Approve(id),
                Err(e) => return bad(&e),
            },
            ("approve", _) => return bad("`approve` takes one ID"),
            ("deny", [word, reason @ ..]) if !reason.is_empty() => match id(word) {
                Ok(id) => Command::Deny(id, reason.join(" ")),
                Err(e) => return bad(&e),
            },
            ("deny", _) => return bad("`deny` needs an ID and a reason"),
            _ => return None,
        }))
    }
}

/// A call of the operator's run, as printed.
#[derive(Debug, Serialize)]
pub struct CallOutcome {
    tool: String,
    arguments: String,
    outcome: String,
    decision: Option<String>,
}

/// What an approval command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// A call waits for approval.
    ApprovalRequested { id: u64, tool: String, arguments: String },
    /// The operator answered.
    AgentAnswer { answer: String, calls: Vec<CallOutcome>, files: Vec<String> },
    /// The operator's run failed.
    AgentFailed { error: String },
    /// The calls waiting, and the recent decisions.
    Approvals { pending: Vec<PendingApproval>, decided: Vec<(u64, String)> },
    /// A decision was taken.
    Decided { id: u64, decision: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::ApprovalRequested { id, tool, arguments } => {
                write!(f, "approval {id} requested: {tool}({arguments}) (approve {id} | deny {id} REASON)")
            }
            Reply::AgentAnswer { answer, calls, files } => {
                for call in calls {
                    let decision = call.decision.as_deref().map_or(String::new(), |d| format!(" [{d}]"));
                    writeln!(f, "  {}({}) -> {}{decision}", call.tool, call.arguments, call.outcome)?;
                }
                write!(f, "operator: {answer} (files: {})", files.join(", "))
            }
            Reply::AgentFailed { error } => write!(f, "operator failed: {error}"),
            Reply::Approvals { pending, decided } => {
                writeln!(f, "{} waiting:", pending.len())?;
                for p in pending {
                    writeln!(f, "  {}: {} {}({})", p.id, p.agent, p.tool, p.arguments)?;
                }
                write!(f, "{} decided recently", decided.len())
            }
            Reply::Decided { id, decision } => write!(f, "approval {id}: {decision}"),
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Dir {
    /// The directory, e.g. `/tmp`.
    dir: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Path {
    /// The file to delete, e.g. `/tmp/notes.txt`.
    path: String,
}

/// The operator: runs the tool loop on each prompt.
struct Operator {
    timeout: Duration,
}

impl Agent for Operator {
    type Input = String;
    type Output = (String, Vec<(String, String, String, Option<String>)>);

    async fn step(&mut self, ctx: &mut AgentContext, prompt: String) -> Result<Self::Output, AgentError> {
        let options = ToolLoop::new().max_steps(4).approval_timeout(self.timeout).on_event(|event| {
            if let LoopEvent::ApprovalRequested(p) = event {
                emit(&Reply::ApprovalRequested {
                    id: p.id,
                    tool: p.tool.clone(),
                    arguments: p.arguments.clone(),
                });
            }
        });
        let run = ctx.run_tools(prompt, &options).await?;
        let calls = run
            .calls()
            .map(|c| {
                let outcome = match &c.outcome {
                    foundation_actors::agents::ToolOutcome::Done(v) => format!("done: {v}"),
                    other => format!("{}: {}", other.kind(), other.to_model(&c.name)),
                };
                let decision = c.approval.as_ref().map(|a| match &a.decision {
                    Decision::Approved { by } => format!("approved by {by}"),
                    Decision::Denied { by, reason } => format!("denied by {by}: {reason}"),
                    Decision::TimedOut => "timed out".to_string(),
                });
                (c.name.clone(), c.arguments.clone(), outcome, decision)
            })
            .collect();
        Ok((run.answer.content, calls))
    }
}

/// The operator agent, if this node runs it.
pub struct Approvals {
    operator: Option<Arc<AgentHandle<Operator>>>,
    files: Arc<Mutex<BTreeSet<String>>>,
    desk: ApprovalDesk,
}

/// Starts the operator agent if `--operator-agent` was given.
pub async fn start(registry: &ServiceRegistry, args: &ApprovalArgs) -> anyhow::Result<Approvals> {
    let files: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(
        ["/tmp/notes.txt", "/tmp/report.pdf", "/tmp/old.log"].map(String::from).into_iter().collect(),
    ));
    let operator = if args.operator_agent {
        let mut tools = Tools::new();
        let listed = files.clone();
        tools.register("list_files", "lists the files of a directory", move |d: Dir| {
            let listed = listed.clone();
            async move {
                let prefix = format!("{}/", d.dir.trim_end_matches('/'));
                let found: Vec<String> =
                    listed.lock_or_recover().iter().filter(|f| f.starts_with(&prefix)).cloned().collect();
                Ok::<_, foundation_core::BoxError>(found)
            }
        })?;
        let deleted = files.clone();
        tools.register("delete_file", "deletes a file at a path", move |p: Path| {
            let deleted = deleted.clone();
            async move {
                match deleted.lock_or_recover().remove(&p.path) {
                    true => Ok(format!("deleted {}", p.path)),
                    false => Err(format!("no file {}", p.path).into()),
                }
            }
        })?;
        tools.needs_approval("delete_file")?;
        let model = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
        let timeout = Duration::from_millis(args.approval_timeout_ms);
        let spec = AgentSpec::new("operator", move || Operator { timeout })
            .model(model)
            .tools(tools)
            .tool_timeout(Duration::from_secs(3600));
        Some(Arc::new(spec.start(registry).await?))
    } else {
        None
    };
    Ok(Approvals { operator, files, desk: ApprovalDesk::global() })
}

impl Approvals {
    /// Runs an approval command (an ask in the background: its calls may wait for decisions
    /// given by later lines).
    pub fn run(&self, line: &str, command: Command) {
        match command {
            Command::Ask(prompt) => {
                let Some(operator) = self.operator.clone() else {
                    return refuse(line, "no operator agent here (start the node with --operator-agent)");
                };
                let files = self.files.clone();
                tokio::spawn(async move {
                    match operator.ask(prompt, Duration::from_secs(24 * 3600)).await {
                        Ok((answer, calls)) => emit(&Reply::AgentAnswer {
                            answer,
                            calls: calls
                                .into_iter()
                                .map(|(tool, arguments, outcome, decision)| CallOutcome {
                                    tool,
                                    arguments,
                                    outcome,
                                    decision,
                                })
                                .collect(),
                            files: files.lock_or_recover().iter().cloned().collect(),
                        }),
                        Err(e) => emit(&Reply::AgentFailed { error: e.to_string() }),
                    }
                });
            }
            Command::List => emit(&Reply::Approvals {
                pending: self.desk.pending(),
                decided: self
                    .desk
                    .recent()
                    .into_iter()
                    .map(|r| (r.request.id, r.decision.kind().to_string()))
                    .collect(),
            }),
            Command::Approve(id) => match self.desk.approve(id, "an operator at the node's console") {
                Ok(()) => emit(&Reply::Decided { id, decision: "approved".into() }),
                Err(e) => refuse(line, e),
            },
            Command::Deny(id, reason) => {
                match self.desk.deny(id, "an operator at the node's console", reason) {
                    Ok(()) => emit(&Reply::Decided { id, decision: "denied".into() }),
                    Err(e) => refuse(line, e),
                }
            }
        }
    }
}
