//! A provider's limits held by a cluster: 4 000 chat requests from 64 callers on 3 node
//! processes against the simulated provider server with RPM = 600 and TPM = 40 000, under one
//! cluster-wide budget. Reports 429s (the goal: none), throughput as a share of the binding
//! limit (the goal: at least 95 %), and the nodes' usage and cost against the server's count.
//!
//! The server's burst is spent before the load starts, so the figure is the sustained rate,
//! which is what a cluster can count on.
//!
//! Run: `cargo bench -p foundation-examples --bench providers` (about 7 minutes; figures in
//! docs/BENCHMARKS.md). `PROVIDERS_BENCH_REQUESTS` sets a smaller load for a quick look.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use foundation_actors::providers::{ModelRegistry, Usage};
use support::budget_load::{Load, run};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests =
        std::env::var("PROVIDERS_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000);
    let load = Load {
        rpm: 600,
        tpm: 40_000,
        nodes: 3,
        requests,
        callers: 64,
        // About 20 prompt tokens and 48 completion tokens: ~68 tokens a request, so tokens per
        // minute (40 000 / 68 = 588 requests) bind just before requests per minute (600).
        completion_tokens: 48,
        latency: Duration::from_millis(200),
        timeout: Duration::from_secs(1_200),
        budget: None,
        tenant_rpm: None,
    };
    println!(
        "providers: {} requests, {} callers on {} nodes, RPM {} TPM {}",
        load.requests, load.callers, load.nodes, load.rpm, load.tpm
    );
    let outcome = run(&load);
    let (requests, failed, prompt, completion, cost) = outcome.totals();
    let s = outcome.server;
    let minutes = outcome.elapsed.as_secs_f64() / 60.0;
    let server_cost = ModelRegistry::with_defaults().get("provider", "simulated").map_or(0.0, |m| {
        m.cost(Usage {
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
            cached_prompt_tokens: 0,
        })
    });
    println!("elapsed                 {:.1} s", outcome.elapsed.as_secs_f64());
    println!("429s (server's count)   {}", s.rate_limited);
    println!(
        "requests / minute       {:.1} of {} ({:.1} %)",
        s.served as f64 / minutes,
        load.rpm,
        s.served as f64 / minutes / load.rpm as f64 * 100.0
    );
    let tokens = (s.prompt_tokens + s.completion_tokens) as f64;
    println!(
        "tokens / minute         {:.0} of {} ({:.1} %)",
        tokens / minutes,
        load.tpm,
        tokens / minutes / load.tpm as f64 * 100.0
    );
    println!("utilization (binding)   {:.1} %", outcome.utilization(&load) * 100.0);
    println!("nodes: requests {requests}, failed {failed}; server: served {}", s.served);
    println!("tokens: nodes {prompt} + {completion}; server {} + {}", s.prompt_tokens, s.completion_tokens);
    println!("cost: nodes ${cost:.6}; server's count priced ${server_cost:.6}");
    for n in &outcome.nodes {
        println!("  {}: {} requests, ${:.6}", n.node, n.requests, n.cost_usd);
    }
}
