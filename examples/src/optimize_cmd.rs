//! `foundation optimize`: optimization runs described in a spec file
//! (`dspex_optimizer::distributed::spec_file`), here or on a cluster (`submit`, `list`,
//! `status`, `watch`, `stop`, `resume`, `result`: `optimize_client`).
//!
//! `optimize run --spec run.toml --out best.json` runs the spec's random search in this process
//! (candidate after candidate, each scored on the validation set) and saves the best program,
//! which `foundation predict --program best.json` runs. The same spec is what a cluster run is
//! described by.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::optimize_client::ClientArgs;
use dspex_optimizer::distributed::{EvaluationPlan, Optimizer, RunSpec};
use foundation_actors::providers::LanguageModel;

/// `foundation optimize` subcommands.
#[derive(Debug, Subcommand)]
pub enum OptimizeCommand {
    /// Run a spec's optimization in this process and save the best program.
    Run(RunArgs),
    /// Submit a spec's run to a cluster (nodes serving with `--workers`); prints the run's id.
    Submit {
        /// The run's spec (TOML; its data files are read here, relative to it, and sent).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every run the cluster holds.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Where a run stands.
    Status {
        /// The run's id.
        run: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a run until it ends: evaluations, best score, evals/s and ETA.
    Watch {
        /// The run's id.
        run: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a run (what is recorded is kept; `resume` goes on from there).
    Stop {
        /// The run's id.
        run: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a stopped run.
    Resume {
        /// The run's id.
        run: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Save a finished run's best program (for `foundation predict --program`).
    Result {
        /// The run's id.
        run: String,
        /// Where to save it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Options of `foundation optimize run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run's spec (TOML; its data files are read relative to it).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Where to save the best program (for `foundation predict --program`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Model calls at once while scoring a candidate.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// An OpenAI-compatible endpoint (up to `/v1`) serving the spec's `model`; without it the
    /// spec's model must be `simulated`. The key is read from OPENAI_API_KEY.
    #[arg(long)]
    pub lm_url: Option<String>,
    /// Latency of the simulated model, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
}

/// Runs `foundation optimize` (`config_file`: the global `--config`, for the clients'
/// `[cluster.tls]`).
pub fn run(config_file: Option<&Path>, command: OptimizeCommand) -> anyhow::Result<ExitCode> {
    use crate::optimize_client::{Ask, run as ask};
    match command {
        OptimizeCommand::Run(args) => run_here(args),
        OptimizeCommand::Submit { spec, client } => ask(config_file, client, Ask::Submit(spec)),
        OptimizeCommand::List { client } => ask(config_file, client, Ask::List),
        OptimizeCommand::Status { run, client } => ask(config_file, client, Ask::Status(run)),
        OptimizeCommand::Watch { run, client } => ask(config_file, client, Ask::Watch(run)),
        OptimizeCommand::Stop { run, client } => ask(config_file, client, Ask::Stop(run)),
        OptimizeCommand::Resume { run, client } => ask(config_file, client, Ask::Resume(run)),
        OptimizeCommand::Result { run, out, client } => ask(config_file, client, Ask::Result(run, out)),
    }
}

fn run_here(args: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = match RunSpec::from_file(&args.spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let lm: Arc<dyn LanguageModel> = match (&args.lm_url, spec.lm.as_str()) {
        (Some(url), model) => match crate::node::optimize::endpoint(url, model) {
            Ok(lm) => lm,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        (None, "simulated") => {
            crate::node::optimize::model(spec.seed, Duration::from_millis(args.latency_ms))
        }
        (None, model) => {
            eprintln!(
                "error: the spec's model is `{model}`: give --lm-url (an endpoint serving it), or use `simulated`"
            );
            return Ok(ExitCode::from(2));
        }
    };
    println!(
        "optimizing `{}` ({}): {} training and {} validation examples, {} candidates, metric {}",
        spec.run_id,
        optimizer_name(&spec),
        spec.trainset.len(),
        spec.valset.len(),
        spec.candidates(),
        spec.metric.name()
    );
    if spec.evaluation != EvaluationPlan::Full {
        println!("  (halving is the cluster service's: here every candidate is scored on every example)");
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(spec.run_here(lm, args.concurrency));
    for (key, score) in &report.scores {
        println!("  candidate {key:>3}: {score:.3}");
    }
    if let Err(e) = report.best_program.save(&args.out) {
        eprintln!("error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "best: candidate {} scored {:.3} on {} validation examples in {:.1?}; saved to {}",
        report.best_key,
        report.best_score,
        spec.valset.len(),
        started.elapsed(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The optimizer a spec names, as its spec file names it.
pub fn optimizer_name(spec: &RunSpec) -> &'static str {
    match spec.optimizer {
        Optimizer::RandomSearch => "random_search",
        Optimizer::LabeledFewShot => "labeled_few_shot",
        Optimizer::BootstrapFewShot => "bootstrap_few_shot",
        Optimizer::InstructionSearch { .. } => "instruction_search",
    }
}
