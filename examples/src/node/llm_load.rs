//! `foundation node --provider-url URL --load N`: send N chat requests to an OpenAI-compatible
//! endpoint from this node, under a cluster-wide budget of `--rpm` / `--tpm` shared with every
//! node that does the same, and print what was used. The load half of
//! `foundation bench providers`, usable on its own against a real endpoint. `--tenant-rpm` /
//! `--tenant-tpm` give the load's tenant a quota held for the whole cluster too; `usage` sums
//! every node's usage ledger.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use foundation_actors::providers::{
    ChatRequest, LlmRouter, ModelRegistry, OpenAiClient, Provider, ProviderOptions, UsageFilter,
};
use foundation_actors::tenants::{TenantQuota, TenantSpec, Tenants};
use foundation_cluster::cluster_usage::{ClusterLedger, ClusterUsage};
use foundation_cluster::{BudgetConfig, BudgetHandle, Cluster};
use foundation_core::rate_limit::{ProviderLimits, RateLimiter};
use foundation_core::retry::RetryPolicy;
use serde::Serialize;

use super::reply::{Usage, emit};

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "budget",
        usage: "budget",
        what: "this node's share of the cluster-wide provider budget (and of the tenant's quota)",
        needs: Some("--provider-url"),
    },
    Usage {
        command: "usage",
        usage: "usage",
        what: "the provider load's usage and cost summed over every node, per provider, model and tenant",
        needs: Some("--provider-url"),
    },
];

/// `budget` or `usage`.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `budget`.
    Budget,
    /// `usage`.
    Usage,
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let command = match op {
            "budget" => Command::Budget,
            "usage" => Command::Usage,
            _ => return None,
        };
        Usage::bare(COMMANDS, op, args).map(|parsed| parsed.map(|()| command))
    }
}

/// One row of the cluster's usage, as printed.
#[derive(Debug, Serialize)]
pub struct UsageRow {
    provider: String,
    model: String,
    tenant: String,
    requests: u64,
    failures: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_usd: f64,
}

/// What the load and the budget printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// This node's share of the budget (0 to 1), and of the tenant's quota if it has one.
    Budget { share: f64, tenant_share: Option<f64> },
    /// Usage summed over the nodes that answered; those that did not, with why.
    ClusterUsage {
        rows: Vec<UsageRow>,
        requests: u64,
        prompt_tokens: u64,
        completion_tokens: u64,
        cost_usd: f64,
        answered: Vec<String>,
        missing: Vec<(String, String)>,
        unshared: Vec<String>,
    },
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
            Reply::Budget { share, tenant_share } => {
                write!(f, "budget share {share:.3}")?;
                match tenant_share {
                    Some(t) => write!(f, ", tenant quota share {t:.3}"),
                    None => Ok(()),
                }
            }
            Reply::ClusterUsage { rows, answered, missing, .. } => {
                for r in rows {
                    writeln!(
                        f,
                        "  {} {} {}: {} requests, {} failed, {}+{} tokens, ${:.4}",
                        r.provider,
                        r.model,
                        r.tenant,
                        r.requests,
                        r.failures,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.cost_usd
                    )?;
                }
                write!(f, "usage from {}", answered.join(", "))?;
                for (node, why) in missing {
                    write!(f, "; missing {node}: {why}")?;
                }
                Ok(())
            }
            Reply::LlmLoadShort { wanted } => write!(f, "llm load: fewer than {wanted} other nodes came up"),
            Reply::LlmLoadError { error } => write!(f, "llm load error: {error}"),
            done @ Reply::LlmLoadDone { .. } => {
                write!(f, "llm load done {}", super::reply::fields_json(done))
            }
        }
    }
}

/// How long a request waits for the tenant's quota.
const TENANT_WAIT: Duration = Duration::from_secs(120);
/// How long `usage` waits for the other nodes.
const USAGE_WAIT: Duration = Duration::from_secs(5);

/// What this node's load shares with the cluster.
pub struct LlmLoad {
    /// The limiter that runs on this node's share of the provider budget.
    pub budget: Option<RateLimiter>,
    /// The tenant's quota, run on this node's share of it.
    pub tenant_quota: Option<RateLimiter>,
    /// This node's usage ledger, shared with the cluster.
    pub ledger: Arc<ClusterLedger>,
}

/// Runs `budget` or `usage` (the latter in the background: it asks every node).
pub fn run(load: &LlmLoad, command: Command) {
    match command {
        Command::Budget => emit(&Reply::Budget {
            share: load.budget.as_ref().map_or(1.0, RateLimiter::share),
            tenant_share: load.tenant_quota.as_ref().map(RateLimiter::share),
        }),
        Command::Usage => {
            let ledger = load.ledger.clone();
            tokio::spawn(async move {
                let sum = ledger.sum(&UsageFilter::default(), USAGE_WAIT).await;
                emit(&usage_reply(sum));
            });
        }
    }
}

fn usage_reply(sum: ClusterUsage) -> Reply {
    let rows = sum
        .rows
        .into_iter()
        .map(|(k, t)| UsageRow {
            provider: k.provider,
            model: k.model,
            tenant: k.tenant,
            requests: t.requests,
            failures: t.failures,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cost_usd: t.cost_usd,
        })
        .collect();
    Reply::ClusterUsage {
        rows,
        requests: sum.totals.requests,
        prompt_tokens: sum.totals.prompt_tokens,
        completion_tokens: sum.totals.completion_tokens,
        cost_usd: sum.totals.cost_usd,
        answered: sum.answered,
        missing: sum.missing,
        unshared: sum.unshared,
    }
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
    /// The tenant the load's requests are made for (default: the node's name).
    #[arg(long, value_name = "NAME")]
    tenant: Option<String>,
    /// Requests per minute the tenant may make, over the whole cluster (a quota leased like
    /// the provider budget, by every node that gives the same tenant).
    #[arg(long, value_name = "N", requires = "tenant")]
    tenant_rpm: Option<u64>,
    /// Tokens per minute the tenant may use, over the whole cluster (at least the nodes that
    /// call at once times one request's prompt and `--max-tokens`: a node's share must hold a
    /// request).
    #[arg(long, value_name = "N", requires = "tenant")]
    tenant_tpm: Option<u64>,
}

/// Starts the budget, the tenant's quota and the load in the background, if asked for; returns
/// at once, with what the node shares.
pub async fn start(cluster: &Cluster, args: &LlmLoadArgs) -> anyhow::Result<Option<LlmLoad>> {
    let Some(url) = args.provider_url.clone() else { return Ok(None) };
    let tenant_id = args.tenant.clone().unwrap_or_else(|| cluster.name().to_string());
    let tenants = Tenants::new(Default::default());
    let quota = TenantQuota {
        requests_per_minute: args.tenant_rpm,
        tokens_per_minute: args.tenant_tpm,
        max_concurrent: None,
    };
    let tenant = tenants.register(&tenant_id, TenantSpec { quota, ..Default::default() })?;
    let tenant_budget = tenant.limiter().map(|l| {
        BudgetHandle::start(cluster, &format!("tenant:{tenant_id}"), l.clone(), BudgetConfig::default())
    });
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
    let ledger = Arc::new(ClusterLedger::start(cluster, router.usage().clone()).await?);
    let shared = LlmLoad { budget: limiter, tenant_quota: tenant.limiter().cloned(), ledger };
    let (cluster, args) = (cluster.clone(), args.clone());
    tokio::spawn(async move {
        let _budget = (budget, tenant_budget);
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
            let (router, next, failed, node, args, tenant) =
                (router.clone(), next.clone(), failed.clone(), node.clone(), args.clone(), tenant.clone());
            callers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= args.load {
                        return;
                    }
                    let prompt = format!("Request {i} from {node}: summarize today's news in a few lines.");
                    let request = ChatRequest::prompt(prompt)
                        .max_tokens(args.max_tokens)
                        .tenant(tenant.id().to_string());
                    let estimate = Provider::estimate(&request);
                    let estimate = estimate.input + estimate.output;
                    let work = match tenant.admit(estimate, TENANT_WAIT).await {
                        Ok(work) => work,
                        Err(e) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            emit(&Reply::LlmLoadError { error: e.to_string() });
                            continue;
                        }
                    };
                    match router.complete(&request).await {
                        Ok(answer) => {
                            work.finish(answer.usage.prompt_tokens + answer.usage.completion_tokens)
                        }
                        Err(e) => {
                            // The provider may have been called (retries, a cut stream): the
                            // estimate is charged (dropped unsettled).
                            drop(work);
                            failed.fetch_add(1, Ordering::SeqCst);
                            emit(&Reply::LlmLoadError { error: e.to_string() });
                        }
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
    Ok(Some(shared))
}
