//! Embedding: an existing axum service starts a Foundation node inside its own tokio runtime,
//! keeps its own `tracing` subscriber and `metrics` recorder (Foundation installs neither), calls
//! into an actor from a route, and shuts down gracefully on SIGTERM: it stops accepting
//! requests, finishes the ones in flight and the actor's queued work within a deadline, then
//! leaves the cluster so that peers record a leave, not a failure.
//!
//! Run: `cargo run -p foundation-examples --example embedded_service -- --http 127.0.0.1:8080`
//! then `curl -s -XPOST localhost:8080/summarize -d 'some long text'` and `kill -TERM <pid>`.
//! With `--seeds 127.0.0.1:4101` it joins a cluster (`foundation cluster up`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use foundation_cluster::Cluster;
use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
struct Args {
    /// The service's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// This node's name in the cluster.
    #[arg(long, default_value = "svc")]
    name: String,
    /// This node's cluster address.
    #[arg(long, default_value = "127.0.0.1:4199")]
    listen: SocketAddr,
    /// Cluster seeds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<SocketAddr>,
    /// Simulated work per request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
    /// How long shutdown may take to finish in-flight work.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
}

/// The actor the route calls: summarizes a text (first words and a count), slowly.
struct Summarizer;

enum SummarizerMsg {
    Summarize(String, RpcReplyPort<Summary>),
}

impl ractor::Message for SummarizerMsg {}

#[derive(serde::Serialize)]
struct Summary {
    summary: String,
    words: usize,
    node: String,
}

impl Actor for Summarizer {
    type Msg = SummarizerMsg;
    type State = (String, Duration);
    type Arguments = (String, Duration);

    async fn pre_start(
        &self,
        _: ActorRef<SummarizerMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<SummarizerMsg>,
        SummarizerMsg::Summarize(text, reply): SummarizerMsg,
        (node, work): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        tokio::time::sleep(*work).await; // the model call, say
        let words: Vec<&str> = text.split_whitespace().collect();
        let summary = words.iter().take(5).copied().collect::<Vec<_>>().join(" ");
        metrics::counter!("service_summaries_total").increment(1);
        let _ = reply.send(Summary { summary, words: words.len(), node: node.clone() });
        Ok(())
    }
}

#[derive(Clone)]
struct App {
    summarizer: ActorRef<SummarizerMsg>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

async fn summarize(State(app): State<App>, text: String) -> Result<Json<Summary>, (StatusCode, String)> {
    metrics::counter!("service_requests_total").increment(1);
    let unavailable =
        |why: String| (StatusCode::SERVICE_UNAVAILABLE, format!("summarizer unavailable: {why}"));
    match app
        .summarizer
        .call(|reply| SummarizerMsg::Summarize(text, reply), Some(Duration::from_secs(30)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(summary)) => Ok(Json(summary)),
        Ok(ractor::rpc::CallResult::Timeout) => Err(unavailable("timed out".into())),
        Ok(ractor::rpc::CallResult::SenderError) => Err(unavailable("it stopped".into())),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The service's own observability, installed by the service: Foundation only emits through
    // the `tracing` and `metrics` facades, so its spans and metrics land here too.
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    // and the help text of Foundation's metric families, for that recorder
    metrics::with_recorder(|recorder| {
        foundation_core::telemetry::catalog::describe_to(recorder, foundation_cluster::metric_catalog::all())
    });

    // Before joining: a SIGTERM from now on leaves the cluster cleanly.
    let mut term = signal(SignalKind::terminate())?;

    // A Foundation node inside this runtime.
    let config = ClusterConfig { listen: args.listen, seeds: args.seeds.clone(), ..Default::default() };
    let cluster = Cluster::start(&args.name, &config, None).await?;
    let work = Duration::from_millis(args.work_ms);
    let (summarizer, summarizer_task) = Actor::spawn(None, Summarizer, (args.name.clone(), work)).await?;

    let app = App { summarizer: summarizer.clone(), metrics };
    let router = Router::new()
        .route("/summarize", post(summarize))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(|State(app): State<App>| async move { app.metrics.render() }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.http).await?;
    println!("serving on http://{} as node {} (cluster {})", listener.local_addr()?, args.name, args.listen);

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopping_rx.await;
            })
            .await
    });

    tokio::select! {
        _ = term.recv() => println!("SIGTERM: no new requests; finishing the ones in flight"),
        _ = tokio::signal::ctrl_c() => println!("Ctrl-C: no new requests; finishing the ones in flight"),
    }
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    let _ = stopping_tx.send(());
    // 1. The HTTP server stops accepting and waits for in-flight requests (which wait on the actor).
    match tokio::time::timeout_at(deadline.into(), &mut server).await {
        Ok(_) => println!("in-flight requests finished"),
        Err(_) => {
            server.abort();
            println!("drain deadline passed: requests still in flight were dropped");
        }
    }
    // 2. The actor finishes what is queued, then stops (messages sent after this are refused).
    let left = deadline.saturating_duration_since(Instant::now());
    match summarizer.drain_and_wait(Some(left)).await {
        Ok(()) => println!("actor drained"),
        Err(e) => {
            // Past the deadline: stop now, dropping what is still queued.
            summarizer.kill();
            println!("actor not drained in time ({e}); stopped");
        }
    }
    let _ = summarizer_task.await;
    // 3. Leave the cluster: peers are told, and record a leave rather than a failure.
    cluster.shutdown().await;
    println!("left the cluster; bye");
    Ok(())
}
