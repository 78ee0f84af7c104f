//! A provider's limits held by the cluster as a whole: three node processes share one budget
//! against the simulated provider server, which refuses anything over its limits with a 429.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use std::time::Duration;

use support::budget_load::{Load, run};
use support::{json, seen, wait_n};

#[test]
fn three_nodes_share_one_budget_without_a_single_429_and_count_what_the_server_counts() {
    // 600 requests a minute (10 a second), from a provider whose burst is already spent: three
    // nodes that each used the whole limit would send three times what it allows.
    let load = Load {
        rpm: 600,
        tpm: 60_000,
        nodes: 3,
        requests: 150,
        callers: 24,
        completion_tokens: 40,
        latency: Duration::from_millis(20),
        timeout: Duration::from_secs(120),
        budget: None,
        tenant_rpm: None,
    };
    let outcome = run(&load);
    let (requests, failed, prompt, completion, cost) = outcome.totals();
    assert_eq!(outcome.server.rate_limited, 0, "{outcome:?}");
    assert_eq!((requests, failed), (150, 0), "{outcome:?}");
    assert_eq!(outcome.server.served, 150);
    assert_eq!((prompt, completion), (outcome.server.prompt_tokens, outcome.server.completion_tokens));
    assert!(cost > 0.0);
    // Every node took part (the budget was shared, not held by one).
    assert!(outcome.nodes.iter().all(|n| n.requests == 50), "{outcome:?}");

    // The ledger summed across the cluster on request: what the server counted, per tenant (each
    // node's requests are its own tenant's here), from every node.
    let usage = &outcome.cluster_usage;
    assert_eq!(usage["answered"], json!(["n1", "n2", "n3"]), "{usage}");
    assert_eq!(usage["missing"], json!([]), "{usage}");
    assert_eq!(usage["unshared"], json!([]), "{usage}");
    assert_eq!(usage["requests"], 150, "{usage}");
    assert_eq!(usage["prompt_tokens"], outcome.server.prompt_tokens, "{usage}");
    assert_eq!(usage["completion_tokens"], outcome.server.completion_tokens, "{usage}");
    let tenants: Vec<(String, u64)> = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["tenant"].as_str().unwrap().to_string(), r["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(tenants, [("n1".to_string(), 50), ("n2".to_string(), 50), ("n3".to_string(), 50)], "{usage}");
}

#[test]
fn a_tenants_quota_holds_for_the_cluster_as_a_whole() {
    // The server allows what the tenant's quota allows (120 a minute, its burst spent first);
    // the nodes' provider budget is ten times that, so only the tenant's quota holds them back:
    // three nodes each running the whole quota would send three times what the server takes.
    let load = Load {
        rpm: 120,
        tpm: 1_000_000,
        nodes: 3,
        requests: 30,
        callers: 6,
        completion_tokens: 20,
        latency: Duration::from_millis(5),
        timeout: Duration::from_secs(120),
        budget: Some((1_200, 10_000_000)),
        tenant_rpm: Some(120),
    };
    let outcome = run(&load);
    let (requests, failed, ..) = outcome.totals();
    assert_eq!(outcome.server.rate_limited, 0, "{outcome:?}");
    assert_eq!((requests, failed), (30, 0), "{outcome:?}");
    assert!(outcome.nodes.iter().all(|n| n.requests == 10), "each node sent its part: {outcome:?}");
    let usage = &outcome.cluster_usage;
    let rows = usage["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one tenant: {usage}");
    assert_eq!(
        (rows[0]["tenant"].as_str(), rows[0]["requests"].as_u64()),
        (Some("acme"), Some(30)),
        "{usage}"
    );
}

/// This node's share of the budget, as it prints it now.
fn share(node: &mut foundation_cluster::testkit::NodeProcess) -> f64 {
    let before = seen(node, json!({"event": "budget"})).len();
    node.send_line("budget").unwrap();
    let shares = wait_n(node, json!({"event": "budget"}), before + 1);
    let last = shares.last().unwrap();
    last["share"].as_f64().unwrap_or_else(|| panic!("no share in {last}"))
}

#[test]
fn an_idle_budget_is_split_evenly_and_a_killed_nodes_share_comes_back_after_its_lease() {
    let base = foundation_cluster::testkit::free_port_range(3);
    // No load: the endpoint is never called.
    let args = ["--provider-url", "http://127.0.0.1:9/v1", "--rpm", "600", "--tpm", "40000"];
    let mut n1 = support::start_node("n1", base, &[], &args);
    let mut n2 = support::start_node("n2", base + 1, &[base], &args);
    let mut n3 = support::start_node("n3", base + 2, &[base], &args);
    for n in [&n1, &n2, &n3] {
        wait_n(n, json!({"event": "member_up"}), 2);
    }
    let third = |s: f64| (s - 1.0 / 3.0).abs() < 0.01;
    support::until(
        || third(share(&mut n1)) && third(share(&mut n2)) && third(share(&mut n3)),
        || "every node at a third of the budget".to_string(),
    );
    n3.kill();
    // Its lease (3 s) expires at the keeper; the survivors then split the whole budget.
    let half = |s: f64| (s - 0.5).abs() < 0.01;
    support::until(|| half(share(&mut n1)) && half(share(&mut n2)), || "survivors at half each".to_string());

    // The cluster's usage names the lost node rather than waiting for it.
    n1.send_line("usage").unwrap();
    let usage = wait_n(&n1, json!({"event": "cluster_usage"}), 1).swap_remove(0);
    assert_eq!(usage["answered"], json!(["n1", "n2"]), "{usage}");
    assert_eq!(usage["missing"][0][0], "n3", "{usage}");
    assert_eq!(usage["requests"], 0, "{usage}");
}
