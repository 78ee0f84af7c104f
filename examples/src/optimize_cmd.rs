//! `foundation optimize`: optimization runs described in a spec file
//! (`dspex_optimizer::distributed::spec_file`).
//!
//! `optimize run --spec run.toml --out best.json` runs the spec's random search in this process
//! (candidate after candidate, each scored on the validation set) and saves the best program,
//! which `foundation predict --program best.json` runs. The same spec is what a cluster run is
//! described by.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use dspex_optimizer::distributed::RunSpec;
use foundation_actors::providers::LanguageModel;

/// `foundation optimize` subcommands.
#[derive(Debug, Subcommand)]
pub enum OptimizeCommand {
    /// Run a spec's optimization in this process and save the best program.
    Run(RunArgs),
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

/// Runs `foundation optimize`.
pub fn run(command: OptimizeCommand) -> anyhow::Result<ExitCode> {
    match command {
        OptimizeCommand::Run(args) => run_here(args),
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
    let mut search = spec.search();
    search.concurrency = args.concurrency.max(1);
    println!(
        "optimizing `{}`: {} training and {} validation examples, {} candidates, metric {}",
        spec.run_id,
        spec.trainset.len(),
        spec.valset.len(),
        search.seeds().count(),
        spec.metric.name()
    );
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(search.compile(
        &spec.student,
        &spec.trainset,
        &spec.valset,
        lm,
        &spec.metric,
        spec.seed,
    ));
    for (seed, score) in &report.scores {
        println!("  candidate {seed:>3}: {score:.3}");
    }
    if let Err(e) = report.best.program.save(&args.out) {
        eprintln!("error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "best: candidate {} scored {:.3} on {} validation examples ({} failed) in {:.1?}; saved to {}",
        report.best.seed,
        report.best_evaluation.mean,
        spec.valset.len(),
        report.best_evaluation.failures,
        started.elapsed(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
