//! The live dashboard over real HTTP: the page, the cluster's nodes as JSON and as server-sent
//! events, a killed node shown down, traces downloadable, and the access token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use foundation_cluster::testkit::{free_port, free_port_range};
use support::{hop_round_trip, json, request, request_with, start_node, text, until, wait, wait_n};

/// A GET over HTTP/1.1 (no client crate needed): (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, "")
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
    wait(&n1, json!({"event": "dashboard_serving", "url": format!("http://{web}/")}));
    let _n2 = start_node("n2", base + 1, &[base], &[]);
    let mut n3 = start_node("n3", base + 2, &[base], &[]);
    wait_n(&n1, json!({"event": "member_up"}), 2);

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
    // The first `cluster` event (others, such as `sessions`, may come before it).
    let mut event = String::new();
    let data = loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data: ")
            && event == "cluster"
        {
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
    assert_eq!(analysis["window"], serde_json::Value::Null, "no window yet: since each node started");
    // What the page's profile buttons post: a window starts (on n1, the only node profiling),
    // the analysis is over it, it stops; stopping again stops nothing.
    let (status, body) = request(&web, "POST", "/api/profile/start", "{}");
    assert_eq!(status, 201, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(started["nodes"], serde_json::json!(["n1"]), "{started}");
    let analysis: serde_json::Value = serde_json::from_str(&get(&web, "/api/profile").1).unwrap();
    assert_eq!(
        (&analysis["window"], &analysis["window_running"]),
        (&started["id"], &serde_json::json!(true))
    );
    let (status, body) = request(&web, "POST", "/api/profile/stop", "{}");
    assert_eq!(
        (status, serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].clone()),
        (200, started["id"].clone())
    );
    let (status, body) = request(&web, "POST", "/api/profile/stop", "{}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["nodes"], serde_json::json!([]));

    // The charts' history: samples every 2 s, each node up with its rates once two were taken.
    until(
        || {
            let samples: serde_json::Value =
                serde_json::from_str(&get(&web, "/api/series").1).unwrap_or_default();
            samples.as_array().is_some_and(|s| {
                s.last().is_some_and(|last| {
                    ["n1", "n2", "n3"].iter().all(|n| {
                        last["nodes"][n]["frames_per_sec"].as_f64().is_some_and(|f| f > 0.0)
                            && last["nodes"][n]["bytes_per_sec"].as_f64().is_some()
                    })
                })
            })
        },
        || get(&web, "/api/series").1,
    );

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
    // A token that guards nothing is refused too.
    let weak = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .args(["node", "--name", "weak", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--dashboard", &format!("0.0.0.0:{}", free_port()), "--dashboard-token", "s3cret"])
        .env("FOUNDATION_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 16"), "{weak:?}");

    // With one, every request must carry it.
    let web_port = free_port();
    let node = start_node(
        "guarded",
        free_port(),
        &[],
        &["--dashboard", &format!("0.0.0.0:{web_port}"), "--dashboard-token", "s3cret-s3cret-s3cret"],
    );
    let serving = wait(&node, json!({"event": "dashboard_serving"}));
    assert!(text(&serving, "url").starts_with("http://"), "{serving}");
    let web = format!("127.0.0.1:{web_port}");
    assert_eq!(get(&web, "/api/cluster").0, 401);
    // The optimization view's buttons too.
    assert_eq!(request(&web, "POST", "/api/runs/any/stop", "{}").0, 401);
    let bearer = |token: &str| format!("Bearer {token}");
    assert_eq!(request_with(&web, "GET", "/api/cluster", &[("Authorization", &bearer("wrong"))], "").0, 401);
    assert_eq!(
        request_with(&web, "GET", "/api/cluster", &[("Authorization", &bearer("s3cret-s3cret-s3cret"))], "")
            .0,
        200
    );
    // Never in a query string (it would sit in logs, history and Referer headers).
    assert_eq!(get(&web, "/api/cluster?token=s3cret-s3cret-s3cret").0, 401);
    // A browser is sent to the login form; the right token there sets an HttpOnly cookie.
    let (status, _) = get(&web, "/");
    assert_eq!(status, 303);
    assert_eq!(get(&web, "/login").0, 200);
    assert_eq!(request(&web, "POST", "/login", r#"{"token":"wrong"}"#).0, 401);
    let cookie = login_cookie(&web, "s3cret-s3cret-s3cret");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let value = cookie.split(';').next().unwrap().to_string();
    assert_eq!(request_with(&web, "GET", "/api/cluster", &[("Cookie", &value)], "").0, 200);
    assert_eq!(
        request_with(&web, "GET", "/api/cluster", &[("Cookie", "foundation_dashboard=wrong")], "").0,
        401
    );
}

/// Logs in at `web` with `token`; the `Set-Cookie` header it answered with.
fn login_cookie(web: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(web).unwrap();
    let body = format!(r#"{{"token":"{token}"}}"#);
    write!(
        stream,
        "POST /login HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");
    response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .unwrap_or_else(|| panic!("no cookie: {response}"))
        .to_string()
}

#[test]
fn the_dashboard_refuses_foreign_hosts_cross_site_posts_and_a_flood_of_event_streams() {
    let web = format!("127.0.0.1:{}", free_port());
    let n1 = start_node("n1", free_port(), &[], &["--dashboard", &web, "--trace-rate", "1.0"]);
    wait(&n1, json!({"event": "dashboard_serving"}));
    let body = r#"{"rate": 1}"#;
    // A page on another site whose name now points here (DNS rebinding) sends its own Host.
    let port = web.rsplit_once(':').unwrap().1;
    let foreign = format!("evil.example:{port}");
    assert_eq!(request_with(&web, "GET", "/api/cluster", &[("Host", &foreign)], "").0, 403);
    assert_eq!(
        request_with(&web, "GET", "/api/cluster", &[("Host", &format!("localhost:{port}"))], "").0,
        200
    );
    // A cross-site form or text/plain POST cannot start a trace; nor can a JSON one from
    // another origin.
    let plain = [("Content-Type", "text/plain")];
    assert_eq!(request_with(&web, "POST", "/api/sessions", &plain, body).0, 415);
    let cross = [("Content-Type", "application/json"), ("Origin", "http://evil.example")];
    assert_eq!(request_with(&web, "POST", "/api/sessions", &cross, body).0, 403);
    // Nor stop a run.
    assert_eq!(request_with(&web, "POST", "/api/runs/any/stop", &plain, "{}").0, 415);
    assert_eq!(request_with(&web, "POST", "/api/runs/any/stop", &cross, "{}").0, 403);
    let same = format!("http://{web}");
    let own = [("Content-Type", "application/json"), ("Origin", same.as_str())];
    assert_eq!(request_with(&web, "POST", "/api/sessions", &own, body).0, 201);
    // A body over the limit is refused without being read whole.
    let big = format!(r#"{{"rate": 1, "pad": "{}"}}"#, "x".repeat(100 << 10));
    assert_eq!(request(&web, "POST", "/api/sessions", &big).0, 413);

    // A flood of event streams: beyond the cap each is refused at once, and the dashboard
    // keeps answering; closed streams free their places.
    let open = |n: usize| -> Vec<(std::net::TcpStream, String)> {
        use std::io::{Read, Write};
        (0..n)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(&web).unwrap();
                write!(s, "GET /api/events HTTP/1.1\r\nHost: {web}\r\n\r\n").unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
                let mut head = [0u8; 12];
                s.read_exact(&mut head).unwrap();
                (s, String::from_utf8_lossy(&head).to_string())
            })
            .collect()
    };
    let streams = open(40);
    let refused = streams.iter().filter(|(_, head)| head.ends_with("503")).count();
    assert_eq!(refused, 8, "32 streams at most: {:?}", streams.iter().map(|(_, h)| h).collect::<Vec<_>>());
    assert_eq!(get(&web, "/api/cluster").0, 200);
    drop(streams);
    until(
        || open(1).iter().all(|(_, head)| head.ends_with("200")),
        || "closed streams never freed their places".to_string(),
    );
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
    wait(&node, json!({"event": "optimization_finished"}));
    until(
        || {
            let (_, body) = get(&web, "/api/runs");
            let runs: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            runs["watched"]["result"].is_object()
                && runs["watched"]["evaluations"] == serde_json::json!([400, 400])
        },
        || format!("{:?}", get(&web, "/api/runs")),
    );
    // The view's buttons say no clearly: a finished run is not stopped, an unknown one is not
    // there, a name that is no run's is not found.
    let (status, body) = request(&web, "POST", "/api/runs/watched/stop", "{}");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("is finished"), "{body}");
    let (status, body) = request(&web, "POST", "/api/runs/nothing/resume", "{}");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no run `nothing`"), "{body}");
    assert_eq!(request(&web, "POST", "/api/runs/not%20a%20name/stop", "{}").0, 404);
}

#[test]
fn cluster_traces_start_and_stop_from_the_dashboard_and_download_as_chrome_json() {
    let base = free_port_range(2);
    let web = format!("127.0.0.1:{}", free_port());
    // No sampling of their own: only a cluster trace makes the nodes record.
    let mut n1 = start_node("n1", base, &[], &["--dashboard", &web, "--trace-rate", "0"]);
    let _n2 = start_node("n2", base + 1, &[base], &["--trace-rate", "0"]);
    wait(&n1, json!({"event": "member_up"}));

    // Bad input is refused with a reason, and starts nothing.
    let (status, body) = request(&web, "POST", "/api/sessions", "{rate: 1");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    let (status, body) = request(&web, "POST", "/api/sessions", r#"{"rate": 2}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("rate = 2 (expected 0 to 1)"), "{body}");
    let (status, body) = request(&web, "POST", "/api/sessions", r#"{"nodes": ["n1", "n9"]}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`n9`, not a member of this cluster (members: n1, n2)"), "{body}");
    let (status, body) =
        request(&web, "POST", "/api/sessions", r#"{"max_duration_ms": 18446744073709551615}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expected 1 to 86400000"), "{body}");
    assert_eq!(get(&web, "/api/sessions"), (200, "[]".to_string()));
    assert_eq!(get(&web, "/api/sessions/0123456789abcdef").0, 404);
    assert_eq!(get(&web, "/api/sessions/not-an-id").0, 400);

    let (status, body) = request(&web, "POST", "/api/sessions", r#"{"nodes": ["n1", "n2"]}"#);
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    hop_round_trip(&mut n1, "n2,n1");
    // The spans (but the wire's) of the trace that made the round trip.
    let hop_trace = |report: &serde_json::Value| -> Vec<String> {
        let names = |t: &serde_json::Value| -> Vec<String> {
            t["spans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| format!("{}@{}", s["name"].as_str().unwrap(), s["node"].as_str().unwrap()))
                .filter(|s| !s.starts_with("wire.receive"))
                .collect()
        };
        report["traces"].as_array().unwrap().iter().map(names).find(|n| n.len() > 1).unwrap_or_default()
    };
    let (status, body) = get(&web, &format!("/api/sessions/{id}"));
    let live: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, live["state"].as_str()), (200, Some("running")), "{body}");
    assert!(hop_trace(&live).contains(&"hop@n2".to_string()), "{body}");

    // The stop button's request: stopped, every node answered, and the export downloads.
    let (status, body) = request(&web, "POST", &format!("/api/sessions/{id}/stop"), "");
    let stopped: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, stopped["state"].as_str()), (200, Some("stopped")), "{body}");
    assert_eq!(stopped["missing_nodes"], serde_json::json!([]), "{body}");
    assert_eq!(hop_trace(&stopped), ["request@n1", "hop@n2", "hop@n1"], "{body}");
    let (status, body) = get(&web, &format!("/api/sessions/{id}/export"));
    assert_eq!(status, 200);
    let chrome: serde_json::Value = serde_json::from_str(&body).unwrap();
    let complete = chrome["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count();
    assert!(complete >= 5, "{body}");
    assert!(body.contains("\"hop\"") && body.contains("\"request\""), "{body}");
    let (_, list) = get(&web, "/api/sessions");
    assert!(list.contains(&id) && list.contains("\"stopped\""), "{list}");
}
