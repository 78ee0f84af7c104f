//! `foundation node`: run one cluster node until Ctrl-C or SIGTERM, printing membership changes.

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
        println!("node {} listening on {}", config.node.name, cluster.listen_addr());
        let mut singletons = Vec::new();
        for name in &args.singletons {
            let handle = cluster.start_singleton(name, ChildSpec::new(name.clone(), || (SingletonWorker, ())));
            let mut events = handle.subscribe();
            let name = name.clone();
            tokio::spawn(async move {
                while let Ok(event) = events.recv().await {
                    match event {
                        SingletonEvent::Started => println!("singleton {name} started here"),
                        SingletonEvent::Stopped(reason) => println!("singleton {name} stopped here ({reason})"),
                    }
                }
            });
            singletons.push(handle);
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(MembershipEvent::Up { name, addr }) => println!("member up: {name} {addr}"),
                    Ok(MembershipEvent::Down { name, reason }) => println!("member down: {name} ({reason})"),
                    Ok(MembershipEvent::Unreachable { name, phi }) => println!("member unreachable: {name} (phi {phi:.1})"),
                    Ok(MembershipEvent::Refused { peer_addr }) => {
                        println!("refused: {peer_addr} (did not authenticate)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("missed {n} membership events"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        println!("node {} leaving", config.node.name);
        cluster.shutdown().await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}
