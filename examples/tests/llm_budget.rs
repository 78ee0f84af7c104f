//! A provider's limits held by the cluster as a whole: three node processes share one budget
//! against the simulated provider server, which refuses anything over its limits with a 429.

mod support;

use std::time::Duration;

use support::budget_load::{Load, run};

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
}
