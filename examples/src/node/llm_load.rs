//! `foundation node --provider-url URL --load N`: send N chat requests to an OpenAI-compatible
//! endpoint from this node, under a cluster-wide budget of `--rpm` / `--tpm` shared with every
//! node that does the same, and print what was used. The load half of
//! `foundation bench providers`, usable on its own against a real endpoint.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use foundation_actors::providers::{
    ChatRequest, LlmRouter, ModelRegistry, OpenAiClient, Provider, ProviderOptions, UsageFilter,
};
use foundation_cluster::{BudgetConfig, BudgetHandle, Cluster};
use foundation_core::rate_limit::{ProviderLimits, RateLimiter};
use foundation_core::retry::RetryPolicy;
use serde::Serialize;

use super::reply::{Usage, emit};

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[Usage {
    command: "budget",
    usage: "budget",
    what: "this node's share of the cluster-wide provider budget",
    needs: Some("--provider-url"),
}];

/// `budget`.
#[derive(Debug, PartialEq)]
pub struct Command;

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        Usage::bare(COMMANDS, op, args).map(|parsed| parsed.map(|()| Command))
    }
}

/// What the load and the budget printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// This node's share of the budget (0 to 1).
    Budget { share: f64 },
    /// Fewer than `wanted` other nodes came up in time; the load starts anyway.
    LlmLoadShort { wanted: usize },
    /// A request failed.
    LlmLoadError { error: String },
    /// The load is done: what this node sent and used, and when (Unix ms).
    LlmLoadDone {
        node: String,
        requests: u64,
        failed: u64,
        prompt_tokens: u64,
        completion_tokens: u64,
        cost_usd: f64,
        started_ms: u64,
        ended_ms: u64,
    },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Budget { share } => write!(f, "budget share {share:.3}"),
            Reply::LlmLoadShort { wanted } => write!(f, "llm load: fewer than {wanted} other nodes came up"),
            Reply::LlmLoadError { error } => write!(f, "llm load error: {error}"),
            done @ Reply::LlmLoadDone { .. } => {
                write!(f, "llm load done {}", super::reply::fields_json(done))
            }
        }
    }
}

/// Runs `budget`.
pub fn run(budget: &RateLimiter, _: Command) {
    emit(&Reply::Budget { share: budget.share() });
}

/// Options of the LLM load.
#[derive(Debug, Clone, Args)]
pub struct LlmLoadArgs {
    /// An OpenAI-compatible endpoint (up to `/v1`) to send the load to.
    #[arg(long)]
    provider_url: Option<String>,
    /// Model name sent to the endpoint.
    #[arg(long, default_value = "simulated")]
    model: String,
    /// Requests per minute the whole cluster may send (the budget).
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute the whole cluster may use (the budget).
    #[arg(long)]
    tpm: Option<u64>,
    /// Requests to send from this node.
    #[arg(long, default_value_t = 0)]
    load: u64,
    /// Concurrent callers on this node.
    #[arg(long, default_value_t = 16)]
    callers: u64,
    /// Completion budget per request.
    #[arg(long, default_value_t = 64)]
    max_tokens: u64,
    /// Start once this many other nodes are up.
    #[arg(long, default_value_t = 0)]
    wait_for: usize,
}

/// Starts the budget and the load in the background, if asked for; returns at once, with the
/// limiter that runs on this node's share of the budget.
pub fn start(cluster: &Cluster, args: &LlmLoadArgs) -> anyhow::Result<Option<RateLimiter>> {
    let Some(url) = args.provider_url.clone() else { return Ok(None) };
    let limits = ProviderLimits { rpm: args.rpm, tpm: args.tpm, ..Default::default() };
    let client = OpenAiClient::new("provider", args.model.clone(), Some(url), None, Duration::from_secs(60));
    let options = ProviderOptions {
        limits,
        retry: RetryPolicy::new(5),
        // Never give up on the budget: this is the only provider.
        max_wait: Duration::from_secs(3_600),
        ..Default::default()
    };
    let provider = Provider::new("provider", client, options)?;
    let budget = provider
        .limiter()
        .map(|l| BudgetHandle::start(cluster, "provider", l.clone(), BudgetConfig::default()));
    let limiter = provider.limiter().cloned();
    let router = LlmRouter::new(ModelRegistry::with_defaults()).provider(provider);
    let (cluster, args) = (cluster.clone(), args.clone());
    tokio::spawn(async move {
        let _budget = budget;
        if args.wait_for > 0
            && cluster.wait_for_members(args.wait_for, Duration::from_secs(60)).await.is_err()
        {
            emit(&Reply::LlmLoadShort { wanted: args.wait_for });
        }
        let started = SystemTime::now();
        let next = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let node = cluster.name().to_string();
        let mut callers = Vec::new();
        for _ in 0..args.callers.max(1) {
            let (router, next, failed, node, args) =
                (router.clone(), next.clone(), failed.clone(), node.clone(), args.clone());
            callers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= args.load {
                        return;
                    }
                    let prompt = format!("Request {i} from {node}: summarize today's news in a few lines.");
                    let request =
                        ChatRequest::prompt(prompt).max_tokens(args.max_tokens).tenant(node.clone());
                    if let Err(e) = router.complete(&request).await {
                        failed.fetch_add(1, Ordering::SeqCst);
                        emit(&Reply::LlmLoadError { error: e.to_string() });
                    }
                }
            }));
        }
        for c in callers {
            let _ = c.await;
        }
        let ended = SystemTime::now();
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let totals = router.usage().totals(&UsageFilter::default());
        emit(&Reply::LlmLoadDone {
            node,
            requests: totals.requests,
            failed: failed.load(Ordering::SeqCst),
            prompt_tokens: totals.prompt_tokens,
            completion_tokens: totals.completion_tokens,
            cost_usd: totals.cost_usd,
            started_ms: ms(started),
            ended_ms: ms(ended),
        });
        // Keep the budget running: this node's share goes back to those still calling.
        std::future::pending::<()>().await;
    });
    Ok(limiter)
}
