//! `foundation tour`: the single-node building blocks — configuration, error context and
//! telemetry — on a simulated language-model workload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use foundation_core::config::ConfigLoader;
use foundation_core::{ContextError, ErrorContext, Telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Options of `foundation tour`.
#[derive(Debug, Args)]
pub struct TourArgs {
    /// Simulated model calls to make.
    #[arg(long, default_value_t = 400)]
    calls: u32,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Address to serve Prometheus metrics on while the tour runs (default: `telemetry.listen`
    /// from the config, else a free loopback port).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Seed of the simulated workload (latencies and failures).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Keep serving metrics after the tour, until Ctrl-C or SIGTERM (to point curl or
    /// Prometheus at it).
    #[arg(long)]
    keep_serving: bool,
}

const LATENCY: &str = "demo_model_call_seconds";

pub fn run(config_file: Option<PathBuf>, args: TourArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(tour(config_file, args))
}

async fn tour(config_file: Option<PathBuf>, args: TourArgs) -> anyhow::Result<ExitCode> {
    println!("Foundation tour\n===============\n");

    // 1. Configuration: file < FOUNDATION_* environment < code.
    let mut loader = ConfigLoader::new();
    if let Some(path) = &config_file {
        loader = loader.file(path);
    }
    let config = match loader.env().load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    println!(
        "[config] node `{}`; percentiles over {:?} with at most {}% error",
        config.node.name,
        config.telemetry.window,
        config.telemetry.max_relative_error * 100.0
    );

    // 2. Telemetry: installed globally because this program owns its process.
    let telemetry = Telemetry::new(&config.telemetry)?;
    telemetry.describe(
        foundation_cluster::metric_catalog::all()
            .chain(scope_tracer::metric_catalog::FAMILIES)
            .chain(dspex_optimizer::metric_catalog::FAMILIES),
    );
    telemetry.install_global()?;
    let addr = args.metrics.or(config.telemetry.listen).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = telemetry.serve(addr).await?;
    let metrics_addr = server.local_addr();
    println!("[telemetry] Prometheus metrics on http://{metrics_addr}/metrics\n");
    metrics::describe_histogram!(LATENCY, metrics::Unit::Seconds, "Latency of simulated model calls.");
    metrics::describe_counter!("demo_calls_total", "Simulated model calls, by outcome.");

    // 3. A simulated language-model workload, each call an operation with an error context.
    println!("[workload] {} simulated model calls, {} at a time ...", args.calls, args.concurrency);
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.calls {
        let permit = limit.clone().acquire_owned().await?;
        let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i));
        tasks.spawn(async move {
            let result = answer_question(i, seed).await;
            drop(permit);
            result
        });
    }
    let (mut ok, mut first_failure, mut failures) = (0, None, 0);
    let mut exact = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a simulated call panicked")? {
            Ok(seconds) => {
                ok += 1;
                exact.push(seconds);
            }
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert(e);
            }
        }
    }
    println!("[workload] {ok} answered, {failures} failed, in {:.2?}\n", started.elapsed());

    // 4. Percentiles read in code, next to the exact values of the same samples.
    let reading = telemetry.percentiles(LATENCY, &[]).context("latency histogram missing")?;
    exact.sort_by(f64::total_cmp);
    println!("[percentiles] model call latency, {} samples in the window:", reading.count());
    println!("    {:<7} {:>12} {:>12} {:>9}", "", "sketch", "exact", "error");
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
        let estimate = reading.quantile(q).unwrap_or(f64::NAN);
        let truth =
            exact.get((q * (exact.len().saturating_sub(1)) as f64) as usize).copied().unwrap_or(f64::NAN);
        println!(
            "    {label:<7} {:>10.3}ms {:>10.3}ms {:>8.3}%",
            estimate * 1e3,
            truth * 1e3,
            (estimate - truth).abs() / truth * 100.0
        );
    }

    // 5. The same numbers as Prometheus scrapes them.
    let scrape = http_get(metrics_addr, "/metrics").await?;
    println!("\n[prometheus] GET http://{metrics_addr}/metrics (excerpt):");
    for line in scrape.lines().filter(|l| l.starts_with(LATENCY) || l.starts_with("demo_calls_total")) {
        println!("    {line}");
    }

    // 6. What an error looks like: the failing call's steps, in order.
    if let Some(e) = first_failure {
        println!("\n[error context] the first failed call, as its error prints:\n");
        for line in e.to_string().lines() {
            println!("    {line}");
        }
    }

    println!("\n[more] the main job: `foundation demo` (a local cluster optimizing a program); the");
    println!("     capabilities one by one: `cargo run -p foundation-examples --example <name>`");
    if args.keep_serving {
        println!("\n[telemetry] still serving http://{metrics_addr}/metrics; Ctrl-C or SIGTERM stops");
        shutdown_signal().await?;
    }
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// One simulated call: three steps, the third of which fails for about 3 % of questions.
async fn answer_question(i: u32, seed: u64) -> Result<f64, ContextError<String>> {
    // Draw the whole call's randomness up front, so a seed reproduces it exactly.
    let mut rng = foundation_core::random::SplitMix64::new(seed);
    let demos = 2 + (rng.next_u64() % 3) as usize;
    // Log-normal latency around 4 ms with a tail, like a fast local model server.
    let latency = Duration::from_secs_f64(0.004 * (0.6 * rng.normal()).exp());
    let malformed = rng.next_u64() % 100 < 3;
    let ctx = ErrorContext::new("answer_question");
    ctx.run(|ctx| async move {
        ctx.record("question", &i);
        let prompt = ctx
            .step("build_prompt", |ctx| async move {
                ctx.record("demonstrations", &demos);
                Ok::<_, String>(format!("{demos} demos + question {i}"))
            })
            .await?;
        let (answer, seconds) = ctx
            .step("call_model", |ctx| async move {
                let started = Instant::now();
                tokio::time::sleep(latency).await;
                let took = started.elapsed().as_secs_f64();
                metrics::histogram!(LATENCY).record(took);
                ctx.record("prompt_chars", &prompt.len());
                Ok::<_, String>((if malformed { "I think so." } else { "answer: 42" }, took))
            })
            .await?;
        let result = ctx
            .step("parse_answer", |_| async move {
                answer
                    .strip_prefix("answer: ")
                    .map(|_| seconds)
                    .ok_or_else(|| format!("model reply {answer:?} has no `answer:` field"))
            })
            .await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!("demo_calls_total", "outcome" => outcome).increment(1);
        result
    })
    .await
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
