//! What a cluster costs as it grows, with real `foundation node` processes on loopback: for 3,
//! 10, 25 and 50 nodes, the time until every node has seen every other up (formation), the CPU
//! an idle node spends (per cent of one core, measured from `/proc` over a quiet window), its
//! resident memory (and so the memory one more idle peer link costs), and how long after a node
//! is frozen (SIGSTOP) or killed (SIGKILL) the others print `member down` (median and slowest
//! observer). Wall-clock by nature, so a benchmark and never a test assertion.
//!
//! Run: `cargo bench -p foundation-examples --bench cluster_scale` (figures in
//! docs/BENCHMARKS.md). `SCALE_SIZES=3,10` picks the cluster sizes (not `FOUNDATION_…`: the
//! nodes would read that as their configuration);
//! `SCALE_IDLE_SECS` the quiet window (10 s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use foundation_cluster::testkit::{NodeProcess, free_port};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{json, log_level, text};

/// Longest a cluster may take to form or notice a failure before the run gives up.
const PATIENCE: Duration = Duration::from_secs(120);

fn spawn(name: &str, port: u16, seed: Option<u16>) -> NodeProcess {
    let mut args = vec![
        "node".to_string(),
        "--json".into(),
        "--name".into(),
        name.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    if let Some(seed) = seed {
        args.extend(["--seeds".to_string(), format!("127.0.0.1:{seed}")]);
    }
    NodeProcess::spawn_with_env(
        name,
        env!("CARGO_BIN_EXE_foundation"),
        &args,
        [("FOUNDATION_LOG", log_level())],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The names `node` has printed `member_up` for and not `member_down` since.
fn up_seen(node: &NodeProcess) -> HashSet<String> {
    let mut up = HashSet::new();
    for event in node.events(&json!({})) {
        match event["event"].as_str() {
            Some("member_up") => {
                up.insert(text(&event, "name").to_string());
            }
            Some("member_down") => {
                up.remove(text(&event, "name"));
            }
            _ => {}
        }
    }
    up
}

/// Polls every node until `done(node)` holds for all; the time each first did (from `since`).
fn until_all<N>(nodes: &[N], since: Instant, done: impl Fn(&N) -> bool) -> Vec<Duration> {
    let mut when: HashMap<usize, Duration> = HashMap::new();
    while when.len() < nodes.len() {
        assert!(
            since.elapsed() < PATIENCE,
            "gave up after {PATIENCE:?}: {} of {} nodes done",
            when.len(),
            nodes.len()
        );
        for (i, node) in nodes.iter().enumerate() {
            if !when.contains_key(&i) && done(node) {
                when.insert(i, since.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut times: Vec<Duration> = when.into_values().collect();
    times.sort();
    times
}

/// User + system CPU time of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

struct Row {
    nodes: usize,
    formation: Duration,
    /// `member down` events printed before any failure (false alarms while forming or idle).
    flaps: usize,
    idle_cpu_percent: f64,
    idle_cpu_max: f64,
    rss_mib: f64,
    freeze: (Duration, Duration),
    kill: (Duration, Duration),
}

fn run(n: usize, idle: Duration, ticks_per_second: f64) -> Row {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let names: Vec<String> = (0..n).map(|i| format!("n{i:02}")).collect();
    let started = Instant::now();
    let mut nodes: Vec<NodeProcess> =
        (0..n).map(|i| spawn(&names[i], ports[i], (i > 0).then_some(ports[0]))).collect();
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    let formed = until_all(&all, started, |node| up_seen(node).len() == n - 1);
    let formation = *formed.last().unwrap();

    // Let joining work settle (gossip, pg syncs), then watch the idle cluster.
    std::thread::sleep(Duration::from_secs(3));
    let before: Vec<u64> = nodes.iter().map(|p| cpu_ticks(p.pid())).collect();
    std::thread::sleep(idle);
    let after: Vec<u64> = nodes.iter().map(|p| cpu_ticks(p.pid())).collect();
    let mut cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / ticks_per_second / idle.as_secs_f64() * 100.0)
        .collect();
    let idle_cpu_max = cpu.iter().copied().fold(0.0, f64::max);
    let idle_cpu_percent = median(&mut cpu);
    let mut rss: Vec<f64> = nodes.iter().map(|p| rss_kib(p.pid()) as f64 / 1024.0).collect();
    let rss_mib = median(&mut rss);

    let flaps: usize = nodes.iter().map(|p| p.events(&json!({"event": "member_down"})).len()).sum();

    // Freeze one node (not the seed), then kill another: every other live node must see each go.
    let detect = |nodes: &mut Vec<NodeProcess>, victim: usize, gone_before: Option<usize>, freeze: bool| {
        let gone = names[victim].clone();
        let pattern = json!({"event": "member_down", "name": gone});
        // Count only what the failure causes (not a flap while the cluster formed).
        let before: Vec<usize> = nodes.iter().map(|p| p.events(&pattern).len()).collect();
        let since = Instant::now();
        if freeze {
            nodes[victim].freeze();
        } else {
            nodes[victim].kill();
        }
        let observers: Vec<(&NodeProcess, usize)> = nodes
            .iter()
            .zip(before)
            .enumerate()
            .filter(|(i, _)| *i != victim && Some(*i) != gone_before)
            .map(|(_, observer)| observer)
            .collect();
        let mut times = until_all(&observers, since, |(node, before)| node.events(&pattern).len() > *before);
        (times[times.len() / 2], times.pop().unwrap())
    };
    let frozen = n / 2;
    let freeze = detect(&mut nodes, frozen, None, true);
    nodes[frozen].kill();
    // Let the frozen node's departure settle before the next failure.
    std::thread::sleep(Duration::from_secs(2));
    let kill = detect(&mut nodes, frozen + 1, Some(frozen), false);
    for node in &mut nodes {
        node.kill();
    }
    Row { nodes: n, formation, flaps, idle_cpu_percent, idle_cpu_max, rss_mib, freeze, kill }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .unwrap_or_else(|_| "3,10,25,50".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SCALE_SIZES: whole numbers, comma separated"))
        .collect();
    assert!(
        sizes.iter().all(|&n| n >= 3),
        "each cluster size must be at least 3 (one frozen, one killed, one watching)"
    );
    let idle =
        Duration::from_secs(std::env::var("SCALE_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10));
    let ticks = clock_ticks_per_second();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| nodes | formation (false member down) | idle CPU per node (median / max, % of a core) | RSS per node (median) | SIGSTOP → member down (median / slowest observer) | SIGKILL → member down (median / slowest) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for n in sizes {
        let row = run(n, idle, ticks);
        println!(
            "| {} | {:.0} ms ({}) | {:.2} % / {:.2} % | {:.1} MiB | {:.0} / {:.0} ms | {:.1} / {:.1} ms |",
            row.nodes,
            ms(row.formation),
            row.flaps,
            row.idle_cpu_percent,
            row.idle_cpu_max,
            row.rss_mib,
            ms(row.freeze.0),
            ms(row.freeze.1),
            ms(row.kill.0),
            ms(row.kill.1),
        );
        rows.push(row);
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && last.nodes > first.nodes
    {
        let per_link = (last.rss_mib - first.rss_mib) * 1024.0 / (last.nodes - first.nodes) as f64;
        println!(
            "memory per idle peer link: {per_link:.0} KiB (RSS growth from {} to {} nodes)",
            first.nodes, last.nodes
        );
    }
}
