//! Cross-node messaging between two real processes on loopback, with and without the
//! Foundation layer, and Erlang/OTP distribution, in the same run:
//!
//! - **erlang**: `benches/erlang/dist_bench.escript`, two distributed Erlang nodes (when
//!   `escript` is installed: Debian's `erlang-base`; skipped, and said so, otherwise), the same
//!   casts and calls of 64-byte binaries;
//! - **bare**: ractor_cluster `NodeServer`s and a message of `Vec<u8>` (ractor's own byte
//!   conversion), nothing else running;
//! - **foundation**: `Cluster::start` on both sides (heartbeats, failure detector, membership,
//!   health), a serde message through the `Wire` adapter (bincode, size check), and channel
//!   broadcasts on a cluster-wide topic to a subscriber on the other node.
//!
//! Measured: casts per second (N casts, then one call that returns once all were handled), and
//! the latency of sequential request/reply calls (p50, p99). Each mode runs in fresh processes;
//! the modes take turns in every round, and the median of the rounds is reported.
//!
//! Run: `cargo bench -p foundation-examples --bench cross_node` (figures in docs/BENCHMARKS.md).
//! The benchmark starts copies of itself as the two nodes (`FOUNDATION_BENCH_ROLE`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foundation_actors::channels::{Channels, SubscribeOptions, Topic};
use foundation_actors::wire::Wire;
use foundation_cluster::Cluster;
use foundation_cluster::testkit::{NodeProcess, free_port};
use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{NodeServer, RactorClusterMessage};
use serde::{Deserialize, Serialize};

const CASTS: u64 = 100_000;
const BROADCASTS: u64 = 50_000;
const CALLS: usize = 5_000;
const WARMUP_CALLS: usize = 500;
const ROUNDS: usize = 5;
/// The Erlang half of the benchmark.
const ERLANG_BENCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/erlang/dist_bench.escript");
const GROUP: &str = "bench-echo";
/// The receivers of the parallel pattern (one per sender).
const PARALLEL_GROUP: &str = "bench-parallel";
/// Senders (and receivers) in the parallel pattern.
const PARALLEL: usize = 16;
/// Large payloads, and how many bytes of each are sent (casts = bytes / size).
const LARGE: [(usize, usize); 2] = [(64 << 10, 128 << 20), (1 << 20, 128 << 20)];
const TOPIC: &str = "bench-topic";
/// 64 bytes of payload in both modes.
const BODY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef01234567";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    id: u64,
    body: String,
}

#[derive(RactorClusterMessage)]
enum BareMsg {
    Cast(Vec<u8>),
    #[rpc]
    Echo(Vec<u8>, RpcReplyPort<Vec<u8>>),
    #[rpc]
    Count(u64, RpcReplyPort<u64>),
}

#[derive(RactorClusterMessage)]
enum FoundationMsg {
    Cast(Wire<Task>),
    #[rpc]
    Echo(Wire<Task>, RpcReplyPort<Wire<Task>>),
    #[rpc]
    Count(u64, RpcReplyPort<u64>),
}

/// Counts what arrives (casts in its state, broadcasts through the shared counter) and echoes.
struct Echo<M>(std::marker::PhantomData<M>);

/// Waits until `received` reaches `expected` (casts already did: they were queued before).
async fn settle(received: &AtomicU64, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    received.load(Ordering::Relaxed)
}

impl Actor for Echo<BareMsg> {
    type Msg = BareMsg;
    type State = Arc<AtomicU64>;
    type Arguments = Arc<AtomicU64>;
    async fn pre_start(
        &self,
        _: ActorRef<BareMsg>,
        n: Arc<AtomicU64>,
    ) -> Result<Arc<AtomicU64>, ActorProcessingErr> {
        Ok(n)
    }
    async fn handle(
        &self,
        _: ActorRef<BareMsg>,
        msg: BareMsg,
        n: &mut Arc<AtomicU64>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BareMsg::Cast(_) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            BareMsg::Echo(body, reply) => {
                let _ = reply.send(body);
            }
            BareMsg::Count(expected, reply) => {
                let _ = reply.send(settle(n, expected).await);
            }
        }
        Ok(())
    }
}

impl Actor for Echo<FoundationMsg> {
    type Msg = FoundationMsg;
    type State = Arc<AtomicU64>;
    type Arguments = Arc<AtomicU64>;
    async fn pre_start(
        &self,
        _: ActorRef<FoundationMsg>,
        n: Arc<AtomicU64>,
    ) -> Result<Arc<AtomicU64>, ActorProcessingErr> {
        Ok(n)
    }
    async fn handle(
        &self,
        _: ActorRef<FoundationMsg>,
        msg: FoundationMsg,
        n: &mut Arc<AtomicU64>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FoundationMsg::Cast(task) => {
                if task.into_inner().is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
            FoundationMsg::Echo(task, reply) => {
                let task = task.into_inner()?;
                let _ = reply.send(Wire::encode(&task, 1 << 20)?);
            }
            FoundationMsg::Count(expected, reply) => {
                let _ = reply.send(settle(n, expected).await);
            }
        }
        Ok(())
    }
}

fn topic() -> Topic<Task> {
    Topic::new(TOPIC).cluster_wide()
}

fn task(id: u64) -> Task {
    Task { id, body: BODY.to_string() }
}

/// Starts this process's node: a bare NodeServer or a Foundation cluster node.
async fn start_node(bare: bool, name: &str, port: u16, seed: Option<u16>) -> Option<Channels> {
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    if bare {
        let server = NodeServer::new(
            port,
            "bench-cookie".into(),
            name.into(),
            "127.0.0.1".into(),
            None,
            Some(ractor_cluster::node::NodeConnectionMode::Isolated),
        );
        let (server, _) = Actor::spawn(None, server, ()).await.expect("node server");
        if let Some(seed) = seed {
            ractor_cluster::client_connect(&server, addr(seed)).await.expect("connect");
        }
        None
    } else {
        let channels = Channels::start().await.expect("channels");
        let config = ClusterConfig {
            listen: addr(port),
            seeds: seed.map(addr).into_iter().collect(),
            ..Default::default()
        };
        let cluster = Cluster::start(name, &config, Some(channels.clone())).await.expect("cluster");
        std::mem::forget(cluster); // runs until the process exits
        Some(channels)
    }
}

/// An echo actor of the mode, counting into `received`.
async fn spawn_echo(bare: bool, received: &Arc<AtomicU64>) -> ractor::ActorCell {
    if bare {
        Actor::spawn(None, Echo::<BareMsg>(Default::default()), received.clone())
            .await
            .expect("echo")
            .0
            .get_cell()
    } else {
        Actor::spawn(None, Echo::<FoundationMsg>(Default::default()), received.clone())
            .await
            .expect("echo")
            .0
            .get_cell()
    }
}

async fn server(bare: bool, port: u16) {
    let received = Arc::new(AtomicU64::new(0));
    let channels = start_node(bare, "server", port, None).await;
    let echo = spawn_echo(bare, &received).await;
    if let Some(channels) = channels {
        let options = SubscribeOptions { capacity: BROADCASTS as usize * 2, ..Default::default() };
        let mut sub = channels.subscribe_with(&topic(), options).expect("subscribe");
        let received = received.clone();
        tokio::spawn(async move {
            while sub.recv().await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    ractor::pg::join(GROUP.to_string(), vec![echo]);
    let mut parallel = Vec::new();
    for _ in 0..PARALLEL {
        parallel.push(spawn_echo(bare, &received).await);
    }
    ractor::pg::join(PARALLEL_GROUP.to_string(), parallel);
    println!("ready");
    // Until the benchmark closes our stdin.
    let _ =
        tokio::task::spawn_blocking(|| std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new()))
            .await;
}

async fn remote_echo() -> ractor::ActorCell {
    remote_members(GROUP, 1).await.remove(0)
}

/// The `n` remote members of `group`, once all are visible.
async fn remote_members(group: &str, n: usize) -> Vec<ractor::ActorCell> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members: Vec<_> = ractor::pg::get_members(&group.to_string())
            .into_iter()
            .filter(|c| !c.get_id().is_local())
            .collect();
        if members.len() >= n {
            return members;
        }
        assert!(Instant::now() < deadline, "the server's {group} actors never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Casts `count` messages of `size` bytes to `to` (in the mode's message type).
fn cast_n(bare: bool, to: &ractor::ActorCell, count: u64, size: usize, first_id: u64) {
    if bare {
        let to: ActorRef<BareMsg> = to.clone().into();
        let body = vec![b'x'; size];
        for _ in 0..count {
            to.cast(BareMsg::Cast(body.clone())).expect("cast");
        }
    } else {
        let to: ActorRef<FoundationMsg> = to.clone().into();
        let body = "x".repeat(size);
        for id in first_id..first_id + count {
            let task = Task { id, body: body.clone() };
            to.cast(FoundationMsg::Cast(Wire::encode(&task, 16 << 20).expect("encode"))).expect("cast");
        }
    }
}

/// Waits until the server has handled `expected` messages in all (the counter is shared).
async fn count_handled(bare: bool, to: &ractor::ActorCell, expected: u64) -> u64 {
    let timeout = Some(Duration::from_secs(300));
    if bare {
        let to: ActorRef<BareMsg> = to.clone().into();
        to.call(|r| BareMsg::Count(expected, r), timeout).await.expect("count").unwrap()
    } else {
        let to: ActorRef<FoundationMsg> = to.clone().into();
        to.call(|r| FoundationMsg::Count(expected, r), timeout).await.expect("count").unwrap()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
}

async fn client(bare: bool, port: u16, server_port: u16) {
    let channels = start_node(bare, "client", port, Some(server_port)).await;
    let echo = remote_echo().await;
    let timeout = Some(Duration::from_secs(60));
    let body = BODY.as_bytes().to_vec();

    // Throughput: N casts, then a call that answers once the server has handled them all.
    let started = Instant::now();
    let handled = if bare {
        let echo: ActorRef<BareMsg> = echo.clone().into();
        for _ in 0..CASTS {
            echo.cast(BareMsg::Cast(body.clone())).expect("cast");
        }
        echo.call(|r| BareMsg::Count(CASTS, r), timeout).await.expect("count").unwrap()
    } else {
        let echo: ActorRef<FoundationMsg> = echo.clone().into();
        for id in 0..CASTS {
            echo.cast(FoundationMsg::Cast(Wire::encode(&task(id), 1 << 20).expect("encode"))).expect("cast");
        }
        echo.call(|r| FoundationMsg::Count(CASTS, r), timeout).await.expect("count").unwrap()
    };
    let casts_per_sec = handled as f64 / started.elapsed().as_secs_f64();
    assert_eq!(handled, CASTS, "casts lost");

    // Latency: sequential request/reply.
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..WARMUP_CALLS + CALLS {
        let started = Instant::now();
        if bare {
            let echo: ActorRef<BareMsg> = echo.clone().into();
            echo.call(|r| BareMsg::Echo(body.clone(), r), timeout).await.expect("echo").unwrap();
        } else {
            let echo: ActorRef<FoundationMsg> = echo.clone().into();
            let wire = Wire::encode(&task(i as u64), 1 << 20).expect("encode");
            let back = echo.call(|r| FoundationMsg::Echo(wire, r), timeout).await.expect("echo").unwrap();
            back.into_inner().expect("decode");
        }
        if i >= WARMUP_CALLS {
            times.push(started.elapsed());
        }
    }
    times.sort();

    // 16 senders, each to its own remote actor, at once.
    let mut expected = CASTS;
    let receivers = remote_members(PARALLEL_GROUP, PARALLEL).await;
    let started = Instant::now();
    let per_sender = CASTS / PARALLEL as u64;
    let senders: Vec<_> = receivers
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, to)| {
            tokio::task::spawn_blocking(move || {
                cast_n(bare, &to, per_sender, BODY.len(), i as u64 * per_sender)
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("sender");
    }
    expected += per_sender * PARALLEL as u64;
    assert_eq!(count_handled(bare, &echo, expected).await, expected, "parallel casts lost");
    let parallel_casts_per_sec = (per_sender * PARALLEL as u64) as f64 / started.elapsed().as_secs_f64();

    // Large payloads: bytes per second.
    let mut large = Vec::new();
    for (size, bytes) in LARGE {
        let count = (bytes / size) as u64;
        let started = Instant::now();
        cast_n(bare, &echo, count, size, 0);
        expected += count;
        assert_eq!(count_handled(bare, &echo, expected).await, expected, "large casts lost");
        large.push((count * size as u64) as f64 / started.elapsed().as_secs_f64() / (1 << 20) as f64);
    }

    // Channel broadcasts to the subscriber on the server (Foundation only).
    let mut broadcasts_per_sec = None;
    if let Some(channels) = channels {
        // Wait for the server's relay to be visible here.
        let group = foundation_actors::channels::pg_group(TOPIC);
        let scope = foundation_actors::channels::PG_SCOPE.to_string();
        while ractor::pg::get_scoped_members(&scope, &group).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let echo: ActorRef<FoundationMsg> = echo.clone().into();
        let started = Instant::now();
        for id in 0..BROADCASTS {
            channels.broadcast(&topic(), task(id)).expect("broadcast");
        }
        let n = echo
            .call(|r| FoundationMsg::Count(expected + BROADCASTS, r), timeout)
            .await
            .expect("count")
            .unwrap();
        assert_eq!(n, expected + BROADCASTS, "broadcasts lost");
        broadcasts_per_sec = Some(BROADCASTS as f64 / started.elapsed().as_secs_f64());
    }
    println!(
        "result {}",
        serde_json::json!({
            "casts_per_sec": casts_per_sec,
            "p50_us": percentile(&times, 0.50),
            "p99_us": percentile(&times, 0.99),
            "broadcasts_per_sec": broadcasts_per_sec,
            "parallel_casts_per_sec": parallel_casts_per_sec,
            "mib_per_sec_64k": large[0],
            "mib_per_sec_1m": large[1],
        })
    );
}

fn round(bare: bool) -> serde_json::Value {
    let exe = std::env::current_exe().expect("own path");
    let mode = if bare { "bare" } else { "foundation" };
    let (sp, cp) = (free_port(), free_port());
    let env = |role: &str| {
        [
            ("FOUNDATION_BENCH_ROLE", role.to_string()),
            ("FOUNDATION_BENCH_MODE", mode.to_string()),
            ("FOUNDATION_BENCH_PORTS", format!("{sp},{cp}")),
        ]
    };
    let server = NodeProcess::spawn_with_env("server", &exe, ["--bench"], env("server")).expect("server");
    server.wait_for("ready", Duration::from_secs(30)).expect("server ready");
    let client = NodeProcess::spawn_with_env("client", &exe, ["--bench"], env("client")).expect("client");
    let line = client.wait_for("result ", Duration::from_secs(300)).expect("client result");
    drop(server);
    serde_json::from_str(line.trim_start_matches("result ")).expect("result json")
}

/// One round of the Erlang half; `Err` says why there is none (not installed, failed).
fn erlang_round() -> Result<serde_json::Value, String> {
    let out = std::process::Command::new("escript")
        .args([ERLANG_BENCH, &CASTS.to_string(), &CALLS.to_string()])
        .output()
        .map_err(|e| format!("escript: {e} (Debian: apt-get install erlang-base)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no result from the Erlang half: {}", String::from_utf8_lossy(&out.stderr)))?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    Ok(serde_json::json!({
        "casts_per_sec": v["casts_per_s"],
        "p50_us": v["p50_us"],
        "p99_us": v["p99_us"],
        "broadcasts_per_sec": null,
        "parallel_casts_per_sec": v["parallel_casts_per_s"],
        "mib_per_sec_64k": v["mib_per_s_64k"],
        "mib_per_sec_1m": v["mib_per_s_1m"],
    }))
}

fn median(rounds: &[serde_json::Value], key: &str) -> Option<f64> {
    let mut v: Vec<f64> = rounds.iter().filter_map(|r| r[key].as_f64()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Ok(role) = std::env::var("FOUNDATION_BENCH_ROLE") {
        let bare = std::env::var("FOUNDATION_BENCH_MODE").as_deref() == Ok("bare");
        let ports: Vec<u16> = std::env::var("FOUNDATION_BENCH_PORTS")
            .expect("ports")
            .split(',')
            .map(|p| p.parse().expect("port"))
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            if role == "server" {
                server(bare, ports[0]).await;
            } else {
                client(bare, ports[1], ports[0]).await;
            }
        });
        return;
    }
    let mut results = [Vec::new(), Vec::new(), Vec::new()];
    let mut erlang_missing = None;
    for _ in 0..ROUNDS {
        if erlang_missing.is_none() {
            match erlang_round() {
                Ok(r) => results[0].push(r),
                Err(why) => erlang_missing = Some(why),
            }
        }
        for (i, bare) in [true, false].into_iter().enumerate() {
            results[i + 1].push(round(bare));
        }
    }
    println!(
        "{ROUNDS} rounds each, taking turns, medians; {CASTS} casts, {CALLS} calls, {BROADCASTS} broadcasts of 64-byte payloads"
    );
    if let Some(why) = &erlang_missing {
        println!("erlang: not measured ({why})");
    }
    println!(
        "{:<12} {:>12} {:>9} {:>9} {:>16} {:>12} {:>12} {:>14}",
        "mode", "casts/s", "p50 µs", "p99 µs", "16×16 casts/s", "64 KiB MiB/s", "1 MiB MiB/s", "broadcasts/s"
    );
    for (i, mode) in ["erlang", "bare", "foundation"].iter().enumerate() {
        let r = &results[i];
        if r.is_empty() {
            continue;
        }
        let b = median(r, "broadcasts_per_sec").map_or("-".to_string(), |v| format!("{v:.0}"));
        let m = |key: &str| median(r, key).unwrap_or(0.0);
        println!(
            "{mode:<12} {:>12.0} {:>9.1} {:>9.1} {:>16.0} {:>12.0} {:>12.0} {:>14}",
            m("casts_per_sec"),
            m("p50_us"),
            m("p99_us"),
            m("parallel_casts_per_sec"),
            m("mib_per_sec_64k"),
            m("mib_per_sec_1m"),
            b
        );
    }
}
