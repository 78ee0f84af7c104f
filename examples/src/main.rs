//! The `foundation` command: `foundation demo` runs the main job; `foundation tour` the
//! single-node building blocks; `foundation config check`
//! validates a configuration; `foundation node` runs one cluster node; `foundation certs` makes
//! a TLS cluster's certificates; `foundation sim-provider` serves the simulated model over HTTP.

/// mimalloc: glibc's malloc faults fresh pages in for every large message (examples/Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline_cmd;
mod certs_cmd;
mod cluster_cmd;
mod config_cmd;
mod demo;
mod nemesis_cmd;
mod node;
mod optimize_client;
mod optimize_cmd;
mod predict_cmd;
mod sim_provider_cmd;
mod tour;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Foundation: supervised, distributed actors for agent and AI applications.
#[derive(Debug, Parser)]
#[command(name = "foundation", version, about)]
struct Cli {
    /// Config file (TOML). Also read from FOUNDATION_CONFIG; FOUNDATION_* variables override it.
    #[arg(long, global = true, env = foundation_core::config::ENV_CONFIG_FILE)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo: a local cluster of node processes optimizing a language-model program, with
    /// no network or accounts.
    Demo(demo::DemoArgs),
    /// A tour of the single-node building blocks: configuration, telemetry, error context.
    Tour(tour::TourArgs),
    /// Run one cluster node until Ctrl-C or SIGTERM, printing membership changes.
    Node(Box<node::NodeArgs>),
    /// Latency baselines per operation: record the cluster's percentiles to a file, and compare
    /// a later run with them (exit 1 on a regression).
    #[command(subcommand)]
    Baseline(baseline_cmd::BaselineCommand),
    /// Run a local cluster of node processes.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCommand),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Make the certificates of a TLS cluster: a new CA, one certificate per node (for
    /// NODE.SERVER_NAME: a node can only join under its own name) and one for the command-line
    /// tools, in a private directory; prints the configuration that uses them.
    Certs(certs_cmd::CertsArgs),
    /// Run node processes on test hosts (network namespaces; needs root) under a seeded random
    /// schedule of faults while clients record a history, then check it for anomalies.
    Nemesis(nemesis_cmd::NemesisArgs),
    /// Run a saved program once (`--program best.json --input question="…"`) and print its
    /// outputs, with the simulated model or an OpenAI-compatible endpoint.
    Predict(predict_cmd::PredictArgs),
    /// Optimization runs described in a spec file (`optimize run --spec run.toml --out
    /// best.json`: in this process; the best program saved for `foundation predict`).
    #[command(subcommand)]
    Optimize(optimize_cmd::OptimizeCommand),
    /// Serve the simulated model over HTTP as OpenAI's and Anthropic's APIs (chat, tools,
    /// JSON-schema answers, streaming, 429s with real headers), to try any client against.
    SimProvider(sim_provider_cmd::SimProviderArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo's own output is the point: its observer node's connection chatter is not.
    let default = if matches!(cli.command, Command::Demo(_)) { "error" } else { "warn" };
    let filter = std::env::var(foundation_core::config::ENV_LOG).unwrap_or_else(|_| default.to_string());
    let env_filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("ignoring {}={filter:?}: {e}", foundation_core::config::ENV_LOG);
        tracing_subscriber::EnvFilter::new("warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match &cli.command {
        // A traced node: the log filter applies to the log only, and the recorder sees every span.
        Command::Node(args) if args.trace_rate().is_some() => {
            use tracing_subscriber::Layer as _;
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::util::SubscriberInitExt as _;
            let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
            let node = args.node_name().unwrap_or("node");
            tracing_subscriber::registry()
                .with(log.with_filter(env_filter))
                .with(scope_tracer::layer(node, args.trace_rate().unwrap_or(0.0)))
                .with(scope_tracer::profile_layer())
                .init();
        }
        _ => tracing_subscriber::fmt()
            .with_env_filter(env_filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .init(),
    }

    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Tour(args) => tour::run(cli.config, args),
        Command::Config(cmd) => config_cmd::run(cli.config, cmd),
        Command::Node(args) => node::run(cli.config, *args),
        Command::Cluster(cmd) => cluster_cmd::run(cli.config, cmd),
        Command::Baseline(cmd) => baseline_cmd::run(cli.config, cmd),
        Command::Nemesis(args) => nemesis_cmd::run(cli.config, args),
        Command::Certs(args) => certs_cmd::run(args),
        Command::Predict(args) => predict_cmd::run(args),
        Command::Optimize(cmd) => optimize_cmd::run(cli.config.as_deref(), cmd),
        Command::SimProvider(args) => sim_provider_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: Foundation's errors print their cause
/// in their own message and also return it as `source()`, so a cause already in the text is
/// not repeated.
fn report(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        let message = message.trim_end();
        if !text.contains(message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(message);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use foundation_core::events::EventStoreError;

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        // `Storage` prints its cause and returns it from `source()`.
        let stored = EventStoreError::Storage("disk full".into());
        assert_eq!(super::report(&anyhow::Error::new(stored)), "event storage failed: disk full");
        let with_context = anyhow::Error::new(std::io::Error::other("no such file")).context("reading state");
        assert_eq!(super::report(&with_context), "reading state: no such file");
    }
}
