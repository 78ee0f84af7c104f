//! `foundation node`: run one cluster node until Ctrl-C or SIGTERM, printing membership changes.

/// Prints a line, ignoring a closed stdout (a launcher that went away must not make the node
/// panic on its way out).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use foundation_actors::channels::Channels;
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
    /// Declare a cluster singleton with this name (repeatable); it runs on one node only, and
    /// this node prints when it starts or stops here.
    #[arg(long = "singleton")]
    singletons: Vec<String>,
    /// Hold this cluster-wide name (repeatable): register a worker under it, or wait and retry
    /// while another node holds it; print when it is gained, taken elsewhere, or lost.
    #[arg(long = "register")]
    names: Vec<String>,
    /// Leave when standard input closes: a launcher that holds the node's stdin (such as
    /// `foundation cluster up`) takes its nodes with it even if it is killed.
    #[arg(long, hide = true)]
    exit_with_stdin: bool,
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
    let config = match loader.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let channels = Channels::start().await?;
        let cluster = Cluster::start(&config.node.name, &config.cluster, Some(channels)).await?;
        let mut events = cluster.subscribe();
        say!("node {} listening on {}", config.node.name, cluster.listen_addr());
        let mut singletons = Vec::new();
        for name in &args.singletons {
            let handle = cluster.start_singleton(name, ChildSpec::new(name.clone(), || (SingletonWorker, ())));
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
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (stdin_closed_tx, mut stdin_closed) = tokio::sync::oneshot::channel::<()>();
        if args.exit_with_stdin {
            std::thread::spawn(move || {
                // Blocks until the launcher goes away (EOF) or the pipe breaks.
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
                let _ = stdin_closed_tx.send(());
            });
        }
        loop {
            tokio::select! {
                _ = &mut stdin_closed, if args.exit_with_stdin => break,
                event = events.recv() => match event {
                    Ok(MembershipEvent::Up { name, addr }) => say!("member up: {name} {addr}"),
                    Ok(MembershipEvent::Down { name, reason }) => say!("member down: {name} ({reason})"),
                    Ok(MembershipEvent::Unreachable { name, phi }) => say!("member unreachable: {name} (phi {phi:.1})"),
                    Ok(MembershipEvent::Refused { peer_addr }) => {
                        say!("refused: {peer_addr} (did not authenticate)");
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
