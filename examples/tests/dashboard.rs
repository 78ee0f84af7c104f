//! The live dashboard over real HTTP: the page, the cluster's nodes as JSON and as server-sent
//! events, a killed node shown down, traces downloadable, and the access token.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use foundation_cluster::testkit::{free_port, free_port_range};
use support::{WAIT, start_node, until};

/// A GET over HTTP/1.1 (no client crate needed): (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn node_status(addr: &str, node: &str) -> Option<String> {
    let (_, body) = get(addr, "/api/cluster");
    let health: serde_json::Value = serde_json::from_str(&body).ok()?;
    health["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)
        .map(|n| n["status"].as_str().unwrap().to_string())
}

#[test]
fn the_dashboard_shows_the_cluster_live_and_a_killed_node_goes_down() {
    let base = free_port_range(3);
    let web = format!("127.0.0.1:{}", free_port());
    let n1 = start_node("n1", base, &[], &["--dashboard", &web, "--trace-rate", "1.0"]);
    n1.wait_for(&format!("dashboard on http://{web}/"), WAIT).unwrap_or_else(|e| panic!("{e}"));
    let _n2 = start_node("n2", base + 1, &[base], &[]);
    let mut n3 = start_node("n3", base + 2, &[base], &[]);
    n1.wait_for_count("member up", 2, WAIT).unwrap_or_else(|e| panic!("{e}"));

    let (status, page) = get(&web, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<title>Foundation cluster</title>") && page.contains("EventSource"), "{page}");
    until(|| node_status(&web, "n3").as_deref() == Some("up"), || format!("{:?}", get(&web, "/api/cluster")));

    // The event stream pushes the cluster, every node in it.
    let mut stream = TcpStream::connect(&web).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /api/events HTTP/1.1\r\nHost: {web}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let data = loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            break data.to_string();
        }
    };
    let pushed: serde_json::Value = serde_json::from_str(&data).unwrap();
    let names: Vec<&str> =
        pushed["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    for n in ["n1", "n2", "n3"] {
        assert!(names.contains(&n), "{names:?}");
    }

    // The profile endpoint answers with what analyze found (n1 profiles itself: --trace-rate).
    let (status, body) = get(&web, "/api/profile");
    assert_eq!(status, 200);
    let analysis: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(analysis["bottlenecks"].is_array() && analysis["hotspots"].is_array(), "{analysis}");

    // A node killed shows as down.
    n3.kill();
    until(
        || node_status(&web, "n3").as_deref() == Some("down"),
        || format!("{:?}", get(&web, "/api/cluster")),
    );

    // Traces: a bad id is refused; a good one (unknown here) is an empty Chrome trace.
    assert_eq!(get(&web, "/api/traces/nope").0, 400);
    let (status, body) = get(&web, &format!("/api/traces/{}", "ab".repeat(16)));
    assert_eq!(status, 200);
    let chrome: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(chrome["traceEvents"].is_array());
}

#[test]
fn off_loopback_the_dashboard_needs_a_token_and_checks_it() {
    // Without a token, a node refuses to serve it on every interface.
    let port = free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .args(["node", "--name", "open", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--dashboard", &format!("0.0.0.0:{}", free_port())])
        .env("FOUNDATION_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("give it an access token"), "{stderr}");

    // With one, every request must carry it.
    let web_port = free_port();
    let node = start_node(
        "guarded",
        free_port(),
        &[],
        &["--dashboard", &format!("0.0.0.0:{web_port}"), "--dashboard-token", "s3cret"],
    );
    node.wait_for("dashboard on http://", WAIT).unwrap_or_else(|e| panic!("{e}"));
    let web = format!("127.0.0.1:{web_port}");
    assert_eq!(get(&web, "/api/cluster").0, 401);
    assert_eq!(get(&web, "/api/cluster?token=wrong").0, 401);
    assert_eq!(get(&web, "/api/cluster?token=s3cret").0, 200);
}

#[test]
fn the_dashboard_follows_an_optimization_run_from_the_telemetry_channel() {
    let state = tempfile::tempdir().unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let state_arg = state.path().display().to_string();
    let args = [
        "--dashboard",
        &web,
        "--optimize",
        "watched",
        "--candidates",
        "1",
        "--latency-ms",
        "5",
        "--run-state",
        &state_arg,
    ];
    let node = start_node("opt", free_port(), &[], &args);
    node.wait_for("optimization finished", WAIT).unwrap_or_else(|e| panic!("{e}"));
    until(
        || {
            let (_, body) = get(&web, "/api/runs");
            let runs: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            runs["watched"]["result"].is_object()
                && runs["watched"]["evaluations"] == serde_json::json!([400, 400])
        },
        || format!("{:?}", get(&web, "/api/runs")),
    );
}
