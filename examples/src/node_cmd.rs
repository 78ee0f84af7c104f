//! `foundation node`: run one cluster node until Ctrl-C or SIGTERM, printing membership changes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use foundation_actors::channels::Channels;
use foundation_cluster::{Cluster, MembershipEvent};
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
