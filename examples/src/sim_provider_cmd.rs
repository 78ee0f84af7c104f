//! `foundation sim-provider --listen ADDR --rpm N --tpm N --latency-ms N`: the simulated
//! provider as a server of its own, so that any client (ours, the official `openai` and
//! `anthropic` packages, curl) can be tried against OpenAI's and Anthropic's APIs with limits,
//! 429s, tool calls, JSON-schema answers and streaming, and no account.
//!
//! Prints one line when it listens (`sim-provider listening on http://ADDR/v1 …`), serves until
//! Ctrl-C or SIGTERM, then prints what it served. Bad options (a zero limit, an address that
//! cannot be bound) are an error before it serves, exit status 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use foundation_actors::providers::{SimServerConfig, SimulatedConfig, SimulatedProvider};
use foundation_core::rate_limit::ProviderLimits;

/// Options of `foundation sim-provider`.
#[derive(Debug, Clone, Args)]
pub struct SimProviderArgs {
    /// Where to listen (`127.0.0.1:0`: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Requests per minute it accepts before answering 429.
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute it accepts before answering 429.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Mean latency of an answer (a stream's first piece), in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Milliseconds between a stream's pieces.
    #[arg(long, default_value_t = 0)]
    pub stream_interval_ms: u64,
    /// Words per streamed text piece.
    #[arg(long, default_value_t = 1)]
    pub chunk_words: u64,
    /// Completion tokens of a free-form answer (unset: a short answer).
    #[arg(long)]
    pub completion_tokens: Option<u64>,
    /// Seed of the simulated model: the same seed and request give the same answer.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The model name answers carry when a request names none.
    #[arg(long, default_value = "simulated")]
    pub model: String,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: SimProviderArgs) -> anyhow::Result<ExitCode> {
    if args.rpm == Some(0) || args.tpm == Some(0) {
        anyhow::bail!("--rpm and --tpm must be at least 1 (leave them out for no limit)");
    }
    if args.chunk_words == 0 {
        anyhow::bail!("--chunk-words must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let config = SimServerConfig {
            limits: ProviderLimits { rpm: args.rpm, tpm: args.tpm, ..Default::default() },
            model: SimulatedConfig {
                provider: "sim-provider".into(),
                model: args.model.clone(),
                seed: args.seed,
                latency: Duration::from_millis(args.latency_ms),
                completion_tokens: args.completion_tokens,
                stream_chunk_tokens: args.chunk_words,
                stream_interval: Duration::from_millis(args.stream_interval_ms),
                ..Default::default()
            },
        };
        let server = SimulatedProvider::start(args.listen, config)
            .await
            .with_context(|| format!("cannot serve on {}", args.listen))?;
        let limits = match (args.rpm, args.tpm) {
            (None, None) => "no limits".to_string(),
            (rpm, tpm) => format!(
                "limits {} rpm, {} tpm",
                rpm.map_or("no".into(), |n| n.to_string()),
                tpm.map_or("no".into(), |n| n.to_string())
            ),
        };
        println!(
            "sim-provider listening on {} (OpenAI: POST /v1/chat/completions, Anthropic: POST /v1/messages; {limits}; seed {})",
            server.base_url(),
            args.seed
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        let s = server.stats();
        println!(
            "sim-provider served {} answers ({} streamed, {} streams cancelled, {} tool calls), {} rate-limited, {} bad requests; {} prompt and {} completion tokens",
            s.served, s.streams, s.streams_cancelled, s.tool_calls, s.rate_limited, s.bad_requests, s.prompt_tokens, s.completion_tokens
        );
        Ok(ExitCode::SUCCESS)
    })
}
