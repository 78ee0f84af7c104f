//! `foundation node --optimize RUN`: take part in a distributed optimization of a classifier of
//! the bundled question dataset with the simulated model; the node prints progress, and the
//! result when the run finishes. What `foundation demo` launches on each node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dspex_optimizer::LanguageModels;
use dspex_optimizer::distributed::{self, RunHandle, RunOptions, RunSpec};
use foundation_actors::channels::Channels;
use foundation_actors::providers::{
    LanguageModel, LlmRouter, ModelRegistry, OpenAiClient, Provider, ProviderOptions, SimulatedConfig,
    SimulatedModel,
};
use foundation_cluster::Cluster;

/// Options of a distributed optimization.
#[derive(Debug, Clone, Args)]
pub struct OptimizeArgs {
    /// Take part in the optimization run of this name (every node of the run gives the same
    /// options).
    #[arg(long = "optimize", value_name = "RUN")]
    pub run: Option<String>,
    /// Evaluation workers on this node, at most (fewer are active when the queue is short).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Seed of the run (candidates and the simulated model).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Shuffled candidate programs, on top of zero-shot, labelled and bootstrapped.
    #[arg(long, default_value_t = 8)]
    pub candidates: usize,
    /// Latency of the simulated model, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Directory of the runs' persisted state (shared by the nodes of one machine).
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

/// An OpenAI-compatible endpoint behind retries and a circuit breaker.
fn endpoint(url: &str, model: &str) -> Option<Arc<dyn LanguageModel>> {
    let client = OpenAiClient::new("endpoint", model, Some(url.to_string()), None, Duration::from_secs(60));
    match Provider::new("endpoint", client, ProviderOptions::default()) {
        Ok(p) => Some(Arc::new(LlmRouter::new(ModelRegistry::with_defaults()).provider(p))),
        Err(e) => {
            say!("optimization: cannot use {url}: {e}");
            None
        }
    }
}

/// The default directory of run state.
pub fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join("foundation-runs")
}

/// Joins the run, if asked, and prints its progress and result.
pub fn start(cluster: &Cluster, channels: &Channels, args: &OptimizeArgs) -> Option<Arc<RunHandle>> {
    let run = args.run.clone()?;
    let spec = RunSpec::questions(&run, args.seed, args.candidates);
    let lm = match &args.lm_url {
        Some(url) => endpoint(url, &args.lm_model)?,
        None => model(args.seed, Duration::from_millis(args.latency_ms)),
    };
    let dir = args.run_state.clone().unwrap_or_else(default_state_dir);
    // A node asked for no workers runs none (it may still hold the coordinator).
    let options = RunOptions {
        min_workers: args.workers.min(1),
        channels: Some(channels.clone()),
        ..RunOptions::new(args.workers, dir)
    };
    let models = LanguageModels::new().register(spec.lm.clone(), lm);
    let handle = match distributed::start_run(cluster, spec, &models, options) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            say!("optimization: {e}");
            return None;
        }
    };
    // Progress as the coordinator publishes it on the telemetry channel (from whichever node).
    if let Ok(mut telemetry) = channels.subscribe(&foundation_actors::channels::telemetry()) {
        tokio::spawn(async move {
            while let Ok(event) = telemetry.recv().await {
                if event.kind == distributed::PROGRESS_EVENT {
                    say!("telemetry {} from {}: {}", event.kind, event.source, event.data["evaluations"]);
                }
            }
        });
    }
    let (reporter, workers) = (handle.clone(), args.workers);
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(status) = reporter.status().await else { continue };
            if let Some(result) = &status.result {
                let report = serde_json::json!({
                    "best_seed": result.best_seed,
                    "best_score": result.best_score,
                    "scores": result.scores,
                    "evaluations": result.evaluations,
                    "tasks_by_node": result.tasks_by_node,
                    "duplicates": status.duplicates,
                    "requeued": status.requeued,
                    "resumed": status.resumed,
                    "best_program": result.best_program,
                });
                say!("optimization finished {report}");
                return;
            }
            let line = format!(
                "optimization progress {}/{} evaluations, best {}, {:.0} evals/s, {} queued, workers here {} of {}",
                status.evaluations.1,
                status.evaluations.0,
                status.best.map_or("-".to_string(), |(seed, score)| format!("{score:.3} (candidate {seed})")),
                status.evals_per_sec,
                status.queued,
                reporter.active_workers(),
                workers
            );
            if line != last {
                say!("{line}");
                last = line;
            }
        }
    });
    Some(handle)
}
