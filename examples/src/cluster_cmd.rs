//! `foundation cluster up`: launch a local cluster of node processes on loopback;
//! `cluster status`, `cluster remove` and `cluster metrics`: a short-lived observer node (with
//! the tools certificate when the configuration has `[cluster.tls]`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, Subcommand};
use foundation_core::config::{ConfigLoader, TlsConfig};

/// Cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Launch N `foundation node` processes on 127.0.0.1 (n1 is everyone's seed), print their
    /// addresses and their membership changes, and stop them all on Ctrl-C or SIGTERM.
    Up(UpArgs),
    /// Join a running cluster briefly as an observer and print every known node: name, address,
    /// status (up, unreachable, down), load, CPU, memory, runtime lag and last heartbeat. With
    /// `[cluster.tls]` in the configuration (`--config FILE`, `FOUNDATION_CLUSTER__TLS__*`), the
    /// observer uses TLS: give it the tools certificate that `foundation certs` makes.
    Status(StatusArgs),
    /// Remove a node from the cluster for good: every node stops counting it towards its
    /// majorities (singletons, locks, majority reads and writes) and forgets it in its state
    /// directory; nodes that are down now learn it when they come back. Only for a node that is
    /// stopped and will not return as it was (a new start of it joins again as usual): removing
    /// a node that still runs on the other side of a partition can let both sides form a
    /// majority. TLS as for `status`.
    Remove(RemoveArgs),
    /// Join a running cluster briefly as an observer, read every node's histograms (the nodes
    /// that serve `--metrics`) and print each one's cluster-wide percentiles: the nodes'
    /// DDSketches merged, within the same relative error. Nodes that did not answer are named.
    /// TLS as for `status`.
    Metrics(MetricsArgs),
}

/// Where a command reads the cluster's histograms (`cluster metrics`, `baseline`).
#[derive(Debug, Args)]
pub struct HistogramReach {
    /// Nodes of the cluster to reach, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub seeds: Vec<std::net::SocketAddr>,
    /// The cluster's cookie (also from FOUNDATION_COOKIE).
    #[arg(long, env = "FOUNDATION_COOKIE", hide_env_values = true, default_value = "foundation-dev-cookie")]
    pub cookie: String,
    /// Only histograms whose name starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// How long to wait for the cluster to answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Options of `foundation cluster metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    reach: HistogramReach,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `foundation cluster remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The node to remove.
    node: String,
    /// Nodes of the cluster to reach, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    seeds: Vec<std::net::SocketAddr>,
    /// The cluster's cookie (also from FOUNDATION_COOKIE).
    #[arg(long, env = "FOUNDATION_COOKIE", hide_env_values = true, default_value = "foundation-dev-cookie")]
    cookie: String,
    /// How long to wait for the cluster to answer and for every node reached to forget it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Options of `foundation cluster status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Nodes of the cluster to reach, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    seeds: Vec<std::net::SocketAddr>,
    /// The cluster's cookie (also from FOUNDATION_COOKIE).
    #[arg(long, env = "FOUNDATION_COOKIE", hide_env_values = true, default_value = "foundation-dev-cookie")]
    cookie: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// How long to wait for the cluster to answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Name prefix of the short-lived observer nodes `cluster status` starts.
const OBSERVER_PREFIX: &str = "status-";

fn parse_duration(text: &str) -> Result<Duration, String> {
    foundation_core::config::duration::parse(text)
        .ok_or_else(|| format!("expected {}", foundation_core::config::duration::EXPECTED))
}

/// Options of `foundation cluster up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Port of n1; node k listens on base-port + k - 1.
    #[arg(long, default_value_t = 4101)]
    base_port: u16,
    /// The cluster's cookie (also from FOUNDATION_COOKIE).
    #[arg(long, env = "FOUNDATION_COOKIE", hide_env_values = true, default_value = "foundation-dev-cookie")]
    cookie: String,
}

/// Runs a cluster subcommand; `config_file` (the global `--config`) gives `status` and `remove`
/// their `[cluster.tls]`.
pub fn run(config_file: Option<PathBuf>, command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Up(args) => up(args),
        ClusterCommand::Status(args) => status(config_file.as_deref(), args),
        ClusterCommand::Remove(args) => remove(config_file.as_deref(), args),
        ClusterCommand::Metrics(args) => metrics(config_file.as_deref(), args),
    }
}

/// The observer's `[cluster.tls]`, from the configuration a node would load (the file, then
/// `FOUNDATION_*` variables); nothing else of it is used (seeds and cookie are options). An
/// invalid configuration is an error for the user, as in `foundation config check`.
pub(crate) fn observer_tls(config_file: Option<&Path>) -> Result<Option<TlsConfig>, String> {
    let mut loader = ConfigLoader::new();
    if let Some(path) = config_file {
        loader = loader.file(path);
    }
    loader.env().load().map(|config| config.cluster.tls).map_err(|e| e.to_string())
}

/// What a short-lived observer needs before it starts: a runtime and its `[cluster.tls]` (see
/// [`observer_tls`]); a configuration that does not load is said and is exit code 2.
pub(crate) fn observer_runtime(
    config_file: Option<&Path>,
) -> anyhow::Result<Result<(tokio::runtime::Runtime, Option<TlsConfig>), ExitCode>> {
    let tls = match observer_tls(config_file) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("{e}");
            return Ok(Err(ExitCode::from(2)));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    Ok(Ok((runtime, tls)))
}

/// Starts a short-lived observer node that joins the cluster at `seeds` (over TLS with `tls`);
/// `None` (after saying why) if no node answered within `timeout`.
pub(crate) async fn observe(
    seeds: &[std::net::SocketAddr],
    cookie: &str,
    tls: Option<TlsConfig>,
    timeout: Duration,
) -> anyhow::Result<Option<foundation_cluster::Cluster>> {
    // An observer node on a free loopback port, named so it can be left out of the table.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let name = format!("{OBSERVER_PREFIX}{}", std::process::id());
    let config = foundation_core::config::ClusterConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        cookie: cookie.to_string(),
        seeds: seeds.to_vec(),
        tls,
        ..Default::default()
    };
    let observer = foundation_cluster::Cluster::start(&name, &config, None).await?;
    if observer.wait_for_members(1, timeout).await.is_err() {
        observer.shutdown().await;
        eprintln!(
            "no node of the cluster answered at {seeds:?} within {timeout:?} (wrong address, cookie or \
             certificate?)"
        );
        return Ok(None);
    }
    // Let transitive connections to the seeds' peers come up before asking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Some(observer))
}

fn remove(config_file: Option<&Path>, args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let (runtime, tls) = match observer_runtime(config_file)? {
        Ok(both) => both,
        Err(code) => return Ok(code),
    };
    runtime.block_on(async move {
        let Some(observer) = observe(&args.seeds, &args.cookie, tls, args.timeout).await? else {
            return Ok(ExitCode::FAILURE);
        };
        let node = args.node.as_str();
        let views = observer.node_views(args.timeout).await;
        let up_on: Vec<&str> = views
            .iter()
            .filter(|(_, view)| view.nodes.iter().any(|n| n.name == node && n.status == "up"))
            .map(|(reporter, _)| reporter.as_str())
            .collect();
        if !up_on.is_empty() || views.iter().any(|(reporter, _)| reporter == node) {
            observer.shutdown().await;
            eprintln!("node `{node}` is up (seen by {}): stop it first, then remove it", up_on.join(", "));
            return Ok(ExitCode::from(2));
        }
        if let Err(e) = observer.remove_member(node).await {
            observer.shutdown().await;
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
        // Heartbeats carry the removal to every node reached; wait until none lists it.
        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut still: Vec<String>;
        loop {
            let views = observer.node_views(args.timeout).await;
            still = views
                .into_iter()
                .filter(|(reporter, view)| {
                    !reporter.starts_with(OBSERVER_PREFIX) && view.nodes.iter().any(|n| n.name == node)
                })
                .map(|(reporter, _)| reporter)
                .collect();
            if still.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        observer.shutdown().await;
        if !still.is_empty() {
            eprintln!(
                "node `{node}` removed, but {} still list it after {:?}",
                still.join(", "),
                args.timeout
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("removed {node}: every node reached forgot it (nodes down now learn it when they return)");
        Ok(ExitCode::SUCCESS)
    })
}

fn status(config_file: Option<&Path>, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (runtime, tls) = match observer_runtime(config_file)? {
        Ok(both) => both,
        Err(code) => return Ok(code),
    };
    runtime.block_on(async move {
        let Some(observer) = observe(&args.seeds, &args.cookie, tls, args.timeout).await? else {
            return Ok(ExitCode::FAILURE);
        };
        let mut health = observer.cluster_health(args.timeout).await;
        observer.shutdown().await;
        // Observers (this one, and earlier `cluster status` runs, which peers remember as down
        // until graceful leave exists) are not nodes of the cluster.
        health.nodes.retain(|n| !n.name.starts_with(OBSERVER_PREFIX));
        health = foundation_cluster::health::ClusterHealth::from_nodes(health.nodes);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&health)?);
        } else {
            print_table(&health);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn metrics(config_file: Option<&Path>, args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let (runtime, tls) = match observer_runtime(config_file)? {
        Ok(both) => both,
        Err(code) => return Ok(code),
    };
    runtime.block_on(async move {
        let reach = &args.reach;
        let Some(observer) = observe(&reach.seeds, &reach.cookie, tls, reach.timeout).await? else {
            return Ok(ExitCode::FAILURE);
        };
        let mut found = foundation_cluster::cluster_metrics::collect(&observer, reach.timeout).await;
        observer.shutdown().await;
        found.histograms.retain(|h| h.name.starts_with(&reach.prefix));
        found.unshared.retain(|n| !n.starts_with(OBSERVER_PREFIX));
        found.missing.retain(|(n, _)| !n.starts_with(OBSERVER_PREFIX));
        if args.json {
            println!("{}", serde_json::to_string_pretty(&metrics_json(&found))?);
        } else {
            print_metrics(&found);
        }
        Ok(if found.answered.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    })
}

/// A reading as JSON: window count, quantiles, min and max; lifetime count and sum.
fn reading_json(p: &foundation_core::telemetry::Percentiles) -> serde_json::Value {
    serde_json::json!({
        "count": p.count(), "p50": p.p50(), "p90": p.p90(), "p99": p.p99(), "p999": p.p999(),
        "min": p.min(), "max": p.max(), "total_count": p.total_count(), "total_sum": p.total_sum(),
    })
}

fn metrics_json(found: &foundation_cluster::cluster_metrics::ClusterMetrics) -> serde_json::Value {
    let histograms: Vec<serde_json::Value> = found
        .histograms
        .iter()
        .map(|h| {
            let labels: serde_json::Map<String, serde_json::Value> =
                h.labels.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            let nodes: serde_json::Map<String, serde_json::Value> =
                h.by_node.iter().map(|(n, p)| (n.clone(), reading_json(p))).collect();
            serde_json::json!({ "name": h.name, "labels": labels, "cluster": reading_json(&h.merged), "nodes": nodes })
        })
        .collect();
    serde_json::json!({
        "histograms": histograms,
        "answered": found.answered,
        "missing": found.missing.iter().map(|(n, why)| serde_json::json!({"node": n, "why": why})).collect::<Vec<_>>(),
        "unshared": found.unshared,
    })
}

fn print_metrics(found: &foundation_cluster::cluster_metrics::ClusterMetrics) {
    println!(
        "{:<64} {:>5} {:>9} {:>12} {:>12} {:>12} {:>12}",
        "HISTOGRAM", "NODES", "COUNT", "P50", "P90", "P99", "MAX"
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
    for h in &found.histograms {
        let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let name =
            if labels.is_empty() { h.name.clone() } else { format!("{}{{{}}}", h.name, labels.join(",")) };
        let m = &h.merged;
        println!(
            "{name:<64} {:>5} {:>9} {:>12} {:>12} {:>12} {:>12}",
            h.by_node.len(),
            m.count(),
            num(m.p50()),
            num(m.p90()),
            num(m.p99()),
            num(m.max())
        );
    }
    println!("{} nodes answered: {}", found.answered.len(), found.answered.join(", "));
    for (node, why) in &found.missing {
        println!("missing {node}: {why}");
    }
    if !found.unshared.is_empty() {
        println!(
            "no histograms seen from here (no --metrics, or not visible yet): {}",
            found.unshared.join(", ")
        );
    }
}

fn print_table(health: &foundation_cluster::health::ClusterHealth) {
    println!(
        "{:<14} {:<22} {:<12} {:>6} {:>6} {:>10} {:>7} {:>7} {:>8} {:>15}",
        "NAME", "ADDRESS", "STATUS", "LOAD", "CPU%", "MEMORY", "ACTORS", "QUEUED", "LAG", "LAST HEARTBEAT"
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for n in &health.nodes {
        let h = n.health.as_ref();
        println!(
            "{:<14} {:<22} {:<12} {:>6} {:>6} {:>10} {:>7} {:>7} {:>8} {:>15}",
            n.name,
            n.addr,
            n.status,
            opt(h.and_then(|h| h.load_average).map(|l| format!("{l:.2}"))),
            opt(h.and_then(|h| h.cpu_percent).map(|c| format!("{c:.1}"))),
            opt(h.and_then(|h| h.memory_bytes).map(|m| format!("{:.1} MiB", m as f64 / 1048576.0))),
            opt(h.map(|h| h.actors.to_string())),
            opt(h.and_then(|h| h.channel_queued).map(|q| q.to_string())),
            opt(h.map(|h| format!("{:.1}ms", h.runtime_lag_ms))),
            opt(n.last_heartbeat_ms.map(|ms| format!("{ms} ms ago"))),
        );
    }
    println!(
        "{} up, {} down; {} actors; {} messages queued; memory {:.1} MiB; mean CPU {}",
        health.up,
        health.down,
        health.actors,
        health.channel_queued,
        health.memory_bytes as f64 / 1048576.0,
        health.mean_cpu_percent.map_or("-".to_string(), |c| format!("{c:.1}%"))
    );
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 || u32::from(args.base_port) + u32::from(args.nodes) > 65_536 {
        anyhow::bail!("--nodes must be at least 1 and the ports must fit below 65536");
    }
    let exe = std::env::current_exe()?;
    let seed = format!("127.0.0.1:{}", args.base_port);
    let mut children: Vec<(String, Child)> = Vec::new();
    for k in 1..=args.nodes {
        let name = format!("n{k}");
        let listen = format!("127.0.0.1:{}", args.base_port + k - 1);
        let mut cmd = Command::new(&exe);
        cmd.args(["node", "--name", &name, "--listen", &listen, "--exit-with-stdin"]);
        // By environment, never on the command line (which every local user can read in `ps`).
        cmd.env(foundation_core::config::ENV_COOKIE, &args.cookie);
        if k > 1 {
            cmd.args(["--seeds", &seed]);
        }
        // The node holds our end of its stdin: if this launcher dies (even by SIGKILL) the pipe
        // closes and the node leaves, so no node outlives its launcher.
        let mut child = match cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() {
            Ok(child) => child,
            Err(e) => {
                stop_all(&mut children);
                return Err(e.into());
            }
        };
        if let Some(stdout) = child.stdout.take() {
            let prefix = name.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    println!("[{prefix}] {line}");
                }
            });
        }
        println!("started {name} (pid {}) on {listen}", child.id());
        children.push((name, child));
    }
    println!("cluster of {} nodes up; seed {seed}; Ctrl-C or SIGTERM stops it", args.nodes);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        let mut reported = vec![false; children.len()];
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok::<_, anyhow::Error>(()),
                _ = term.recv() => return Ok(()),
                _ = poll.tick() => {
                    // A node that dies (killed by the operator, say) is reported; the others keep
                    // running, which is the point of a cluster.
                    for (i, (name, child)) in children.iter_mut().enumerate() {
                        if !reported[i] && let Ok(Some(status)) = child.try_wait() {
                            println!("[{name}] node process exited ({status})");
                            reported[i] = true;
                        }
                    }
                    if reported.iter().all(|r| *r) {
                        println!("every node has exited");
                        return Ok(());
                    }
                }
            }
        }
    })?;
    stop_all(&mut children);
    println!("cluster stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM to every node (they leave cleanly), then wait; kill whatever is still running after 10 s.
fn stop_all(children: &mut [(String, Child)]) {
    for (_, child) in children.iter() {
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).stderr(Stdio::null()).status();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (_, child) in children.iter_mut() {
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
