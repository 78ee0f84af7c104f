//! Distributed optimization throughput: evaluations per second for 1, 2, 4, 8 and 16 workers,
//! on 1 node and spread over 3 nodes, with the simulated model at 50 ms a call; and the scaling
//! efficiency, throughput / (workers × one-worker throughput) on the same number of nodes.
//!
//! Each configuration is a fresh run of `foundation node --optimize` processes (the demo's run:
//! 11 candidate programs × 100 validation questions = 1 100 evaluations, in tasks of 5). The
//! benchmark follows the run as an observer node and reports the steady-state rate (between 10 %
//! and 90 % of the evaluations, leaving out the start, where only candidate-building tasks
//! exist, and the last tasks' tail) and the whole run's rate.
//!
//! Run: `cargo bench -p foundation-examples --bench optimize` (about 4 minutes; figures in
//! docs/BENCHMARKS.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foundation_cluster::Cluster;
use foundation_cluster::testkit::free_port_range;
use foundation_core::config::ClusterConfig;
use support::start_node;

const WORKERS: [usize; 5] = [1, 2, 4, 8, 16];
const LATENCY_MS: &str = "50";
const CANDIDATES: &str = "8";

struct Measure {
    steady: f64,
    whole: f64,
    elapsed: Duration,
}

fn run(nodes: usize, workers: usize, round: usize) -> Measure {
    let base = free_port_range(nodes as u16);
    let run = format!("bench-{nodes}-{workers}-{round}");
    let mut processes = Vec::new();
    for i in 0..nodes {
        let mine = workers / nodes + usize::from(i < workers % nodes);
        let seeds: Vec<u16> = (0..i as u16).map(|j| base + j).collect();
        let args = [
            "--optimize",
            &run,
            "--workers",
            &mine.to_string(),
            "--candidates",
            CANDIDATES,
            "--latency-ms",
            LATENCY_MS,
        ];
        processes.push(start_node(&format!("b{}", i + 1), base + i as u16, &seeds, &args));
    }
    let addrs: Vec<SocketAddr> =
        (0..nodes).map(|i| SocketAddr::from(([127, 0, 0, 1], base + i as u16))).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let samples = runtime.block_on(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = ClusterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            seeds: addrs,
            ..Default::default()
        };
        let observer =
            Cluster::start(&format!("status-bench-{nodes}-{workers}"), &config, None).await.unwrap();
        let started = Instant::now();
        let mut samples: Vec<(Duration, usize, usize)> = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Ok(status) = dspex_optimizer::distributed::status(&run).await else { continue };
            samples.push((started.elapsed(), status.evaluations.1, status.evaluations.0));
            if status.result.is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "run {run} did not finish");
        }
        observer.shutdown().await;
        samples
    });
    drop(processes);
    let total = samples.last().unwrap().2 as f64;
    // The first sample with at least `share` of the evaluations done.
    let at = |share: f64| *samples.iter().find(|(_, done, _)| *done as f64 >= share * total).unwrap();
    let (t10, d10, _) = at(0.1);
    let (t90, d90, _) = at(0.9);
    let first = samples.iter().find(|(_, done, _)| *done > 0).unwrap().0;
    let (end, done, _) = *samples.last().unwrap();
    Measure {
        steady: (d90 - d10) as f64 / (t90 - t10).as_secs_f64(),
        whole: done as f64 / (end - first.min(end)).as_secs_f64().max(1e-3),
        elapsed: end,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("optimize: simulated model at {LATENCY_MS} ms, 1 100 evaluations per run");
    println!(
        "{:>5} {:>7} {:>14} {:>11} {:>14} {:>9}",
        "nodes", "workers", "steady evals/s", "efficiency", "whole evals/s", "elapsed"
    );
    for nodes in [1, 3] {
        let mut one = None;
        for workers in WORKERS {
            let m = run(nodes, workers, 0);
            let base = *one.get_or_insert(m.steady);
            println!(
                "{nodes:>5} {workers:>7} {:>14.1} {:>10.1}% {:>14.1} {:>8.1}s",
                m.steady,
                m.steady / (workers as f64 * base) * 100.0,
                m.whole,
                m.elapsed.as_secs_f64()
            );
        }
    }
}
