//! `foundation demo`: the main job. Launches a local cluster of `foundation node` processes on
//! loopback, optimizes a question classifier across them (random search over few-shot
//! programs, DSPy's `BootstrapFewShotWithRandomSearch`) with the simulated model, shows the
//! progress, and prints the baseline and optimized scores, the evaluations, the time and the
//! speed-up over one worker.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use dspex_optimizer::distributed::{
    Optimizations, QUESTIONS_TRAIN, QUESTIONS_VAL, RunResult, RunSpec, Status,
};
use foundation_cluster::Cluster;
use foundation_core::config::ClusterConfig;

/// Options of `foundation demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Node processes to launch.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Evaluation workers per node.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Dataset to optimize on (bundled: `questions`, 260 questions labelled with their answer
    /// type).
    #[arg(long, default_value = "questions")]
    dataset: String,
    /// Seed of the run: the same seed gives the same programs and scores.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Shuffled candidate programs, on top of zero-shot, labelled and bootstrapped.
    #[arg(long, default_value_t = 8)]
    candidates: usize,
    /// Latency of the simulated model, in milliseconds (realistic latency makes parallelism
    /// matter).
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// An OpenAI-compatible endpoint (up to `/v1`) instead of the simulated model; the key is
    /// read from OPENAI_API_KEY.
    #[arg(long)]
    endpoint: Option<String>,
    /// The model asked for at `--endpoint`.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// Address of the live dashboard while the demo runs (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    dashboard: SocketAddr,
    /// Longest the optimization may take.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    foundation_core::rate_limit::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration (e.g. 90s, 10m)"))
}

/// The launched nodes: stopped (their standard input closed) when dropped.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            drop(child.stdin.take());
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.dataset != "questions" {
        eprintln!("unknown dataset `{}`; bundled: questions", args.dataset);
        return Ok(ExitCode::from(2));
    }
    if args.nodes == 0 || args.workers == 0 {
        eprintln!("--nodes and --workers must be at least 1");
        return Ok(ExitCode::from(2));
    }
    let run_id = format!("demo-{}", std::process::id());
    // The user's own (private) state root and a name no one can guess: another local user can
    // neither read the run nor plant a file where it will write.
    let state_dir = foundation_core::files::state_root()
        .join("demo")
        .join(foundation_core::files::unguessable_name(&format!("{run_id}-")));
    foundation_core::files::create_private_dir(&state_dir)?;
    let model = match &args.endpoint {
        Some(url) => format!("{} at {url}", args.model),
        None => format!("the simulated model ({} ms a call)", args.latency_ms),
    };
    println!("Foundation demo: distributed optimization\n=========================================\n");
    println!(
        "Optimizing a question classifier (question -> label, 6 answer types) with {model}:\n\
         random search over {} candidate programs (zero-shot, 16 labelled demonstrations,\n\
         bootstrapped, and {} seeded bootstraps), each scored on {QUESTIONS_VAL} validation questions; \
         {QUESTIONS_TRAIN} training questions.\n",
        args.candidates + 3,
        args.candidates
    );

    let addrs: Vec<SocketAddr> = (0..args.nodes)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))
        .collect::<Result<_, _>>()?;
    let exe = std::env::current_exe()?;
    let mut nodes = Nodes(Vec::new());
    for (i, addr) in addrs.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.args(["node", "--name", &format!("demo-{}", i + 1), "--listen", &addr.to_string()]);
        if i > 0 {
            let seeds: Vec<String> = addrs[..i].iter().map(ToString::to_string).collect();
            cmd.args(["--seeds", &seeds.join(",")]);
        }
        // Workers of the cluster's optimization service; the run is submitted to it below.
        cmd.args(["--workers", &args.workers.to_string(), "--seed", &args.seed.to_string()])
            .args(["--latency-ms", &args.latency_ms.to_string()])
            // A new cluster every run: its members and its replica of the optimization log are
            // kept here, and removed with it.
            .arg("--state-dir")
            .arg(state_dir.join("nodes").join(format!("demo-{}", i + 1)))
            // Traced but sampling nothing on their own: the dashboard's cluster traces record, and
            // the profiler shows where time goes.
            .args(["--trace-rate", "0"])
            .arg("--exit-with-stdin");
        if let Some(url) = &args.endpoint {
            cmd.args(["--lm-url", url, "--lm-model", &args.model]);
        }
        let child = cmd
            .env("FOUNDATION_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        nodes.0.push(child);
    }
    println!(
        "Launched {} nodes on {} with {} workers each.",
        args.nodes,
        addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        args.workers
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut spec = RunSpec::questions(&run_id, args.seed, args.candidates);
    if args.endpoint.is_some() {
        spec.lm = args.model.clone();
    }
    let outcome = runtime.block_on(watch(spec, &addrs, args.timeout, args.dashboard));
    drop(nodes);
    let _ = std::fs::remove_dir_all(&state_dir);
    let (status, elapsed) = match outcome {
        Ok(done) => done,
        Err(e) => {
            eprintln!("the demo did not finish: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let Some(result) = &status.result else { return Ok(ExitCode::FAILURE) };
    report(&args, &status, result, elapsed);
    Ok(ExitCode::SUCCESS)
}

/// Joins the cluster as an observer (it holds nothing and counts for nothing), submits the run
/// to the cluster's optimization service and follows it until it has a result.
async fn watch(
    spec: RunSpec,
    addrs: &[SocketAddr],
    timeout: Duration,
    dashboard: SocketAddr,
) -> anyhow::Result<(Status, Duration)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = ClusterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        seeds: addrs.to_vec(),
        ..Default::default()
    };
    let name = format!("{}demo-{}", foundation_cluster::singleton::OBSERVER_PREFIX, std::process::id());
    // With channels of its own, the observer hears the run's progress on the telemetry topic.
    let channels = foundation_actors::channels::Channels::start().await?;
    let observer = Cluster::start(&name, &config, Some(channels.clone())).await?;
    // So that the dashboard can start cluster traces (the observer itself records nothing).
    scope_tracer::participant::start(&observer, scope_tracer::buffer().clone()).await?;
    let dashboard = scope_tracer::dashboard::Dashboard::serve(
        dashboard,
        observer.clone(),
        Some(&channels),
        scope_tracer::dashboard::DashboardOptions {
            run_control: Some(std::sync::Arc::new(crate::node::optimize::ServiceControl(observer.clone()))),
            ..Default::default()
        },
    )
    .await?;
    println!("Dashboard: http://{}/ (while the demo runs)\n", dashboard.addr());
    let deadline = Instant::now() + timeout;
    let run = Optimizations::submit_within(&observer, spec, timeout).await?;
    // The run's time, from its submission (the scheduler's election before it is the cluster's).
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} evaluations  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last_line = Instant::now();
    let outcome = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("no result after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(status) = run.status().await else { continue };
        let best =
            status.best.map_or("best -".to_string(), |(seed, s)| format!("best {s:.3} (candidate {seed})"));
        let eta = status.eta_secs.map_or(String::new(), |s| format!(", about {s:.0} s left"));
        let message = format!("{best}, {:.0} evals/s{eta}", status.evals_per_sec);
        if tty {
            bar.set_length(status.evaluations.0 as u64);
            bar.set_position(status.evaluations.1 as u64);
            bar.set_message(message);
        } else if last_line.elapsed() >= Duration::from_secs(2) || status.result.is_some() {
            println!("  {}/{} evaluations, {message}", status.evaluations.1, status.evaluations.0);
            last_line = Instant::now();
        }
        if status.result.is_some() {
            break Ok((status, started.elapsed()));
        }
    };
    bar.finish_and_clear();
    observer.shutdown().await;
    outcome
}

fn report(args: &DemoArgs, status: &Status, result: &RunResult, elapsed: Duration) {
    let baseline = result.scores.iter().find(|(seed, _)| *seed == -3).map_or(0.0, |(_, s)| *s);
    let demos: usize = result.best_program.predictors.iter().map(|(_, p)| p.demos.len()).sum();
    let workers = args.nodes * args.workers;
    let speedup = status.work_secs / elapsed.as_secs_f64().max(1e-9);
    println!("\nCandidates (validation score):");
    for (seed, score) in &result.scores {
        let what = match seed {
            -3 => "zero-shot".to_string(),
            -2 => "16 labelled demonstrations".to_string(),
            -1 => "bootstrapped, in order".to_string(),
            s => format!("bootstrapped, shuffle {s}"),
        };
        println!("  {seed:>3}  {score:.3}  {what}");
    }
    println!();
    println!("baseline (zero-shot)       {baseline:.3}");
    println!(
        "optimized                  {:.3}  (candidate {}, {demos} demonstrations)",
        result.best_score, result.best_seed
    );
    println!(
        "evaluations                {} (each recorded once; {} late duplicates ignored)",
        result.evaluations, status.duplicates
    );
    println!(
        "time                       {:.1} s on {} nodes × {} workers",
        elapsed.as_secs_f64(),
        args.nodes,
        args.workers
    );
    println!(
        "speed-up over one worker   {speedup:.1}× ({:.1} s of worker time in {:.1} s; ideal {workers}×)",
        status.work_secs,
        elapsed.as_secs_f64()
    );
    let by_node: Vec<String> = result.tasks_by_node.iter().map(|(n, t)| format!("{n} {t}")).collect();
    println!("tasks per node             {}", by_node.join(", "));
}
