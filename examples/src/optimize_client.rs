//! `foundation optimize submit|list|status|watch|stop|resume|result`: a client of the cluster's
//! optimization service (`dspex_optimizer::distributed::Optimizations`). Each command joins the
//! cluster at `--seeds` as a short-lived observer node (it holds nothing and counts for
//! nothing), asks the scheduler, prints the answer (text, or JSON with `--json`) and leaves.
//!
//! Exit codes: 0 done; 1 the service said no (no such run, a name taken, a run not finished,
//! a stopped run watched to its stop); 2 bad input (a spec that does not read or is not valid,
//! one too large to send) or no cluster or scheduler reachable within `--timeout`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use dspex_optimizer::distributed::{Optimizations, RunError, RunSpec, Status};

/// How to reach the cluster.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Nodes of the cluster to reach, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub seeds: Vec<SocketAddr>,
    /// The cluster's cookie (also from FOUNDATION_COOKIE).
    #[arg(long, env = "FOUNDATION_COOKIE", hide_env_values = true, default_value = "foundation-dev-cookie")]
    pub cookie: String,
    /// How long to wait for the cluster and its scheduler to answer.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// One JSON object per answer instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    foundation_core::config::duration::parse(text)
        .ok_or_else(|| format!("expected {}", foundation_core::config::duration::EXPECTED))
}

/// What a client command asks.
#[derive(Debug)]
pub enum Ask {
    /// Submit a spec file.
    Submit(PathBuf),
    /// Every run.
    List,
    /// One run's status.
    Status(String),
    /// Follow a run to its end.
    Watch(String),
    /// Stop a run.
    Stop(String),
    /// Resume a stopped run.
    Resume(String),
    /// Save a finished run's best program.
    Result(String, PathBuf),
}

/// Runs a client command against the cluster (`config_file`: the global `--config`, for
/// `[cluster.tls]`).
pub fn run(config_file: Option<&Path>, client: ClientArgs, ask: Ask) -> anyhow::Result<ExitCode> {
    // Read the spec before reaching anyone: a bad file is the user's to fix, at once.
    let spec = match &ask {
        Ask::Submit(path) => match RunSpec::from_file(path).map_err(|e| e.to_string()).and_then(|spec| {
            spec.check().map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(spec)
        }) {
            Ok(spec) => Some(spec),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        _ => None,
    };
    let (runtime, tls) = match crate::cluster_cmd::observer_runtime(config_file)? {
        Ok(both) => both,
        Err(code) => return Ok(code),
    };
    runtime.block_on(async move {
        let Some(observer) =
            crate::cluster_cmd::observe(&client.seeds, &client.cookie, tls, client.timeout).await?
        else {
            return Ok(ExitCode::from(2));
        };
        let code = ask_cluster(&observer, &client, ask, spec).await;
        observer.shutdown().await;
        code
    })
}

/// Tries `f` again while no scheduler is visible or it does not answer, until `timeout`.
async fn patiently<T, F: std::future::Future<Output = Result<T, RunError>>>(
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> Result<T, RunError> {
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Err(RunError::NoScheduler | RunError::NoAnswer(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

fn failed(e: &RunError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        RunError::NoScheduler | RunError::NoAnswer(_) | RunError::Unsendable(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

async fn ask_cluster(
    cluster: &foundation_cluster::Cluster,
    client: &ClientArgs,
    ask: Ask,
    spec: Option<RunSpec>,
) -> anyhow::Result<ExitCode> {
    let timeout = client.timeout;
    let json = client.json;
    Ok(match ask {
        Ask::Submit(_) => {
            let Some(spec) = spec else { return Ok(ExitCode::from(2)) };
            let (examples, candidates) = (spec.valset.len(), spec.candidates());
            match Optimizations::submit_within(cluster, spec, timeout).await {
                Ok(run) if json => {
                    println!("{}", serde_json::json!({ "event": "submitted", "run": run.id() }));
                    ExitCode::SUCCESS
                }
                Ok(run) => {
                    println!(
                        "submitted run {} ({candidates} candidates × {examples} validation examples)",
                        run.id()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => failed(&e),
            }
        }
        Ask::List => match patiently(timeout, || Optimizations::list(cluster)).await {
            Ok(runs) if json => {
                for status in runs {
                    println!("{}", serde_json::json!({ "event": "run", "status": status }));
                }
                ExitCode::SUCCESS
            }
            Ok(runs) => {
                if runs.is_empty() {
                    println!("no runs");
                }
                for status in &runs {
                    println!("{}", line(status));
                }
                ExitCode::SUCCESS
            }
            Err(e) => failed(&e),
        },
        Ask::Status(id) => {
            let run = Optimizations::run(cluster, &id);
            match patiently(timeout, || run.status()).await {
                Ok(status) if json => {
                    println!("{}", serde_json::json!({ "event": "status", "status": status }));
                    ExitCode::SUCCESS
                }
                Ok(status) => {
                    println!("{}", line(&status));
                    if let Some(result) = &status.result {
                        for (seed, score) in &result.scores {
                            println!("  candidate {seed:>3}: {score:.3}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failed(&e),
            }
        }
        Ask::Watch(id) => watch(cluster, &id, json, timeout).await,
        Ask::Stop(id) => control(cluster, &id, true, timeout, json).await,
        Ask::Resume(id) => control(cluster, &id, false, timeout, json).await,
        Ask::Result(id, out) => {
            let run = Optimizations::run(cluster, &id);
            match patiently(timeout, || run.result()).await {
                Ok(result) => match result.best_program.save(&out) {
                    Ok(()) if json => {
                        println!(
                            "{}",
                            serde_json::json!({
                                "event": "result", "run": id, "best_seed": result.best_seed,
                                "best_score": result.best_score, "out": out.display().to_string(),
                                "evaluations": result.evaluations,
                                "evaluations_saved": result.evaluations_saved,
                                "stopped_early": result.stopped_early.len(),
                                "model_calls": result.calls.made, "cached_calls": result.calls.cached,
                                "saved_tokens": result.calls.saved_tokens,
                            })
                        );
                        ExitCode::SUCCESS
                    }
                    Ok(()) => {
                        let halving = if result.evaluations_saved > 0 {
                            format!(
                                " (halving stopped {} candidates early: {} evaluations instead of {})",
                                result.stopped_early.len(),
                                result.evaluations,
                                result.evaluations + result.evaluations_saved
                            )
                        } else {
                            String::new()
                        };
                        println!(
                            "run {id}: best candidate {} scored {:.3}{halving}; {} model calls, {} from the cache \
                             ({} tokens saved); saved to {}",
                            result.best_seed,
                            result.best_score,
                            result.calls.made,
                            result.calls.cached,
                            result.calls.saved_tokens,
                            out.display()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => failed(&e),
            }
        }
    })
}

/// Stops (`stop`) or resumes a run.
async fn control(
    cluster: &foundation_cluster::Cluster,
    id: &str,
    stop: bool,
    timeout: Duration,
    json: bool,
) -> ExitCode {
    let run = Optimizations::run(cluster, id);
    let done =
        patiently(timeout, || async { if stop { run.stop().await } else { run.resume().await } }).await;
    let what = if stop { "stopped" } else { "resumed" };
    match done {
        Ok(()) if json => {
            println!("{}", serde_json::json!({ "event": what, "run": id }));
            ExitCode::SUCCESS
        }
        Ok(()) => {
            println!("run {id} {what}");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

/// One line about a run.
fn line(status: &Status) -> String {
    let state = if status.finished() {
        "finished"
    } else if status.failed.is_some() {
        "failed"
    } else if status.stopped {
        "stopped"
    } else {
        "running"
    };
    let best = status.best.map_or("-".to_string(), |(seed, score)| format!("{score:.3} (candidate {seed})"));
    format!(
        "{}  {state:<8}  {}/{} evaluations  best {best}  {:.1} evals/s  priority {}{}",
        status.run_id,
        status.evaluations.1,
        status.evaluations.0,
        status.evals_per_sec,
        status.priority,
        status.failed.as_ref().map_or(String::new(), |why| format!("  ({why})"))
    )
}

/// Follows a run to its end: a progress bar on a terminal, a line every 2 s otherwise, a JSON
/// object per status with `--json`. Exit 0 when it finished, 1 when it was stopped, 2 when no
/// scheduler answered for `timeout` (a failover takes seconds).
async fn watch(cluster: &foundation_cluster::Cluster, id: &str, json: bool, timeout: Duration) -> ExitCode {
    let run = Optimizations::run(cluster, id);
    let tty = !json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} evaluations  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut watching = run.watch(Duration::from_millis(500));
    let mut last_line: Option<Instant> = None;
    let mut last: Option<Status> = None;
    let mut failing_since: Option<Instant> = None;
    while let Some(status) = watching.next().await {
        let status = match status {
            Ok(status) => {
                failing_since = None;
                status
            }
            Err(RunError::Refused(why)) => {
                bar.finish_and_clear();
                eprintln!("error: {why}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                // A scheduler failing over: keep watching, for `timeout` at most.
                if failing_since.get_or_insert_with(Instant::now).elapsed() >= timeout {
                    bar.finish_and_clear();
                    return failed(&e);
                }
                continue;
            }
        };
        let eta = status.eta_secs.map_or(String::new(), |s| format!(", ETA {s:.0} s"));
        let best =
            status.best.map_or("best -".to_string(), |(seed, s)| format!("best {s:.3} (candidate {seed})"));
        let message = format!("{best}, {:.1} evals/s{eta}", status.evals_per_sec);
        if json {
            let mut value = serde_json::to_value(&status).unwrap_or_default();
            if let Some(program) = value.pointer_mut("/result/best_program") {
                *program = serde_json::Value::Null;
            }
            println!("{}", serde_json::json!({ "event": "progress", "status": value }));
        } else if tty {
            bar.set_length(status.evaluations.0 as u64);
            bar.set_position(status.evaluations.1 as u64);
            bar.set_message(message);
        } else if last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) || status.finished() {
            println!("{}/{} evaluations, {message}", status.evaluations.1, status.evaluations.0);
            last_line = Some(Instant::now());
        }
        last = Some(status);
    }
    bar.finish_and_clear();
    match last {
        Some(status) if status.finished() => {
            if !json {
                println!("{}", line(&status));
            }
            ExitCode::SUCCESS
        }
        Some(status) => {
            if !json {
                println!("{}", line(&status));
            }
            ExitCode::FAILURE
        }
        None => ExitCode::FAILURE,
    }
}
