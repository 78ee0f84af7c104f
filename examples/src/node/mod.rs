//! `foundation node`: run one cluster node until Ctrl-C or SIGTERM (or, with
//! `--exit-with-stdin`, until its standard input closes).
//!
//! - **Options** ([`NodeArgs`]) say which features run here; each feature is a module of this
//!   folder that starts itself, parses and runs its own commands and declares its own replies.
//! - **Commands**, one per line on standard input: [`commands`] tries each feature's parser;
//!   `help` lists them all. A command for a feature not running here, or one that does not
//!   parse, gets an `error` reply; nothing else happens.
//! - **Replies**: every outcome is a typed reply ([`reply`]), printed as text for people or, with
//!   `--json`, as one JSON object per line whose `"event"` names it (what programs and the
//!   multi-process tests read). A command that waits for other nodes replies when it is done,
//!   so replies of different commands may interleave.
//! - **Test hooks** (`partition`, `heal`, `forge-leaving`, `forge-suspect`) exist only with `--test-hooks`
//!   ([`test_hooks`] says why a flag).

mod approvals;
mod cache;
mod commands;
mod conversations;
pub mod coordination;
mod crdt;
pub mod llm_load;
mod membership;
mod models;
mod names;
pub mod optimize;
mod replicas;
pub mod reply;
mod services;
mod singleton_log;
mod singletons;
pub mod state_dir;
mod test_hooks;
mod topics;
pub mod trace;
mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use foundation_actors::channels::Channels;
use foundation_actors::registry::ServiceRegistry;
use foundation_cluster::Cluster;
use foundation_core::config::{ConfigLoader, FoundationConfig, LiveConfig};

use membership::Reply as Lifecycle;
use reply::emit;

/// Options of `foundation node` (each overrides the config file and FOUNDATION_* variables).
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// This node's name, unique in the cluster.
    #[arg(long)]
    name: Option<String>,
    /// Address to listen on for other nodes.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Nodes to join, comma-separated.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<SocketAddr>,
    /// The cluster's shared cookie.
    #[arg(long, env = "FOUNDATION_COOKIE", hide_env_values = true)]
    cookie: Option<String>,
    /// Find the other nodes by themselves (zero-config discovery: turns on `cluster.gossip`).
    /// Without `--listen` (and no `cluster.listen` set), listens on a free loopback port; without
    /// `--name` (and no `node.name` set), is named `node-PORT`.
    #[arg(long)]
    cluster: bool,
    /// Keep this node's state here: the members it has known (after a restart they count
    /// towards every majority, so the node never acts as a cluster of its own, and they are
    /// dialled like seeds), nodes removed for good, its incarnation and, with `--cluster`, its
    /// name and port. Default: `cluster.state_dir`, else `$XDG_STATE_HOME/foundation/nodes/NAME-PORT`
    /// (`~/.local/state/...`); with `--cluster`, `.../foundation/cluster/IP/named-NAME`, or with
    /// no name the first free `.../foundation/cluster/IP/slot-K`, so that several such nodes on
    /// one host keep their own. A `members.json` there that does not parse stops the start.
    #[arg(long, value_name = "DIR", conflicts_with = "no_state")]
    state_dir: Option<PathBuf>,
    /// Keep no state: every start is a new node (a restart with no seeds then acts as a new
    /// cluster until another node connects to it).
    #[arg(long)]
    no_state: bool,
    /// Declare a cluster singleton with this name (repeatable); it runs on one node only, and
    /// this node prints when it starts or stops here.
    #[arg(long = "singleton")]
    singletons: Vec<String>,
    /// Test aid: each singleton copy running here appends to this file, every 20 ms while its
    /// lease is valid, `active NODE COPY UNIX_MS` (and `start`/`stop` lines), so that a checker
    /// can tell whether two copies were ever active at once.
    #[arg(long, value_name = "FILE")]
    singleton_log: Option<PathBuf>,
    /// Hold this cluster-wide name (repeatable): register a worker under it, or wait and retry
    /// while another node holds it; print when it is gained, taken elsewhere, or lost.
    #[arg(long = "register")]
    names: Vec<String>,
    /// Run a replica of this replicated actor here (repeatable): one per node that asks for it.
    #[arg(long = "replicated")]
    replicated: Vec<String>,
    /// Subscribe to this cluster-wide topic of text messages (repeatable) and print what arrives.
    #[arg(long = "subscribe")]
    topics: Vec<String>,
    /// Register a service on this node (repeatable): `NAME`, or `NAME:CAP+CAP` with
    /// capabilities; its metadata says which node it is on.
    #[arg(long = "service")]
    services: Vec<String>,
    /// Run a replicator of CRDT state (the default one, `crdt`): stdin takes `crdt-inc`,
    /// `crdt-add`, `crdt-remove` and `crdt-get` (see `help`).
    #[arg(long)]
    crdt: bool,
    /// Run this node's part of the shared cache NAME (the cluster cache tier): stdin takes
    /// `cache-put`, `cache-get` and `cache-owner` (see `help`).
    #[arg(long = "shared-cache", value_name = "NAME")]
    shared_cache: Option<String>,
    /// Serve this node's metrics for Prometheus on `http://ADDR/metrics` (default:
    /// `telemetry.listen`, if set; otherwise none).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Run this node's coordinator: stdin takes `lock`, `unlock`, `elect`, `resign`, `barrier`,
    /// `bid` and `allocate` (see `help`).
    #[arg(long)]
    coordination: bool,
    /// Leave when standard input closes: a launcher that holds the node's stdin (such as
    /// `foundation cluster up`) takes its nodes with it even if it is killed.
    #[arg(long, hide = true)]
    exit_with_stdin: bool,
    /// Print every reply as one JSON object per line, its kind under `"event"` (for programs;
    /// the default is text for people).
    #[arg(long)]
    json: bool,
    /// Run the nemesis workload here (`foundation nemesis` gives every node this): clients take
    /// a lock and write its fencing token to a fenced register next to FILE, stand in an
    /// election, run a singleton and increment CRDT counters, appending what they saw to FILE
    /// as JSON lines (a history the nemesis checks). Runs the coordinator and the replicator
    /// as `--coordination` and `--crdt` do; stdin takes `workload-stop` and `workload-read`.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Test aid: take the fault-injection commands `partition`, `heal`, `forge-leaving` and `forge-suspect` on
    /// standard input (refused as unknown commands otherwise).
    #[arg(long, hide = true)]
    test_hooks: bool,
    /// Send chat requests to an endpoint under a cluster-wide budget.
    #[command(flatten)]
    llm: llm_load::LlmLoadArgs,
    /// Take part in a distributed optimization.
    #[command(flatten)]
    optimize: optimize::OptimizeArgs,
    /// Serve models to the cluster.
    #[command(flatten)]
    models: models::ModelArgs,
    /// Run an agent whose tool calls wait for approval.
    #[command(flatten)]
    approvals: approvals::ApprovalArgs,
    /// Keep the cluster's conversations; run a chat agent whose conversation the cluster keeps.
    #[command(flatten)]
    conversations: conversations::ConversationArgs,
    /// Record distributed traces, sampling new ones at this rate (0 to 1): a trace participant
    /// runs, and stdin takes the `trace-*` commands and `profile` (see `help`).
    #[arg(long, value_name = "RATE")]
    trace_rate: Option<f64>,
    /// Serve the live dashboard on this address (loopback unless a token is given).
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<SocketAddr>,
    /// Access token the dashboard requires (needed on a non-loopback address); better from the
    /// environment (FOUNDATION_DASHBOARD_TOKEN) or a file (`--dashboard-token-file`) than on the
    /// command line, which every local user can read.
    #[arg(
        long,
        env = "FOUNDATION_DASHBOARD_TOKEN",
        hide_env_values = true,
        conflicts_with = "dashboard_token_file"
    )]
    dashboard_token: Option<String>,
    /// Read the dashboard's access token from this file (its first line).
    #[arg(long, value_name = "FILE")]
    dashboard_token_file: Option<PathBuf>,
    /// A host name the dashboard answers to besides IP addresses and `localhost` (repeatable):
    /// the name users reach it by, or a proxy's.
    #[arg(long = "dashboard-host", value_name = "NAME")]
    dashboard_hosts: Vec<String>,
    /// Send every cluster trace stopped here (`trace-stop ID`) to this OpenTelemetry collector
    /// over OTLP/HTTP, e.g. `http://127.0.0.1:4318`.
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
}

impl NodeArgs {
    /// The sampling rate, if tracing is on.
    pub fn trace_rate(&self) -> Option<f64> {
        self.trace_rate
    }

    /// The node name given on the command line.
    pub fn node_name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// Runs the node until it is told to stop; exit code 2 for a configuration that does not load
/// or a dashboard that cannot be served.
pub fn run(config_file: Option<PathBuf>, args: NodeArgs) -> anyhow::Result<ExitCode> {
    if args.json {
        reply::print_json();
    }
    let config = match configure(config_file.clone(), &args)? {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(serve(config, config_file, args))
}

/// The sources of the configuration, in precedence order: the file, FOUNDATION_* variables,
/// then the options.
fn loader(config_file: Option<&PathBuf>, args: &NodeArgs) -> ConfigLoader {
    let mut loader = ConfigLoader::new();
    if let Some(path) = config_file {
        loader = loader.file(path);
    }
    loader = loader.env();
    if let Some(name) = &args.name {
        loader = loader.set("node.name", name.as_str());
    }
    if let Some(listen) = args.listen {
        loader = loader.set("cluster.listen", listen.to_string());
    }
    if !args.seeds.is_empty() {
        let seeds: Vec<toml::Value> = args.seeds.iter().map(|s| toml::Value::String(s.to_string())).collect();
        loader = loader.set("cluster.seeds", toml::Value::Array(seeds));
    }
    if let Some(cookie) = &args.cookie {
        loader = loader.set("cluster.cookie", cookie.as_str());
    }
    if args.cluster {
        loader = loader.set("cluster.gossip", true);
    }
    loader
}

/// SIGHUP: loads the configuration again from the same sources and puts it in force; this
/// node's identity (name, address, state directory), chosen at start, stays. Replies with the
/// keys that changed and those of them that need a restart (everything but the live keys; the
/// node's own providers come from its options, so nothing here follows `[llm]` yet), or with
/// why the new configuration was refused (the old one stays in force).
fn reload(live: &LiveConfig, config_file: Option<&PathBuf>, args: &NodeArgs) {
    let mut next = match loader(config_file, args).load() {
        Ok(next) => next,
        Err(e) => return emit(&Lifecycle::ConfigReloadFailed { error: e.to_string() }),
    };
    let current = live.current();
    next.node.name = current.node.name.clone();
    next.cluster.listen = current.cluster.listen;
    next.cluster.state_dir = current.cluster.state_dir.clone();
    match live.replace(next) {
        Ok(changed) => {
            let restart_needed = foundation_core::config::reference::restart_needed(&changed);
            emit(&Lifecycle::ConfigReloaded { changed, restart_needed });
        }
        Err(e) => emit(&Lifecycle::ConfigReloadFailed { error: e.to_string() }),
    }
}

/// The node's configuration: the config file, FOUNDATION_* variables and the options, with the
/// state directory chosen (the error is the configuration's, for the user).
fn configure(
    config_file: Option<PathBuf>,
    args: &NodeArgs,
) -> anyhow::Result<Result<FoundationConfig, String>> {
    let mut config = match loader(config_file.as_ref(), args).load() {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if args.no_state {
        config.cluster.state_dir = None;
    } else if let Some(dir) = &args.state_dir {
        config.cluster.state_dir = Some(dir.clone());
    }
    let defaults = foundation_core::config::FoundationConfig::default();
    // Zero-config nodes keep their name and port in their state directory (a slot of their own
    // when they have no name: a lock file tells the slots of running nodes apart), so a restart
    // is the same member at the same address, not a new one.
    if args.cluster {
        let named = config.node.name != defaults.node.name;
        let slot = match (&config.cluster.state_dir, named, args.no_state) {
            (_, _, true) => None,
            (Some(dir), _, false) => Some(state_dir::ClusterSlot::open(dir.clone())?),
            (None, true, false) => Some(state_dir::ClusterSlot::open(state_dir::named_cluster_dir(
                config.cluster.listen.ip(),
                &config.node.name,
            ))?),
            (None, false, false) => Some(state_dir::claim_cluster_slot(config.cluster.listen.ip())?),
        };
        if config.cluster.listen == defaults.cluster.listen {
            let port = slot.as_ref().and_then(|s| s.port).unwrap_or(0);
            let free = std::net::TcpListener::bind((config.cluster.listen.ip(), port))
                .or_else(|_| std::net::TcpListener::bind((config.cluster.listen.ip(), 0)))?
                .local_addr()?;
            config.cluster.listen = free;
        }
        if !named {
            config.node.name = match &slot {
                Some(slot) => slot.name()?,
                None => format!("node-{}", config.cluster.listen.port()),
            };
        }
        if let Some(slot) = slot {
            slot.remember_port(config.cluster.listen.port());
            config.cluster.state_dir = Some(slot.dir);
        }
    }
    if config.cluster.state_dir.is_none() && !args.no_state {
        config.cluster.state_dir =
            Some(state_dir::default_node_dir(&config.node.name, config.cluster.listen.port()));
    }
    Ok(Ok(config))
}

async fn serve(
    config: FoundationConfig,
    config_file: Option<PathBuf>,
    args: NodeArgs,
) -> anyhow::Result<ExitCode> {
    // First of all: a SIGHUP or SIGTERM that arrives while the node starts must find its
    // handler (SIGHUP's default action would kill the node; it once did, right after `listening`).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let live = LiveConfig::new(config.clone())?;
    let node = config.node.name.clone();
    // This process is the node's own: it may install the global metrics recorder, first, so
    // that what records through handles taken at start (channels, caches) records into it.
    let _metrics = match args.metrics.or(config.telemetry.listen) {
        Some(addr) => {
            let telemetry = foundation_core::Telemetry::new(&config.telemetry)?;
            // every family's help text and unit, whichever subsystems this node runs
            telemetry.describe(
                foundation_cluster::metric_catalog::all()
                    .chain(scope_tracer::metric_catalog::FAMILIES)
                    .chain(dspex_optimizer::metric_catalog::FAMILIES),
            );
            telemetry.install_global()?;
            let server = telemetry.serve(addr).await?;
            emit(&Lifecycle::MetricsServing { url: format!("http://{}/metrics", server.local_addr()) });
            Some((telemetry, server))
        }
        None => None,
    };
    let channels = Channels::start().await?;
    let cluster = Cluster::start(&node, &config.cluster, Some(channels.clone())).await?;
    let mut events = cluster.subscribe();
    if let Some(dir) = &config.cluster.state_dir {
        let remembers = cluster.members().into_iter().map(|m| m.name).collect();
        emit(&Lifecycle::State { dir: dir.display().to_string(), remembers });
    }
    emit(&Lifecycle::Listening { node: node.clone(), addr: cluster.listen_addr().to_string() });
    let _singletons = singletons::start(&cluster, &args.singletons, args.singleton_log.as_deref());
    names::start(&cluster, &args.names);
    topics::subscribe(&channels, &args.topics)?;
    let replicas = replicas::start(&cluster, &args.replicated).await?;
    let crdt = match args.crdt || args.history.is_some() {
        true => Some(foundation_cluster::crdt_state::Replicator::start(&cluster, Default::default()).await?),
        false => None,
    };
    let cache = cache::start(&cluster, args.shared_cache.as_deref()).await?;
    // With telemetry, its histograms are shared for `foundation cluster metrics`.
    let _reader = match &_metrics {
        Some((telemetry, _)) => Some(
            foundation_cluster::cluster_metrics::MetricsReader::start(&cluster, telemetry.clone()).await?,
        ),
        None => None,
    };
    let coordination = match args.coordination || args.history.is_some() {
        true => Some(coordination::CoordCommands::start(&cluster).await?),
        false => None,
    };
    let workload = match (&args.history, &coordination, &crdt) {
        (Some(history), Some(coordination), Some(crdt)) => Some(workload::Workload::start(
            &cluster,
            coordination.coordination().clone(),
            crdt.clone(),
            history,
        )?),
        _ => None,
    };
    let registry = ServiceRegistry::start().await?;
    registry.set_max_message_bytes(cluster.max_frame_bytes());
    let models = models::start(&registry, &args.models, cluster.max_frame_bytes()).await?;
    let approvals = approvals::start(&registry, &args.approvals).await?;
    let conversations = conversations::start(&cluster, &registry, &args.conversations).await?;
    let _workers = services::register(&registry, &node, &args.services).await?;
    let budget = llm_load::start(&cluster, &args.llm).await?;
    let run = optimize::start(&cluster, &channels, &args.optimize, &config.llm).await;
    if args.trace_rate.is_some() {
        trace::start(&cluster).await?;
    }
    let _dashboard = match args.dashboard {
        Some(addr) => {
            let token = match &args.dashboard_token_file {
                Some(file) => match std::fs::read_to_string(file) {
                    Ok(text) => Some(text.lines().next().unwrap_or_default().trim().to_string()),
                    Err(e) => {
                        eprintln!("cannot read the dashboard token from {}: {e}", file.display());
                        cluster.shutdown().await;
                        return Ok(ExitCode::from(2));
                    }
                },
                None => args.dashboard_token.clone(),
            };
            let options = scope_tracer::dashboard::DashboardOptions {
                token,
                allowed_hosts: args.dashboard_hosts.clone(),
                run_control: Some(std::sync::Arc::new(optimize::ServiceControl(cluster.clone()))),
                // Its service-level objectives shown (with `--metrics`: the node's telemetry).
                telemetry: _metrics.as_ref().map(|(telemetry, _)| telemetry.clone()),
                ..Default::default()
            };
            match scope_tracer::dashboard::Dashboard::serve(addr, cluster.clone(), Some(&channels), options)
                .await
            {
                Ok(dashboard) => {
                    emit(&Lifecycle::DashboardServing { url: format!("http://{}/", dashboard.addr()) });
                    Some(dashboard)
                }
                Err(e) => {
                    eprintln!("{e}");
                    cluster.shutdown().await;
                    return Ok(ExitCode::from(2));
                }
            }
        }
        None => None,
    };
    let features = commands::Features {
        cluster: cluster.clone(),
        channels,
        registry,
        replicas,
        crdt,
        cache,
        coordination,
        run,
        budget,
        tracing: args.trace_rate.is_some(),
        otlp: args.otlp.clone(),
        test_hooks: args.test_hooks,
        workload,
        models,
        approvals,
        conversations,
    };
    // Standard input: one command per line; end of input is the launcher going away.
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::stdin().lock()).map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.recv(), if stdin_open => match line {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => features.run_line(&line).await,
                None if args.exit_with_stdin => break,
                None => stdin_open = false,
            },
            event = events.recv() => match event {
                Ok(event) => emit(&Lifecycle::of(event)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(count)) => {
                    emit(&Lifecycle::MissedEvents { count })
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => reload(&live, config_file.as_ref(), &args),
        }
    }
    emit(&Lifecycle::Leaving { node: node.clone() });
    cluster.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
