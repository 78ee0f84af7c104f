//! `foundation cluster up`: launch a local cluster of node processes on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, Subcommand};

/// Cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Launch N `foundation node` processes on 127.0.0.1 (n1 is everyone's seed), print their
    /// addresses and their membership changes, and stop them all on Ctrl-C or SIGTERM.
    Up(UpArgs),
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

pub fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Up(args) = command;
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
        cmd.args(["node", "--name", &name, "--listen", &listen, "--cookie", &args.cookie]);
        if k > 1 {
            cmd.args(["--seeds", &seed]);
        }
        let mut child = match cmd.stdout(Stdio::piped()).spawn() {
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
    let stopped_early = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok::<_, anyhow::Error>(None),
                _ = term.recv() => return Ok(None),
                _ = poll.tick() => {
                    for (name, child) in children.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            return Ok(Some(format!("{name} exited ({status})")));
                        }
                    }
                }
            }
        }
    })?;
    if let Some(why) = &stopped_early {
        eprintln!("stopping the cluster: {why}");
    }
    stop_all(&mut children);
    println!("cluster stopped");
    Ok(if stopped_early.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
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
