//! Starting `foundation node` processes for the multi-process tests and benchmarks.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::time::Duration;

use foundation_cluster::testkit::NodeProcess;
pub use serde_json::{Value, json};

/// How long any one step of a multi-node test may take on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// Starts `foundation node --json --test-hooks --name NAME --listen 127.0.0.1:PORT [--seeds ...]
/// EXTRA...` with logs reduced to errors (tests read the JSON events on stdout: see [`wait`]),
/// and waits until it listens.
pub fn start_node(name: &str, port: u16, seeds: &[u16], extra: &[&str]) -> NodeProcess {
    start_node_with_env(name, port, seeds, extra, &[])
}

/// [`start_node`] with extra environment variables (`FOUNDATION_CLUSTER__...` settings).
pub fn start_node_with_env(
    name: &str,
    port: u16,
    seeds: &[u16],
    extra: &[&str],
    env: &[(&str, &str)],
) -> NodeProcess {
    let mut args = vec![
        "node".to_string(),
        "--json".into(),
        "--test-hooks".into(),
        "--name".into(),
        name.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    if !seeds.is_empty() {
        let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        args.extend(["--seeds".to_string(), seeds.join(",")]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let process = NodeProcess::spawn_with_env(
        name,
        env!("CARGO_BIN_EXE_foundation"),
        &args,
        [("FOUNDATION_LOG", log_level().as_str())].into_iter().chain(env.iter().copied()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait(&process, json!({"event": "listening", "node": name, "addr": format!("127.0.0.1:{port}")}));
    process
}

/// Waits up to [`WAIT`] for the node to print a JSON event holding every field of `pattern`
/// (`json!({"event": "member_up", "name": "n3"})`); returns the event. Fails the test with
/// everything the node printed if none comes.
pub fn wait(node: &NodeProcess, pattern: Value) -> Value {
    node.wait_for_event(&pattern, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

/// [`wait`] for `count` such events; returns them, oldest first.
pub fn wait_n(node: &NodeProcess, pattern: Value, count: usize) -> Vec<Value> {
    node.wait_for_events(&pattern, count, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

/// The events matching `pattern` the node has printed so far (no waiting).
pub fn seen(node: &NodeProcess, pattern: Value) -> Vec<Value> {
    node.events(&pattern)
}

/// The whole number in `event[field]` (`token` of a `lock_acquired`, `term` of a `leader`).
pub fn number(event: &Value, field: &str) -> u64 {
    event[field].as_u64().unwrap_or_else(|| panic!("no whole number `{field}` in {event}"))
}

/// The text in `event[field]`.
pub fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or_else(|| panic!("no text `{field}` in {event}"))
}

/// The node processes' log filter: errors only (tests read the lines on stdout), unless
/// `TEST_NODE_LOG` says otherwise (to see what a failing test's nodes did, on stderr).
pub fn log_level() -> String {
    std::env::var("TEST_NODE_LOG").unwrap_or_else(|_| "error".into())
}

/// Polls `done` until it holds, for at most [`WAIT`]; then fails with `describe()` (the state
/// that was still wrong). The one way these tests wait for something that prints no line.
pub fn until(mut done: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "gave up after {WAIT:?}: {}", describe());
        std::thread::sleep(Duration::from_millis(50));
    }
}
pub mod budget_load;

/// Sends `trace-hop PATH` from `node` until a round trip completes (hop actors become visible
/// as pg syncs: a new hop only after the previous one failed); the trace id of the round trip.
#[allow(dead_code)]
pub fn hop_round_trip(node: &mut NodeProcess, path: &str) -> String {
    let done = |n: &NodeProcess| seen(n, json!({"event": "trace_hop_done"})).len();
    let failed = |n: &NodeProcess| seen(n, json!({"event": "trace_hop_failed"})).len();
    let (before, failed_before) = (done(node), failed(node));
    let mut sent = 0;
    until(
        || {
            if done(node) > before {
                return true;
            }
            if failed(node) - failed_before >= sent {
                node.send_line(&format!("trace-hop {path}")).unwrap();
                sent += 1;
            }
            false
        },
        || format!("a hop round trip along {path}"),
    );
    let done = seen(node, json!({"event": "trace_hop_done"}));
    text(&done[before], "trace").to_string()
}

/// A request over HTTP/1.1 with a body: (status, body).
#[allow(dead_code)]
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    // What a same-origin page sends: JSON for anything that changes state.
    let json: &[(&str, &str)] = if method == "GET" { &[] } else { &[("Content-Type", "application/json")] };
    request_with(addr, method, path, json, body)
}

/// [`request`] with these headers (and `Host: ADDR` unless one of them is a `Host`).
#[allow(dead_code)]
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(stream, "{head}\r\n{body}").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A node of this test process joined to the node at `127.0.0.1:seed_port`, named
/// `status-NAME-PID`: an observer (the prefix), which serves nothing, holds no singleton and
/// does not count towards majorities (a member would: one serving node and this one would need
/// both for a majority).
pub async fn observer(name: &str, seed_port: u16) -> foundation_cluster::Cluster {
    use std::net::SocketAddr;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = foundation_core::config::ClusterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        seeds: vec![SocketAddr::from(([127, 0, 0, 1], seed_port))],
        ..Default::default()
    };
    let name = format!("{}{name}-{}", foundation_cluster::singleton::OBSERVER_PREFIX, std::process::id());
    foundation_cluster::Cluster::start(&name, &config, None).await.unwrap()
}

/// `foundation optimize ARGS...` (or another subcommand with `command`).
pub fn foundation(command: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .arg(command)
        .args(args)
        .env("XDG_STATE_HOME", foundation_cluster::testkit::state_home())
        .env("FOUNDATION_LOG", "error")
        .output()
        .unwrap()
}

/// What a finished command printed on stdout.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// What a finished command printed on stderr.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// A spec file for the bundled question data, run `name` with `model` and `seed`.
pub fn spec_file(dir: &std::path::Path, name: &str, model: &str, seed: u64) -> String {
    let data = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dspex-optimizer/data/questions.jsonl"
    ))
    .unwrap();
    let lines: Vec<&str> = data.lines().collect();
    std::fs::write(dir.join("train.jsonl"), lines[..40].join("\n")).unwrap();
    std::fs::write(dir.join("validation.jsonl"), lines[40..90].join("\n")).unwrap();
    let path = dir.join(format!("{name}-{seed}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nmodel = \"{model}\"\nseed = {seed}\nmetric = \"exact_match:label\"\n\
             [program]\nsignature = \"question -> label\"\n\
             [data]\ntrain = \"train.jsonl\"\nvalidation = \"validation.jsonl\"\n\
             [optimizer]\ncandidates = 2\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}
