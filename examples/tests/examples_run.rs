//! Runs every example program and checks it does what it says. The examples are built by
//! `cargo test` for the package or workspace; `cargo test --test examples_run` alone does not
//! rebuild them (build them with `cargo build -p foundation-examples --examples`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::path::PathBuf;
use std::process::Command;

fn run_example(name: &str) -> String {
    // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path: PathBuf = profile_dir.join("examples").join(name);
    let out = Command::new(&path).output().unwrap_or_else(|e| {
        panic!("cannot run {}: {e} (build it: cargo build -p foundation-examples --examples)", path.display())
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn supervision_example_restarts_reports_and_escalates() {
    let out = run_example("supervision");
    assert_eq!(out.matches("order worker started").count(), 3, "{out}");
    assert!(out.contains("FAILED") && out.contains("validate amount=-5"), "{out}");
    assert!(out.contains("exceeded its restart intensity"), "{out}");
}

#[test]
fn channels_example_puts_control_first_and_broadcasts() {
    let out = run_example("channels");
    assert!(out.contains("first message received: stop"), "{out}");
    assert!(out.contains("telemetry dropped for this slow subscriber: 995"), "{out}");
    assert!(out.contains("the other node received: \"for every node\"\nand nothing else: true"), "{out}");
}

#[test]
fn registry_example_discovers_and_avoids_stopped_instances() {
    let out = run_example("registry");
    assert!(out.contains("discover(json, region=eu): [InstanceId(1)]"), "{out}");
    assert!(out.contains("least loaded: #3\nafter #3 stopped, least loaded: #2"), "{out}");
}

#[test]
fn pool_example_grows_sheds_and_shrinks() {
    let out = run_example("pool");
    assert!(out.contains("pool grew to 4"), "{out}");
    assert!(out.contains("overloaded") || out.contains("shed"), "{out}");
    assert!(out.contains("after idling: PoolStats { size: 1"), "{out}");
}

#[test]
fn pipeline_example_accounts_for_every_document() {
    let out = run_example("pipeline");
    assert!(out.contains("7 submitted = 6 indexed + 1 dead letters"), "{out}");
    assert!(out.contains("dead letter #3 at `parse` after 1 attempt(s): no `id:` prefix"), "{out}");
    // Two documents fail their first two enrichment attempts and are retried into success.
    assert!(out.contains("stage enrich  processed  6  retries  4  dead letters 0"), "{out}");
}

#[test]
fn providers_example_falls_back_opens_the_circuit_and_counts_usage() {
    let out = run_example("providers");
    assert_eq!(out.matches("\"Answer: Tokyo\" from backup").count(), 3, "{out}");
    assert!(out.contains("primary breaker: Some(Open"), "{out}");
    // Two asked whole, one streamed (the tokens printed as they came, then the usage).
    assert!(out.contains("usage backup/simulated/acme: 3 ok, 0 failed"), "{out}");
    assert!(
        out.contains("streamed: Simulated answer") && out.contains("(24 completion tokens, Stop)"),
        "{out}"
    );
    // The model called the tool, and answered with its result.
    assert!(out.contains("tool call get_weather(Lisbon)"), "{out}");
    assert!(out.contains("answer: According to the tools: 21 degrees in Lisbon"), "{out}");
    assert!(out.contains("usage primary/simulated/acme: 0 ok, 1 failed"), "{out}");
}

#[test]
fn event_sourcing_example_refuses_resumes_and_rebuilds() {
    let out = run_example("event_sourcing");
    assert!(out.contains("o-3 pay refused: an empty order cannot be paid"), "{out}");
    assert!(out.contains("o-2 pay at version 0 refused: it is at version 1"), "{out}");
    assert!(out.contains("revenue: 1 paid orders, 2000 total"), "{out}");
    assert!(out.contains("after restart the projection read 1 more paid order (4500 total)"), "{out}");
    assert!(out.contains("o-1 after reopening: total 2000 at version 3"), "{out}");
    assert!(out.contains("causal chain of the refund: order.Paid -> refund.requested"), "{out}");
}

#[test]
fn research_agent_example_calls_own_and_served_tools_and_survives_losing_the_tool_node() {
    let out = run_example("research_agent");
    // Its own tool, then an own and a served tool called at once for a two-part question.
    assert!(out.contains(r#"step 0: calculator({"expression":"(17 + 4) * 3"}) [own tool] = 63.0"#), "{out}");
    assert!(
        out.contains(
            r#"dataset_lookup({"topic":"Kenya"}) [own tool] = ["What language is spoken in Kenya? (entity)""#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"country_facts({"country":"Kenya"}) [served by n2] = {"capital":"Nairobi""#),
        "{out}"
    );
    assert!(out.contains("(steps: 2, tool calls: 2, "), "{out}");
    // The answers stream in, written from the tools' results; the brief decodes.
    assert!(out.contains("model: According to the tools: 63.0"), "{out}");
    assert!(
        out.contains(r#"decoded: Brief { country: "Japan", capital: "Tokyo", population_millions: 124.5 }"#),
        "{out}"
    );
    // n2 killed: its tool is not offered any more, the run says so, the agent still answers.
    let after = out.split("country_facts is served nowhere now").nth(1).unwrap();
    assert!(!after.contains("country_facts({"), "{out}");
    assert!(
        after.contains("unavailable: country_facts") && after.contains("model: ") && after.contains("done"),
        "{out}"
    );
}
