//! Failure-detection time with real node processes on loopback: how long after a node is
//! killed (kill -9) or frozen (SIGSTOP) its peer prints `member down`. Wall-clock by nature, so
//! a benchmark and never a test assertion.
//!
//! Run: `cargo bench -p foundation-examples --bench detection` (figures in docs/BENCHMARKS.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::{Duration, Instant};

use foundation_cluster::testkit::{NodeProcess, free_port};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{json, start_node, wait};

const TRIALS: usize = 5;

fn start(name: &str, port: u16, seed: Option<u16>) -> NodeProcess {
    start_node(name, port, seed.as_slice(), &[])
}

fn trial(freeze: bool) -> Duration {
    let (p1, p2) = (free_port(), free_port());
    let watcher = start("watcher", p1, None);
    let mut victim = start("victim", p2, Some(p1));
    wait(&watcher, json!({"event": "member_up", "name": "victim"}));
    // Let a few heartbeats flow so the detector has a history, as in a running cluster.
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    if freeze {
        victim.freeze();
    } else {
        victim.kill();
    }
    wait(&watcher, json!({"event": "member_down", "name": "victim"}));
    started.elapsed()
}

/// Kill (or freeze) the holder of a singleton and time until the survivor starts it.
fn failover(freeze: bool) -> Duration {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let node = |name: &str, port: u16, seed: Option<u16>| {
        start_node(name, port, seed.as_slice(), &["--singleton", "boss"])
    };
    let mut holder = node("a", p1, None);
    let b = node("b", p2, Some(p1));
    let _c = node("c", p3, Some(p1));
    wait(&holder, json!({"event": "singleton_started", "name": "boss"}));
    wait(&b, json!({"event": "member_up", "name": "c"}));
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    if freeze {
        holder.freeze();
    } else {
        holder.kill();
    }
    wait(&b, json!({"event": "singleton_started", "name": "boss"}));
    started.elapsed()
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what:<28} median {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms   ({} trials)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: only run when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    report("kill -9 -> member down", (0..TRIALS).map(|_| trial(false)).collect());
    report("SIGSTOP -> member down", (0..TRIALS).map(|_| trial(true)).collect());
    report("kill -9 -> singleton moved", (0..TRIALS).map(|_| failover(false)).collect());
    report("SIGSTOP -> singleton moved", (0..TRIALS).map(|_| failover(true)).collect());
}
