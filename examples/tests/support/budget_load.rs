//! A load of chat requests from several node processes against one simulated provider, under a
//! cluster-wide budget: what `tests/llm_budget.rs` checks and `benches/providers.rs` measures.

use std::time::Duration;

use foundation_actors::providers::{
    ChatRequest, LanguageModel, LmError, OpenAiClient, ServerStats, SimServerConfig, SimulatedConfig,
    SimulatedProvider,
};
use foundation_cluster::testkit::free_port_range;
use foundation_core::rate_limit::ProviderLimits;

use super::{WAIT, start_node};

/// What to run.
pub struct Load {
    pub rpm: u64,
    pub tpm: u64,
    pub nodes: usize,
    pub requests: u64,
    pub callers: u64,
    /// Completion tokens of every answer.
    pub completion_tokens: u64,
    /// Server latency per request.
    pub latency: Duration,
    /// Longest the whole load may take.
    pub timeout: Duration,
    /// The provider budget the nodes hold for the cluster, if not the server's limits (rpm,
    /// tpm).
    pub budget: Option<(u64, u64)>,
    /// One tenant for every node's requests, with a quota of this many requests per minute held
    /// for the cluster; `None`: each node's requests are its own tenant's, without a quota.
    pub tenant_rpm: Option<u64>,
}

/// One node's report.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NodeReport {
    pub node: String,
    pub requests: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub started_ms: u64,
    pub ended_ms: u64,
}

/// What happened.
#[derive(Debug)]
pub struct Outcome {
    pub nodes: Vec<NodeReport>,
    pub server: ServerStats,
    /// From the first node's start to the last node's end.
    pub elapsed: Duration,
    /// The `cluster_usage` event the first node printed for `usage` after the load.
    pub cluster_usage: super::Value,
}

impl Outcome {
    /// Sums over the nodes: (requests, failed, prompt tokens, completion tokens, cost).
    pub fn totals(&self) -> (u64, u64, u64, u64, f64) {
        self.nodes.iter().fold((0, 0, 0, 0, 0.0), |t, n| {
            (
                t.0 + n.requests,
                t.1 + n.failed,
                t.2 + n.prompt_tokens,
                t.3 + n.completion_tokens,
                t.4 + n.cost_usd,
            )
        })
    }

    /// Throughput as a share of the binding limit's rate: the larger of requests per minute
    /// over RPM and tokens per minute over TPM.
    pub fn utilization(&self, load: &Load) -> f64 {
        let minutes = self.elapsed.as_secs_f64() / 60.0;
        let rpm = self.server.served as f64 / minutes / load.rpm as f64;
        let tpm =
            (self.server.prompt_tokens + self.server.completion_tokens) as f64 / minutes / load.tpm as f64;
        rpm.max(tpm)
    }
}

/// Runs the load: a simulated provider in this process, `nodes` node processes that each send
/// their part of the requests from their part of the callers.
pub fn run(load: &Load) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let model = SimulatedConfig {
        latency: load.latency,
        completion_tokens: Some(load.completion_tokens),
        ..Default::default()
    };
    let limits = ProviderLimits { rpm: Some(load.rpm), tpm: Some(load.tpm), ..Default::default() };
    let server = runtime
        .block_on(SimulatedProvider::start("127.0.0.1:0".parse().unwrap(), SimServerConfig { limits, model }))
        .unwrap();
    // Empty the server's buckets first (a full minute's burst would hide a budget that lets
    // every node send at the whole rate): the load starts against a provider with nothing left.
    runtime.block_on(drain(&server));
    let before = server.stats();
    let base = free_port_range(load.nodes as u16);
    let url = server.base_url();
    let (budget_rpm, budget_tpm) = load.budget.unwrap_or((load.rpm, load.tpm));
    let (rpm, tpm, others) = (budget_rpm.to_string(), budget_tpm.to_string(), (load.nodes - 1).to_string());
    let tenant_rpm = load.tenant_rpm.map(|n| n.to_string());
    let mut nodes = Vec::new();
    for i in 0..load.nodes {
        let share =
            |total: u64| total / load.nodes as u64 + u64::from((i as u64) < total % load.nodes as u64);
        let (requests, callers) = (share(load.requests).to_string(), share(load.callers).to_string());
        let seeds: Vec<u16> = (0..i as u16).map(|j| base + j).collect();
        let name = format!("n{}", i + 1);
        let mut args = vec![
            "--provider-url",
            &url,
            "--rpm",
            &rpm,
            "--tpm",
            &tpm,
            "--load",
            &requests,
            "--callers",
            &callers,
            "--wait-for",
            &others,
        ];
        if let Some(quota) = &tenant_rpm {
            args.extend(["--tenant", "acme", "--tenant-rpm", quota]);
        }
        nodes.push(start_node(&name, base + i as u16, &seeds, &args));
    }
    let mut reports = Vec::new();
    for node in &nodes {
        let done = node
            .wait_for_event(&super::json!({"event": "llm_load_done"}), load.timeout.max(WAIT))
            .unwrap_or_else(|e| panic!("{e}"));
        reports.push(serde_json::from_value::<NodeReport>(done).unwrap());
    }
    let first = reports.iter().map(|r| r.started_ms).min().unwrap();
    let last = reports.iter().map(|r| r.ended_ms).max().unwrap();
    let errors: Vec<super::Value> =
        nodes.iter().flat_map(|n| n.events(&super::json!({"event": "llm_load_error"}))).collect();
    assert!(errors.is_empty(), "errors: {errors:?}");
    let after = server.stats();
    nodes[0].send_line("usage").unwrap();
    let cluster_usage = super::wait(&nodes[0], super::json!({"event": "cluster_usage"}));
    let during = ServerStats {
        served: after.served - before.served,
        rate_limited: after.rate_limited - before.rate_limited,
        faults: after.faults - before.faults,
        malformed: after.malformed - before.malformed,
        bad_requests: after.bad_requests - before.bad_requests,
        prompt_tokens: after.prompt_tokens - before.prompt_tokens,
        completion_tokens: after.completion_tokens - before.completion_tokens,
        streams: after.streams - before.streams,
        streams_cancelled: after.streams_cancelled - before.streams_cancelled,
        tool_calls: after.tool_calls - before.tool_calls,
        embedding_requests: after.embedding_requests - before.embedding_requests,
        embedded_texts: after.embedded_texts - before.embedded_texts,
    };
    let outcome = Outcome {
        nodes: reports,
        server: during,
        elapsed: Duration::from_millis(last - first),
        cluster_usage,
    };
    drop(nodes);
    drop(server);
    outcome
}

/// Sends requests with no limiter until the server refuses one (then every sender stops: a few
/// senders left alone could match the refill rate and never be refused).
async fn drain(server: &SimulatedProvider) {
    let client =
        OpenAiClient::new("drain", "simulated", Some(server.base_url()), None, Duration::from_secs(10));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, refused) = (client.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            while !refused.load(std::sync::atomic::Ordering::SeqCst) {
                match client.complete(&ChatRequest::prompt("drain").max_tokens(64)).await {
                    Ok(_) => {}
                    Err(LmError::RateLimited { .. }) => {
                        refused.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
