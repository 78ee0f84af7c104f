//! `foundation node`: run one cluster node until Ctrl-C or SIGTERM, printing membership changes,
//! and taking commands on standard input (see [`Command`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use foundation_actors::channels::{Channels, Topic};
use foundation_actors::registry::{Query, ServiceRegistry};
use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, MembershipEvent, SingletonEvent};
use foundation_core::config::ConfigLoader;

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
    /// Run a replicator of CRDT state (the default one, `crdt`): stdin takes `crdt-inc KEY N`,
    /// `crdt-add KEY ELEM`, `crdt-remove KEY ELEM` and `crdt-get KEY` (each may end with
    /// `majority`), and the test hooks `partition NODE,NODE,...` and `heal`.
    #[arg(long)]
    crdt: bool,
    /// Run this node's part of the shared cache NAME (the cluster cache tier): stdin takes
    /// `cache-put KEY VALUE`, `cache-get KEY` and `cache-owner KEY`.
    #[arg(long = "shared-cache", value_name = "NAME")]
    shared_cache: Option<String>,
    /// Serve this node's metrics for Prometheus on `http://ADDR/metrics` (default:
    /// `telemetry.listen`, if set; otherwise none).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Run this node's coordinator: stdin takes `lock NAME [LEASE_MS]`, `unlock NAME`,
    /// `elect NAME`, `resign NAME`, `barrier NAME PARTIES`, `bid CAPABILITY COST` and
    /// `allocate CAPABILITY WORK_MS`.
    #[arg(long)]
    coordination: bool,
    /// Leave when standard input closes: a launcher that holds the node's stdin (such as
    /// `foundation cluster up`) takes its nodes with it even if it is killed.
    #[arg(long, hide = true)]
    exit_with_stdin: bool,
    /// Send chat requests to an endpoint under a cluster-wide budget.
    #[command(flatten)]
    llm: crate::llm_load::LlmLoadArgs,
    /// Take part in a distributed optimization.
    #[command(flatten)]
    optimize: crate::optimize::OptimizeArgs,
    /// Record distributed traces, sampling new ones at this rate (0 to 1): a trace participant
    /// runs, and stdin takes `trace-hop NODE,NODE,...` and `trace-collect TRACE_ID`.
    #[arg(long, value_name = "RATE")]
    trace_rate: Option<f64>,
    /// Serve the live dashboard on this address (loopback unless a token is given).
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<SocketAddr>,
    /// Access token the dashboard requires (needed on a non-loopback address).
    #[arg(long)]
    dashboard_token: Option<String>,
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

/// What a node does with a line on its standard input.
#[derive(Debug, PartialEq)]
enum Command {
    /// `broadcast TOPIC TEXT`: send TEXT to the topic's subscribers on every node.
    Broadcast { topic: String, text: String },
    /// `broadcast-bytes TOPIC N`: broadcast a text of N bytes (to try the frame limit).
    BroadcastBytes { topic: String, len: usize },
    /// `services`: print every service instance this node can see, on any node.
    Services,
    /// `health SERVICE up|down`: report this node's instances of SERVICE healthy or not.
    Health { service: String, healthy: bool },
    /// `replicas NAME`: print the nodes that run a replica of NAME.
    Replicas { name: String },
    /// `budget`: print this node's share of the provider budget (`--provider-url`).
    Budget,
    /// `stop-run`: stop the optimization run (`--optimize`); starting its nodes again resumes it.
    StopRun,
    /// `trace-hop NODE,NODE,...`: start a trace here and send it along these nodes (`--trace-rate`).
    TraceHop { path: Vec<String> },
    /// `trace-collect TRACE_ID`: collect a trace from every node and print it.
    TraceCollect { trace_id: String },
    /// `profile`: every traced node's profile, with the bottlenecks and hotspots found.
    Profile,
    /// `trace-start [RATE] [NODE,NODE,...]`: start a cluster trace (default: every node, rate 1).
    TraceStart { rate: f64, nodes: Vec<String> },
    /// `trace-stop ID`: stop a cluster trace and print its report.
    TraceStop { id: String },
    /// `trace-report ID`: print a cluster trace's report so far.
    TraceReport { id: String },
    /// `cache-put KEY VALUE`: store VALUE (text) under KEY in the shared cache (`--shared-cache`).
    CachePut { key: String, value: String },
    /// `cache-get KEY`: read KEY from the shared cache.
    CacheGet { key: String },
    /// `cache-owner KEY`: the node that owns KEY, and the nodes the shared cache is spread over.
    CacheOwner { key: String },
    /// `crdt-inc|crdt-add|crdt-remove|crdt-get KEY [ARG] [majority]`: CRDT state (`--crdt`).
    Crdt(CrdtCommand),
    /// `partition NODE,NODE,...`: test hook, refuse every session with these nodes (do the same
    /// on their side: a partition cuts both ways).
    Partition { nodes: Vec<String> },
    /// `heal`: test hook, end `partition`.
    Heal,
    /// `forge-leaving NODE`: test hook, send every peer a leave notice in NODE's name (a lying
    /// peer: the others must not believe it).
    ForgeLeaving { node: String },
    /// `lock`, `unlock`, `elect`, `resign`, `barrier`, `bid`, `allocate` (`--coordination`).
    Coord(crate::coord_cmd::CoordCommand),
}

/// What the `crdt-*` commands take.
const CRDT_USAGE: &str = concat!(
    "usage: `crdt-inc KEY N`, `crdt-add KEY ELEM`, `crdt-remove KEY ELEM`, `crdt-get KEY`, ",
    "each optionally followed by `majority`"
);

/// A command on replicated CRDT state: counters (`crdt-inc`, a `PnCounter`) and sets of text
/// (`crdt-add`, `crdt-remove`, an `OrSet`), with local or majority consistency.
#[derive(Debug, PartialEq)]
struct CrdtCommand {
    key: String,
    op: CrdtOp,
    majority: bool,
}

#[derive(Debug, PartialEq)]
enum CrdtOp {
    Inc(i64),
    Add(String),
    Remove(String),
    Get,
}

impl Command {
    fn parse(line: &str) -> Result<Command, String> {
        let all: Vec<&str> = line.split_whitespace().collect();
        if let Some((op, args)) = all.split_first()
            && let Some(parsed) = crate::coord_cmd::CoordCommand::parse(op, args)
        {
            return parsed.map(Command::Coord);
        }
        let mut words = line.split_whitespace();
        let usage = "commands: `broadcast TOPIC TEXT`, `broadcast-bytes TOPIC N`, `services`, `health SERVICE up|down`, `replicas NAME`, `budget`, `stop-run`, `trace-hop N1,N2`, `trace-collect ID`, `profile`, `trace-start [RATE] [N1,N2]`, `trace-stop ID`, `trace-report ID`";
        match (words.next(), words.next()) {
            (Some("broadcast"), Some(topic)) => {
                let text = words.collect::<Vec<_>>().join(" ");
                Ok(Command::Broadcast { topic: topic.to_string(), text })
            }
            (Some("broadcast-bytes"), Some(topic)) => match words.next().map(str::parse) {
                Some(Ok(len)) => Ok(Command::BroadcastBytes { topic: topic.to_string(), len }),
                _ => Err(format!("`broadcast-bytes` needs a byte count; {usage}")),
            },
            (Some("services"), None) => Ok(Command::Services),
            (Some("budget"), None) => Ok(Command::Budget),
            (Some("stop-run"), None) => Ok(Command::StopRun),
            (Some("trace-hop"), Some(path)) => {
                Ok(Command::TraceHop { path: path.split(',').map(str::to_string).collect() })
            }
            (Some("trace-collect"), Some(id)) => Ok(Command::TraceCollect { trace_id: id.to_string() }),
            (Some("profile"), None) => Ok(Command::Profile),
            (Some("trace-start"), rate) => {
                let rate = match rate.map(str::parse::<f64>) {
                    None => 1.0,
                    Some(Ok(r)) => r,
                    Some(Err(_)) => return Err(format!("`trace-start` takes a rate from 0 to 1; {usage}")),
                };
                let nodes =
                    words.next().map(|n| n.split(',').map(str::to_string).collect()).unwrap_or_default();
                Ok(Command::TraceStart { rate, nodes })
            }
            (Some("trace-stop"), Some(id)) => Ok(Command::TraceStop { id: id.to_string() }),
            (Some("trace-report"), Some(id)) => Ok(Command::TraceReport { id: id.to_string() }),
            (Some("replicas"), Some(name)) => Ok(Command::Replicas { name: name.to_string() }),
            (Some("cache-put"), Some(key)) => {
                let value = words.collect::<Vec<_>>().join(" ");
                Ok(Command::CachePut { key: key.to_string(), value })
            }
            (Some("cache-get"), Some(key)) => Ok(Command::CacheGet { key: key.to_string() }),
            (Some("cache-owner"), Some(key)) => Ok(Command::CacheOwner { key: key.to_string() }),
            (Some("partition"), Some(nodes)) => {
                Ok(Command::Partition { nodes: nodes.split(',').map(str::to_string).collect() })
            }
            (Some("heal"), None) => Ok(Command::Heal),
            (Some("forge-leaving"), Some(node)) => Ok(Command::ForgeLeaving { node: node.to_string() }),
            (Some(op @ ("crdt-inc" | "crdt-add" | "crdt-remove" | "crdt-get")), Some(key)) => {
                let mut rest: Vec<&str> = words.collect();
                let majority = rest.last() == Some(&"majority");
                if majority {
                    rest.pop();
                }
                let op = match (op, rest.as_slice()) {
                    ("crdt-inc", [n]) => CrdtOp::Inc(
                        n.parse().map_err(|_| format!("`crdt-inc` needs a whole number, not `{n}`"))?,
                    ),
                    ("crdt-add", [elem]) => CrdtOp::Add(elem.to_string()),
                    ("crdt-remove", [elem]) => CrdtOp::Remove(elem.to_string()),
                    ("crdt-get", []) => CrdtOp::Get,
                    _ => return Err(CRDT_USAGE.into()),
                };
                Ok(Command::Crdt(CrdtCommand { key: key.to_string(), op, majority }))
            }
            (Some("health"), Some(service)) => match words.next() {
                Some("up") => Ok(Command::Health { service: service.to_string(), healthy: true }),
                Some("down") => Ok(Command::Health { service: service.to_string(), healthy: false }),
                _ => Err(format!("`health` needs `up` or `down`; {usage}")),
            },
            _ => Err(format!("unknown command `{}`; {usage}", line.trim())),
        }
    }
}

fn text_topic(name: &str) -> Topic<String> {
    Topic::new(name).cluster_wide()
}

fn run_command(
    command: Command,
    channels: &Channels,
    registry: &ServiceRegistry,
    replicated: &[foundation_cluster::ReplicatedHandle],
    budget: Option<&foundation_core::rate_limit::RateLimiter>,
) {
    match command {
        Command::StopRun
        | Command::TraceHop { .. }
        | Command::TraceCollect { .. }
        | Command::Profile
        | Command::TraceStart { .. }
        | Command::TraceStop { .. }
        | Command::TraceReport { .. }
        | Command::CachePut { .. }
        | Command::CacheGet { .. }
        | Command::CacheOwner { .. }
        | Command::Crdt(_)
        | Command::Partition { .. }
        | Command::Heal
        | Command::ForgeLeaving { .. }
        | Command::Coord(_) => {}
        Command::Budget => match budget {
            Some(limiter) => say!("budget share {:.3}", limiter.share()),
            None => say!("budget: none (start the node with --provider-url)"),
        },
        Command::Replicas { name } => match replicated.iter().find(|r| r.name() == name) {
            Some(handle) => say!("replicas {name}: {}", handle.nodes().join(",")),
            None => say!("replicas {name}: not run on this node (start it with --replicated {name})"),
        },
        Command::Broadcast { topic, text } => match channels.broadcast(&text_topic(&topic), text) {
            Ok(n) => say!("broadcast {topic}: sent ({n} subscribers here)"),
            Err(e) => say!("broadcast {topic} refused: {e}"),
        },
        Command::BroadcastBytes { topic, len } => {
            match channels.broadcast(&text_topic(&topic), "x".repeat(len)) {
                Ok(n) => say!("broadcast {topic}: sent {len} bytes ({n} subscribers here)"),
                Err(e) => say!("broadcast {topic} refused: {e}"),
            }
        }
        Command::Services => {
            let found = registry.discover(&Query::new());
            for i in &found {
                let caps: Vec<&str> = i.capabilities.iter().map(String::as_str).collect();
                let node = i.metadata.get("node").map_or("?", String::as_str);
                say!(
                    "service {}@{node} caps={} healthy={} local={}",
                    i.name,
                    caps.join("+"),
                    i.healthy,
                    i.local
                );
            }
            say!("services: {} found", found.len());
        }
        Command::Health { service, healthy } => {
            let mine = registry.discover(&Query::new().name(&service));
            let mine: Vec<_> = mine.into_iter().filter(|i| i.local).collect();
            for i in &mine {
                let _ = registry.report_health(i.id, healthy, 0.0);
            }
            say!(
                "health {service}: {} instance(s) reported {}",
                mine.len(),
                if healthy { "up" } else { "down" }
            );
        }
    }
}

/// Runs a CRDT command and prints one line: `crdt KEY = VALUE` (reads), `crdt KEY updated: VALUE`
/// (writes), or `crdt KEY failed: ERROR`; VALUE is `counter N`, `set [A,B]` or `none`.
async fn crdt_command(replicator: Option<foundation_cluster::crdt_state::Replicator>, command: CrdtCommand) {
    use foundation_cluster::crdt_state::{CrdtValue, Key, ReadConsistency, WriteConsistency};
    use foundation_core::crdt::{OrSet, PnCounter};
    let Some(replicator) = replicator else {
        return say!("crdt: no replicator here (start the node with --crdt)");
    };
    let CrdtCommand { key, op, majority } = command;
    let (read, write) = match majority {
        true => (ReadConsistency::majority(), WriteConsistency::majority()),
        false => (ReadConsistency::Local, WriteConsistency::Local),
    };
    let show = |value: Option<CrdtValue>| match value {
        None => "none".to_string(),
        Some(CrdtValue::PnCounter(c)) => format!("counter {}", c.value()),
        Some(CrdtValue::OrSet(s)) => format!("set [{}]", s.iter().cloned().collect::<Vec<_>>().join(",")),
        Some(other) => format!("{other:?}"),
    };
    let (counter, set) = (Key::<PnCounter>::new(key.as_str()), Key::<OrSet<String>>::new(key.as_str()));
    let result = match op {
        CrdtOp::Get => {
            let got = match replicator.value(&key).map(|v| v.kind()) {
                Some(foundation_cluster::crdt_state::CrdtKind::OrSet) => {
                    replicator.get(&set, read).await.map(|v| v.map(CrdtValue::OrSet))
                }
                _ => replicator.get(&counter, read).await.map(|v| v.map(CrdtValue::PnCounter)),
            };
            return match got {
                Ok(value) => say!("crdt {key} = {}", show(value)),
                Err(e) => say!("crdt {key} failed: {e}"),
            };
        }
        CrdtOp::Inc(n) => {
            replicator.update(&counter, write, |c, me| c.add(me, n)).await.map(CrdtValue::PnCounter)
        }
        CrdtOp::Add(elem) => {
            replicator.update(&set, write, |s, me| s.add(me, elem)).await.map(CrdtValue::OrSet)
        }
        CrdtOp::Remove(elem) => replicator
            .update(&set, write, |s, _| {
                s.remove(&elem);
            })
            .await
            .map(CrdtValue::OrSet),
    };
    match result {
        Ok(value) => say!("crdt {key} updated: {}", show(Some(value))),
        Err(e) => say!("crdt {key} failed: {e}"),
    }
}

/// Runs a shared-cache command and prints one line: `cache KEY = VALUE (owner NODE)`,
/// `cache KEY: miss (owner NODE)` or `cache KEY: miss (ERROR)` when the owner cannot be asked,
/// `cache-put KEY: stored on NODE` or `cache-put KEY failed: ERROR`, and
/// `cache-owner KEY: NODE (nodes A,B,C)`.
async fn cache_command(cache: Option<foundation_cluster::shared_cache::SharedCacheHandle>, command: Command) {
    let Some(cache) = cache else {
        return say!("cache: no shared cache here (start the node with --shared-cache NAME)");
    };
    match command {
        Command::CachePut { key, value } => {
            match cache.put(&key, value.into_bytes(), Default::default()).await {
                Ok(owner) => say!("cache-put {key}: stored on {owner}"),
                Err(e) => say!("cache-put {key} failed: {e}"),
            }
        }
        Command::CacheGet { key } => match cache.try_get(&key).await {
            Ok(Some(found)) => {
                say!("cache {key} = {} (owner {})", String::from_utf8_lossy(&found.value), found.owner)
            }
            Ok(None) => say!("cache {key}: miss (owner {})", cache.owner(&key)),
            Err(e) => say!("cache {key}: miss ({e})"),
        },
        Command::CacheOwner { key } => {
            say!("cache-owner {key}: {} (nodes {})", cache.owner(&key), cache.nodes().join(","))
        }
        _ => {}
    }
}

/// A remotable actor to hold a registered name (remotable, so other nodes see the name).
struct NamedWorker;

#[derive(ractor_cluster::RactorClusterMessage)]
enum NamedMsg {
    Ping,
}

impl ractor::Actor for NamedWorker {
    type Msg = NamedMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ractor::ActorRef<NamedMsg>,
        _: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ractor::ActorRef<NamedMsg>,
        _: NamedMsg,
        _: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

/// Holds `name` for as long as the node runs, taking it whenever it is free.
async fn hold_name(cluster: Cluster, name: String) {
    // A node that is joining first waits to see the cluster, so that it does not take a name
    // the cluster already has (it would then lose it by the conflict rule, a needless flap).
    if cluster.seed_count() > 0 {
        let _ = cluster.wait_for_members(1, std::time::Duration::from_secs(10)).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut holder: Option<ractor::ActorCell> = None;
    let mut last_report = String::new();
    loop {
        if let Some(cell) = &holder
            && cell.get_status() == ractor::ActorStatus::Stopped
        {
            let now = match cluster.whereis_node(&name).await {
                Some(node) => format!("now held on {node}"),
                None => "vacant".to_string(),
            };
            say!("lost name {name} ({now})");
            holder = None;
            last_report.clear();
        }
        if holder.is_none() {
            match ractor::Actor::spawn(None, NamedWorker, ()).await {
                Ok((worker, _)) => match cluster.register_name(&name, worker.get_cell()).await {
                    Ok(()) => {
                        say!("registered {name}");
                        holder = Some(worker.get_cell());
                    }
                    Err(e) => {
                        worker.stop(None);
                        let report = e.to_string();
                        if report != last_report {
                            say!("{report}");
                            last_report = report;
                        }
                    }
                },
                Err(e) => eprintln!("cannot start a worker for {name}: {e}"),
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// The actor a demo singleton runs: it only exists, which is what the tests watch.
struct SingletonWorker;

impl ractor::Actor for SingletonWorker {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

pub fn run(config_file: Option<PathBuf>, args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut loader = ConfigLoader::new();
    if let Some(path) = &config_file {
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
    let mut config = match loader.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
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
            (Some(dir), _, false) => Some(crate::node_state::ClusterSlot::open(dir.clone())?),
            (None, true, false) => Some(crate::node_state::ClusterSlot::open(
                crate::node_state::named_cluster_dir(config.cluster.listen.ip(), &config.node.name),
            )?),
            (None, false, false) => Some(crate::node_state::claim_cluster_slot(config.cluster.listen.ip())?),
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
            Some(crate::node_state::default_node_dir(&config.node.name, config.cluster.listen.port()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let channels = Channels::start().await?;
        let cluster = Cluster::start(&config.node.name, &config.cluster, Some(channels.clone())).await?;
        let mut events = cluster.subscribe();
        if let Some(dir) = &config.cluster.state_dir {
            let remembered: Vec<String> = cluster.members().into_iter().map(|m| m.name).collect();
            match remembered.is_empty() {
                true => say!("state in {}", dir.display()),
                false => say!("state in {} (remembers {})", dir.display(), remembered.join(", ")),
            }
        }
        say!("node {} listening on {}", config.node.name, cluster.listen_addr());
        let mut singletons = Vec::new();
        for name in &args.singletons {
            let handle = match &args.singleton_log {
                None => cluster.start_singleton(name, ChildSpec::new(name.clone(), || (SingletonWorker, ()))),
                Some(log) => {
                    let copy = crate::singleton_log::Copy::new(name, &config.node.name, log);
                    cluster.start_singleton(name, ChildSpec::new(name.clone(), move || copy.actor()))
                }
            };
            let mut events = handle.subscribe();
            let name = name.clone();
            tokio::spawn(async move {
                while let Ok(event) = events.recv().await {
                    match event {
                        SingletonEvent::Started => say!("singleton {name} started here"),
                        SingletonEvent::Stopped(reason) => say!("singleton {name} stopped here ({reason})"),
                    }
                }
            });
            singletons.push(handle);
        }
        for name in &args.names {
            tokio::spawn(hold_name(cluster.clone(), name.clone()));
        }
        for topic in &args.topics {
            let mut subscription = channels.subscribe(&text_topic(topic))?;
            let topic = topic.clone();
            tokio::spawn(async move {
                while let Ok(text) = subscription.recv().await {
                    say!("received {topic}: {text}");
                }
            });
        }
        let mut replicas = Vec::new();
        for name in &args.replicated {
            let spec = ChildSpec::new(name.clone(), || (SingletonWorker, ()));
            replicas.push(cluster.start_replicated(name, spec).await?);
        }
        let crdt = match args.crdt {
            true => Some(cluster.start_replicator(Default::default()).await?),
            false => None,
        };
        let shared_cache = match &args.shared_cache {
            Some(name) => Some(cluster.start_shared_cache(name, Default::default()).await?),
            None => None,
        };
        // This process is the node's own: it may install the global metrics recorder.
        let _metrics = match args.metrics.or(config.telemetry.listen) {
            Some(addr) => {
                let telemetry = foundation_core::Telemetry::new(&config.telemetry)?;
                telemetry.install_global()?;
                let server = telemetry.serve(addr).await?;
                say!("metrics on http://{}/metrics", server.local_addr());
                Some((telemetry, server))
            }
            None => None,
        };
        let coordinator = match args.coordination {
            true => Some(crate::coord_cmd::CoordCommands::start(&cluster).await?),
            false => None,
        };
        let registry = ServiceRegistry::start().await?;
        registry.set_max_message_bytes(cluster.max_frame_bytes());
        let mut workers = Vec::new();
        for service in &args.services {
            let (name, caps) = service.split_once(':').unwrap_or((service.as_str(), ""));
            let (worker, _) = ractor::Actor::spawn(None, NamedWorker, ()).await?;
            let caps = caps.split('+').filter(|c| !c.is_empty());
            registry.register_service(name, worker.get_cell(), caps, [("node", config.node.name.as_str())])?;
            workers.push(worker);
        }
        let budget = crate::llm_load::start(&cluster, &args.llm)?;
        let run = crate::optimize::start(&cluster, &channels, &args.optimize);
        if args.trace_rate.is_some() {
            crate::trace_cmd::start(&cluster).await?;
        }
        let _dashboard = match args.dashboard {
            Some(addr) => match scope_tracer::dashboard::Dashboard::serve(addr, cluster.clone(), Some(&channels), args.dashboard_token.clone()).await {
                Ok(d) => {
                    say!("dashboard on http://{}/", d.addr());
                    Some(d)
                }
                Err(e) => {
                    eprintln!("{e}");
                    cluster.shutdown().await;
                    return Ok(ExitCode::from(2));
                }
            },
            None => None,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
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
                    Some(line) => match Command::parse(&line) {
                        Ok(Command::StopRun) => match &run {
                            Some(run) => {
                                let run = run.clone();
                                tokio::spawn(async move {
                                    match run.stop().await {
                                        Ok(()) => say!("run stopped"),
                                        Err(e) => say!("run not stopped: {e}"),
                                    }
                                });
                            }
                            None => say!("stop-run: no run here (start the node with --optimize)"),
                        },
                        Ok(Command::TraceHop { path }) => crate::trace_cmd::hop(&config.node.name, &path),
                        Ok(Command::Profile) => {
                            let cluster = cluster.clone();
                            tokio::spawn(async move { crate::trace_cmd::profile(&cluster).await });
                        }
                        Ok(Command::TraceCollect { trace_id }) => {
                            let cluster = cluster.clone();
                            tokio::spawn(async move { crate::trace_cmd::collect(&cluster, &trace_id).await });
                        }
                        Ok(Command::TraceStart { rate, nodes }) => {
                            let cluster = cluster.clone();
                            tokio::spawn(async move { crate::trace_cmd::start_session(&cluster, rate, nodes).await });
                        }
                        Ok(Command::TraceStop { id }) => {
                            let otlp = args.otlp.clone();
                            tokio::spawn(async move { crate::trace_cmd::session_report(&id, true, otlp).await });
                        }
                        Ok(Command::TraceReport { id }) => {
                            tokio::spawn(async move { crate::trace_cmd::session_report(&id, false, None).await });
                        }
                        Ok(Command::Crdt(command)) => {
                            tokio::spawn(crdt_command(crdt.clone(), command));
                        }
                        Ok(Command::Partition { nodes }) => {
                            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                            cluster.block_peers(&nodes).await;
                            say!("partitioned from {}", nodes.join(","));
                        }
                        Ok(Command::Coord(command)) => match &coordinator {
                            Some(coordinator) => coordinator.run(command),
                            None => say!("coordination: not running here (start the node with --coordination)"),
                        },
                        Ok(Command::Heal) => {
                            cluster.unblock_all();
                            say!("healed");
                        }
                        Ok(Command::ForgeLeaving { node }) => {
                            let told = cluster.forge_leaving(&node).await;
                            say!("forged a leave notice for {node} to {told} node(s)");
                        }
                        Ok(command @ (Command::CachePut { .. } | Command::CacheGet { .. } | Command::CacheOwner { .. })) => {
                            tokio::spawn(cache_command(shared_cache.clone(), command));
                        }
                        Ok(command) => run_command(command, &channels, &registry, &replicas, budget.as_ref()),
                        Err(e) => say!("{e}"),
                    },
                    None if args.exit_with_stdin => break,
                    None => stdin_open = false,
                },
                event = events.recv() => match event {
                    Ok(MembershipEvent::Up { name, addr }) => say!("member up: {name} {addr}"),
                    Ok(MembershipEvent::Down { name, reason }) => say!("member down: {name} ({reason})"),
                    Ok(MembershipEvent::Unreachable { name, phi }) => say!("member unreachable: {name} (phi {phi:.1})"),
                    Ok(MembershipEvent::Left { name }) => say!("member left: {name}"),
                    Ok(MembershipEvent::Removed { name }) => say!("member removed: {name}"),
                    Ok(MembershipEvent::Refused { peer_addr, peer_name }) => {
                        let who = peer_name.map_or(String::new(), |n| format!("node {n}, "));
                        say!("refused: {peer_addr} ({who}did not authenticate)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => say!("missed {n} membership events"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        say!("node {} leaving", config.node.name);
        cluster.shutdown().await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn commands_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(
            Command::parse("broadcast news hello  world"),
            Ok(Command::Broadcast { topic: "news".into(), text: "hello world".into() })
        );
        assert_eq!(
            Command::parse("broadcast-bytes big 100"),
            Ok(Command::BroadcastBytes { topic: "big".into(), len: 100 })
        );
        assert_eq!(Command::parse("services"), Ok(Command::Services));
        assert_eq!(Command::parse("budget"), Ok(Command::Budget));
        assert_eq!(Command::parse("replicas cache"), Ok(Command::Replicas { name: "cache".into() }));
        assert_eq!(
            Command::parse("health llm down"),
            Ok(Command::Health { service: "llm".into(), healthy: false })
        );
        assert!(Command::parse("health llm sideways").unwrap_err().contains("`up` or `down`"));
        assert!(Command::parse("broadcast-bytes big lots").unwrap_err().contains("byte count"));
        assert!(Command::parse("launch rockets").unwrap_err().contains("unknown command `launch rockets`"));
        assert_eq!(
            Command::parse("crdt-inc hits -3 majority"),
            Ok(Command::Crdt(super::CrdtCommand {
                key: "hits".into(),
                op: super::CrdtOp::Inc(-3),
                majority: true
            }))
        );
        assert_eq!(
            Command::parse("crdt-remove tags red"),
            Ok(Command::Crdt(super::CrdtCommand {
                key: "tags".into(),
                op: super::CrdtOp::Remove("red".into()),
                majority: false
            }))
        );
        assert!(Command::parse("crdt-inc hits lots").unwrap_err().contains("whole number"));
        assert!(Command::parse("crdt-get hits extra").unwrap_err().contains("usage"));
        assert_eq!(
            Command::parse("partition n1,n2"),
            Ok(Command::Partition { nodes: vec!["n1".into(), "n2".into()] })
        );
        assert_eq!(Command::parse("heal"), Ok(Command::Heal));
    }
}
