//! `foundation node --workers N`: serve the cluster's optimization service (a replica of its
//! log, a candidate for its scheduler, up to N workers for any run submitted with `foundation
//! optimize submit`), with the simulated model (`simulated`), an endpoint (`--lm-url`, under
//! the `--lm-model` name) and the `[llm]` providers (`llm`, and each provider's name).
//!
//! A node that does not serve keeps a replica of the service's log all the same (when it has
//! a state directory): the log's majority is of all the cluster's nodes.
//!
//! `--optimize RUN` also submits a classifier of the bundled question dataset under that name
//! (every node may: the same spec is one run); the node prints progress, and the result when the
//! run finishes (`stop-run` stops it).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dspex_optimizer::LanguageModels;
use dspex_optimizer::distributed::{self, Optimizations, RunHandle, RunOptions, RunSpec};
use foundation_actors::channels::Channels;
use foundation_actors::providers::{
    CallCache, CallCacheConfig, LanguageModel, LlmRouter, ModelRegistry, OpenAiClient, Provider,
    ProviderOptions, SimulatedConfig, SimulatedModel,
};
use foundation_cluster::shared_cache::{SharedCacheConfig, SharedCacheHandle};
use foundation_cluster::{BudgetConfig, BudgetHandle, Cluster};
use foundation_core::rate_limit::RateLimiter;
use serde::Serialize;
use std::collections::BTreeMap;

use super::reply::{Usage, emit};

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[Usage {
    command: "stop-run",
    usage: "stop-run",
    what: "stop the optimization run this node submitted (`foundation optimize resume` goes on)",
    needs: Some("--optimize RUN"),
}];

/// `stop-run`.
#[derive(Debug, PartialEq)]
pub struct Command;

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        Usage::bare(COMMANDS, op, args).map(|parsed| parsed.map(|()| Command))
    }
}

/// What the run printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// Where the run stands (printed when it changes, at most every 500 ms).
    OptimizationProgress {
        done: usize,
        total: usize,
        best_score: Option<f64>,
        best_candidate: Option<i64>,
        evals_per_sec: f64,
        queued: usize,
        workers_active: usize,
        workers: usize,
    },
    /// The run finished: its result, and how it went.
    OptimizationFinished {
        best_seed: i64,
        best_score: f64,
        scores: Vec<(i64, f64)>,
        /// Candidates halving stopped: (key, examples scored, mean on them).
        stopped_early: Vec<(i64, usize, f64)>,
        evaluations: usize,
        evaluations_saved: usize,
        tasks_by_node: std::collections::BTreeMap<String, usize>,
        duplicates: u64,
        requeued: u64,
        resumed: usize,
        best_program: serde_json::Value,
    },
    /// The run could not be joined.
    OptimizationFailed { error: String },
    /// The run's coordinator published progress on the telemetry channel.
    Telemetry { kind: String, source: String, evaluations: serde_json::Value },
    /// `stop-run` stopped the run.
    RunStopped {},
    /// `stop-run` could not stop the run.
    RunStopFailed { error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::OptimizationProgress {
                done,
                total,
                best_score,
                best_candidate,
                evals_per_sec,
                queued,
                workers_active,
                workers,
            } => {
                let best = match (best_score, best_candidate) {
                    (Some(score), Some(seed)) => format!("{score:.3} (candidate {seed})"),
                    _ => "-".to_string(),
                };
                write!(
                    f,
                    "optimization progress {done}/{total} evaluations, best {best}, {evals_per_sec:.0} evals/s, \
                     {queued} queued, workers here {workers_active} of {workers}"
                )
            }
            finished @ Reply::OptimizationFinished { .. } => {
                write!(f, "optimization finished {}", super::reply::fields_json(finished))
            }
            Reply::OptimizationFailed { error } => write!(f, "optimization: {error}"),
            Reply::Telemetry { kind, source, evaluations } => {
                write!(f, "telemetry {kind} from {source}: {evaluations}")
            }
            Reply::RunStopped {} => write!(f, "run stopped"),
            Reply::RunStopFailed { error } => write!(f, "run not stopped: {error}"),
        }
    }
}

/// Runs `stop-run`.
pub fn run(serving: &Arc<Serving>, _: Command) {
    let Serving::Run(handle, _) = &**serving else {
        emit(&Reply::RunStopFailed { error: "this node submitted no run (--optimize RUN)".into() });
        return;
    };
    let run = handle.run().clone();
    tokio::spawn(async move {
        emit(&match run.stop().await {
            Ok(()) => Reply::RunStopped {},
            Err(e) => Reply::RunStopFailed { error: e.to_string() },
        })
    });
}

/// Options of a distributed optimization.
#[derive(Debug, Clone, Args)]
pub struct OptimizeArgs {
    /// Serve, and submit the bundled question run under this name (nodes that give the same
    /// options submit the same run).
    #[arg(long = "optimize", value_name = "RUN")]
    pub run: Option<String>,
    /// Serve the optimization service with at most this many evaluation workers (fewer are
    /// active when the queue is short; 0: a replica of its log and a scheduler candidate only).
    /// Default with `--optimize`: 4.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Workers wanted over the whole cluster: this node runs at most its share of them by its
    /// measured speed (give the same on every node). Default: none (each node up to `--workers`).
    #[arg(long)]
    pub cluster_workers: Option<usize>,
    /// The bundled run of `--optimize` with successive halving rather than a full evaluation.
    #[arg(long)]
    pub halving: bool,
    /// Seed of the run (candidates and the simulated model).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Shuffled candidate programs, on top of zero-shot, labelled and bootstrapped.
    #[arg(long, default_value_t = 8)]
    pub candidates: usize,
    /// Latency of the simulated model, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Directory of this node's replica of the optimization log (default: `logs` in the node's
    /// state directory). Never shared by two nodes.
    #[arg(long)]
    pub run_state: Option<PathBuf>,
    /// An OpenAI-compatible endpoint (up to `/v1`) instead of the simulated model; the key is
    /// read from OPENAI_API_KEY.
    #[arg(long)]
    pub lm_url: Option<String>,
    /// The model asked for at `--lm-url`.
    #[arg(long, default_value = "gpt-4o-mini")]
    pub lm_model: String,
}

/// The simulated model every node registers for the run.
pub fn model(seed: u64, latency: Duration) -> Arc<dyn LanguageModel> {
    Arc::new(SimulatedModel::new(SimulatedConfig { seed, latency, ..Default::default() }))
}

/// An OpenAI-compatible endpoint behind retries and a circuit breaker; an error says why it
/// cannot be used.
pub fn endpoint(url: &str, model: &str) -> Result<Arc<dyn LanguageModel>, String> {
    let client = OpenAiClient::new("endpoint", model, Some(url.to_string()), None, Duration::from_secs(60));
    match Provider::new("endpoint", client, ProviderOptions::default()) {
        Ok(p) => Ok(Arc::new(LlmRouter::new(ModelRegistry::with_defaults()).provider(p))),
        Err(e) => Err(format!("cannot use {url}: {e}")),
    }
}

/// This node's part in the optimization service, and the run it submitted (`--optimize`).
pub enum Serving {
    /// Not serving: a replica of the service's log only (every node with a state directory
    /// keeps one, since the log's majority is of all the cluster's nodes).
    Replica(#[allow(dead_code, reason = "held: dropping it stops the replica")] distributed::LogReplica),
    /// Serving (`--workers`), with the providers' budgets.
    Service(
        Optimizations,
        #[allow(dead_code, reason = "held: dropping them ends the budgets")] Vec<BudgetHandle>,
    ),
    /// Serving and following its own run (`--optimize`), with the providers' budgets.
    Run(RunHandle, #[allow(dead_code, reason = "held: dropping them ends the budgets")] Vec<BudgetHandle>),
}

impl Serving {
    /// Workers active here.
    pub fn active_workers(&self) -> usize {
        match self {
            Serving::Replica(_) => 0,
            Serving::Service(s, _) => s.active_workers(),
            Serving::Run(r, _) => r.active_workers(),
        }
    }
}

/// A serving node's models, and the cluster-wide budgets their providers run on.
pub struct ServingModels {
    /// By name.
    pub models: LanguageModels,
    /// One per `[llm]` provider with limits (`llm:NAME`): held while the node serves.
    pub budgets: Vec<BudgetHandle>,
    /// The first provider's limiter (the workers give way when callers wait on it).
    pub budget: Option<RateLimiter>,
}

/// The models a serving node offers runs, by name: `simulated`; the `--lm-url` endpoint under
/// `--lm-model`; the `[llm]` providers as a whole (`llm`, in the chain's order) and one by one
/// (their names). Each provider with limits runs on this node's share of a cluster-wide budget
/// (`BudgetHandle`, `llm:NAME`), so runs on every node share the provider's limits.
pub fn models(
    cluster: &Cluster,
    args: &OptimizeArgs,
    llm: &foundation_core::config::LlmConfig,
    cache: Option<&CallCache>,
) -> Result<ServingModels, String> {
    // Each model cached under a scope naming its backend: models that may answer a prompt
    // differently never share answers.
    let cached = |scope: String, m: Arc<dyn LanguageModel>| {
        cache.map_or_else(|| m.clone(), |c| c.wrap(scope, m.clone()))
    };
    let mut models = LanguageModels::new().register(
        "simulated",
        cached(format!("simulated:{}", args.seed), model(args.seed, Duration::from_millis(args.latency_ms))),
    );
    if let Some(url) = &args.lm_url {
        let scope = format!("endpoint:{url}:{}", args.lm_model);
        models = models.register(args.lm_model.clone(), cached(scope, endpoint(url, &args.lm_model)?));
    }
    let mut budgets = Vec::new();
    let mut budget = None;
    if !llm.providers.is_empty() {
        let mut providers = BTreeMap::new();
        for (name, config) in &llm.providers {
            let p = Provider::from_config(name, config, args.seed)
                .map_err(|e| format!("[llm.providers.{name}]: {e}"))?;
            if let Some(limiter) = p.limiter() {
                budgets.push(BudgetHandle::start(
                    cluster,
                    &format!("llm:{name}"),
                    limiter.clone(),
                    BudgetConfig::default(),
                ));
            }
            models = models.register(
                name.clone(),
                cached(
                    provider_scope(name, config, args.seed),
                    Arc::new(LlmRouter::new(ModelRegistry::with_defaults()).provider(p.clone())),
                ),
            );
            providers.insert(name.clone(), p);
        }
        let chain: Vec<&String> =
            if llm.chain.is_empty() { providers.keys().collect() } else { llm.chain.iter().collect() };
        let mut router = LlmRouter::new(ModelRegistry::with_defaults());
        for name in &chain {
            let p = providers.get(*name).ok_or_else(|| format!("[llm] chain: no provider `{name}`"))?;
            budget = budget.or_else(|| p.limiter().cloned());
            router = router.provider(p.clone());
        }
        let scope = chain
            .iter()
            .map(|n| provider_scope(n, &llm.providers[n.as_str()], args.seed))
            .collect::<Vec<_>>();
        models = models.register("llm", cached(format!("chain:{}", scope.join(",")), Arc::new(router)));
    }
    Ok(ServingModels { models, budgets, budget })
}

/// The call-cache scope of a provider: what makes its answers its own (kind, endpoint, model,
/// and the seed of a simulated one).
fn provider_scope(name: &str, config: &foundation_core::config::ProviderConfig, seed: u64) -> String {
    format!(
        "provider:{name}:{:?}:{}:{}:{seed}",
        config.kind,
        config.base_url.as_deref().unwrap_or("default"),
        config.model
    )
}

/// The dashboard's stop and resume buttons: the optimization service's scheduler, asked from
/// this node.
pub struct ServiceControl(pub Cluster);

impl scope_tracer::dashboard::RunControl for ServiceControl {
    fn stop<'a>(&'a self, run: &'a str) -> scope_tracer::dashboard::ControlFuture<'a> {
        Box::pin(async move { Optimizations::run(&self.0, run).stop().await.map_err(control_error) })
    }

    fn resume<'a>(&'a self, run: &'a str) -> scope_tracer::dashboard::ControlFuture<'a> {
        Box::pin(async move { Optimizations::run(&self.0, run).resume().await.map_err(control_error) })
    }
}

/// The service's no (409) told apart from the service not reached (503).
fn control_error(e: distributed::RunError) -> scope_tracer::dashboard::ControlError {
    use scope_tracer::dashboard::ControlError;
    match e {
        distributed::RunError::NoScheduler | distributed::RunError::NoAnswer(_) => {
            ControlError::Unavailable(e.to_string())
        }
        other => ControlError::Refused(other.to_string()),
    }
}

/// The shared cache every serving node runs for model calls (its tier of the call cache).
pub const CALL_CACHE_TIER: &str = "llm-calls";

/// The model-call cache of a serving node (`[llm] cache`, on by default): this process's answers
/// and the cluster cache `llm-calls` of the serving nodes. `None` if turned off; the process's
/// tier alone if the cluster cache cannot start (said in the log).
async fn call_cache(cluster: &Cluster, llm: &foundation_core::config::LlmConfig) -> Option<CallCache> {
    if !llm.cache {
        return None;
    }
    let config = CallCacheConfig::from_config(llm);
    let tier = SharedCacheConfig {
        max_bytes: llm.cache_max_bytes,
        time_to_live: Some(llm.cache_ttl),
        ..SharedCacheConfig::default()
    };
    Some(match SharedCacheHandle::start(cluster, CALL_CACHE_TIER, tier).await {
        Ok(shared) => CallCache::shared(config, Arc::new(shared)),
        Err(e) => {
            tracing::warn!(error = %e, "the cluster tier of the model-call cache did not start: this node's only");
            CallCache::new(config)
        }
    })
}

/// Serves, if asked (`--workers` or `--optimize`), submits the run of `--optimize` and prints its
/// progress and result.
pub async fn start(
    cluster: &Cluster,
    channels: &Channels,
    args: &OptimizeArgs,
    llm: &foundation_core::config::LlmConfig,
) -> Option<Arc<Serving>> {
    if args.run.is_none() && args.workers.is_none() {
        if cluster.state_dir().is_none() && args.run_state.is_none() {
            return None;
        }
        let options = RunOptions { state_dir: args.run_state.clone(), ..RunOptions::new(0) };
        return match Optimizations::keep_replica(cluster, &options).await {
            Ok(replica) => Some(Arc::new(Serving::Replica(replica))),
            Err(e) => {
                emit(&Reply::OptimizationFailed { error: e.to_string() });
                None
            }
        };
    }
    let workers = args.workers.unwrap_or(4);
    if args.cluster_workers == Some(0) {
        emit(&Reply::OptimizationFailed { error: "--cluster-workers must be at least 1".into() });
        return None;
    }
    let cache = call_cache(cluster, llm).await;
    let ServingModels { models, budgets, budget } = match models(cluster, args, llm, cache.as_ref()) {
        Ok(models) => models,
        Err(error) => {
            emit(&Reply::OptimizationFailed { error });
            return None;
        }
    };
    // A node asked for no workers runs none (it still keeps a replica and may hold the scheduler).
    let options = RunOptions {
        min_workers: workers.min(1),
        channels: Some(channels.clone()),
        state_dir: args.run_state.clone(),
        budget,
        cluster_workers: args.cluster_workers,
        ..RunOptions::new(workers)
    };
    let Some(run) = args.run.clone() else {
        return match Optimizations::start(cluster, &models, options).await {
            Ok(service) => Some(Arc::new(Serving::Service(service, budgets))),
            Err(e) => {
                emit(&Reply::OptimizationFailed { error: e.to_string() });
                None
            }
        };
    };
    let mut spec = RunSpec::questions(&run, args.seed, args.candidates);
    if args.halving {
        spec.evaluation = distributed::EvaluationPlan::halving();
    }
    if args.lm_url.is_some() {
        spec.lm = args.lm_model.clone();
    }
    let handle = match RunHandle::start(cluster, spec, &models, options).await {
        Ok(h) => Arc::new(Serving::Run(h, budgets)),
        Err(e) => {
            emit(&Reply::OptimizationFailed { error: e.to_string() });
            return None;
        }
    };
    // Progress as the coordinator publishes it on the telemetry channel (from whichever node).
    if let Ok(mut telemetry) = channels.subscribe(&foundation_actors::channels::telemetry()) {
        tokio::spawn(async move {
            while let Ok(event) = telemetry.recv().await {
                if event.kind == distributed::PROGRESS_EVENT {
                    emit(&Reply::Telemetry {
                        kind: event.kind.to_string(),
                        source: event.source.to_string(),
                        evaluations: event.data["evaluations"].clone(),
                    });
                }
            }
        });
    }
    let reporter = handle.clone();
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Serving::Run(run, _) = &*reporter else { return };
            let Ok(status) = run.status().await else { continue };
            if let Some(result) = status.result {
                emit(&Reply::OptimizationFinished {
                    best_seed: result.best_seed,
                    best_score: result.best_score,
                    scores: result.scores,
                    stopped_early: result.stopped_early,
                    evaluations: result.evaluations,
                    evaluations_saved: result.evaluations_saved,
                    tasks_by_node: result.tasks_by_node,
                    duplicates: status.duplicates,
                    requeued: status.requeued,
                    resumed: status.resumed,
                    best_program: serde_json::json!(result.best_program),
                });
                return;
            }
            let progress = Reply::OptimizationProgress {
                done: status.evaluations.1,
                total: status.evaluations.0,
                best_score: status.best.map(|(_, score)| score),
                best_candidate: status.best.map(|(seed, _)| seed),
                evals_per_sec: status.evals_per_sec,
                queued: status.queued,
                workers_active: reporter.active_workers(),
                workers,
            };
            // Printed when it changes (its text is what a person would see change).
            let line = progress.to_string();
            if line != last {
                emit(&progress);
                last = line;
            }
        }
    });
    Some(handle)
}
