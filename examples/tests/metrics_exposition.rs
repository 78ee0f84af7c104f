//! What a node serves on `/metrics` passes `promtool check metrics` (Prometheus' own linter:
//! help text, counter names, units): an exposition with a series of every catalogued family,
//! and the real `/metrics` of both `foundation node`s of a two-node cluster that took a lock, where
//! 200 000 bytes broadcast from one to the other show in the per-peer traffic counters of both,
//! and those counters keep growing, never going back, when the peer is killed and restarted.
//! `promtool` comes from Debian's `prometheus` package (installed by `.ci/run`, which sets
//! `CI_PROMTOOL_TEST=required`); elsewhere, without it, the tests check only our own rules and
//! say so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeSet;

use foundation_cluster::testkit::free_port;
use foundation_core::Telemetry;
use foundation_core::config::TelemetryConfig;
use foundation_core::telemetry::catalog::{MetricFamily, MetricKind};

mod support;

use support::{json, start_node, wait};

fn families() -> Vec<&'static MetricFamily> {
    foundation_cluster::metric_catalog::all()
        .chain(scope_tracer::metric_catalog::FAMILIES)
        .chain(dspex_optimizer::metric_catalog::FAMILIES)
        .collect()
}

/// `promtool check metrics` on `text`: its complaints (empty when clean), or `None` when
/// promtool is not installed and not required.
fn promtool_check(text: &str) -> Option<String> {
    use std::io::Write;
    let required = std::env::var("CI_PROMTOOL_TEST").is_ok_and(|v| v == "required");
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!("promtool could not run ({e}): only this test's own rules were checked");
            return None;
        }
        Err(e) => panic!("promtool is required (CI_PROMTOOL_TEST=required) but could not run: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let said = said.trim().to_string();
    // clean is silent and successful; anything else (a crash without a word too) is a problem
    match (out.status.success(), said.is_empty()) {
        (true, true) => Some(String::new()),
        (_, false) => Some(said),
        (false, true) => Some(format!("promtool failed without a word ({})", out.status)),
    }
}

/// Families in an exposition without a `# HELP` line.
fn without_help(text: &str) -> Vec<String> {
    let helped: BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# HELP ")).filter_map(|l| l.split(' ').next()).collect();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !helped.contains(name))
        .map(str::to_string)
        .collect()
}

fn assert_clean(text: &str) {
    assert!(without_help(text).is_empty(), "families without help: {:?}\n---\n{text}", without_help(text));
    if let Some(problems) = promtool_check(text) {
        assert!(problems.is_empty(), "promtool check metrics:\n{problems}\n---\n{text}");
    }
}

#[test]
fn an_exposition_of_every_family_passes_promtool() {
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    telemetry.describe(families());
    metrics::with_local_recorder(&telemetry, || {
        for family in families() {
            match family.kind {
                MetricKind::Counter => metrics::counter!(family.name, "example" => "a").increment(0),
                MetricKind::Gauge => metrics::gauge!(family.name, "example" => "a").set(0.0),
                MetricKind::Histogram => metrics::histogram!(family.name, "example" => "a").record(1.0),
            }
        }
    });
    let text = telemetry.render();
    for family in families() {
        assert!(
            text.contains(&format!("# HELP {} ", family.name)),
            "no help for {} in:\n{text}",
            family.name
        );
    }
    #[cfg(target_os = "linux")]
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {process} ")), "no {process} in:\n{text}");
    }
    assert_clean(&text);
    // the checks find what they should: a family without help
    let bare = "# TYPE foundation_bare_total counter\nfoundation_bare_total 1\n";
    assert_eq!(without_help(bare), ["foundation_bare_total"]);
    if let Some(problems) = promtool_check(bare) {
        assert!(problems.contains("no help text"), "{problems}");
    }
}

/// The value of one series (`name{labels}`) in an exposition.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(addr: &str) -> String {
    let (status, body) = support::request(addr, "GET", "/metrics", "");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_running_node_s_metrics_pass_promtool_and_count_each_peer_s_traffic() {
    let (p1, p2) = (free_port(), free_port());
    let (m1, m2) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let mut n1 = start_node("n1", p1, &[], &["--cookie", "metrics", "--coordination", "--metrics", &m1]);
    let mut n2 = start_node(
        "n2",
        p2,
        &[p1],
        &["--cookie", "metrics", "--coordination", "--metrics", &m2, "--subscribe", "big"],
    );
    for (me, other) in [(&n1, "n2"), (&n2, "n1")] {
        wait(me, json!({"event": "member_up", "name": other}));
        wait(me, json!({"event": "coordination_ready"}));
    }
    n1.send_line("lock orders 1500").unwrap();
    wait(&n1, json!({"event": "lock_acquired", "name": "orders"}));
    // The lease was granted by a majority of the two nodes: both, n2 on the granting side.
    support::until(
        || {
            value(&scrape(&m2), r#"foundation_lock_grants_total{outcome="granted"}"#)
                .is_some_and(|n| n >= 1.0)
        },
        || format!("n2 never counted a grant: {}", scrape(&m2)),
    );
    // n2's subscription has reached n1 once a broadcast arrives
    support::until(
        || {
            n1.send_line("broadcast big ready").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            !support::seen(&n2, json!({"event": "received", "topic": "big"})).is_empty()
        },
        || "n2 never received a broadcast on `big`".to_string(),
    );

    // 200 000 bytes more to n2 than before, counted on both sides (the counts are added every
    // second: waited for)
    let (sent, received) = (
        r#"foundation_cluster_peer_sent_bytes_total{peer="n2"}"#,
        r#"foundation_cluster_peer_received_bytes_total{peer="n1"}"#,
    );
    let frames = r#"foundation_cluster_peer_sent_frames_total{peer="n2"}"#;
    let before = (value(&scrape(&m1), sent).unwrap_or(0.0), value(&scrape(&m2), received).unwrap_or(0.0));
    let frames_before = value(&scrape(&m1), frames).unwrap_or(0.0);
    n1.send_line("broadcast-bytes big 200000").unwrap();
    wait(&n2, json!({"event": "received", "topic": "big", "text": "x".repeat(200_000)}));
    let body = std::cell::RefCell::new(String::new());
    support::until(
        || {
            let (b1, b2) = (scrape(&m1), scrape(&m2));
            let done = value(&b1, sent).is_some_and(|v| v >= before.0 + 200_000.0)
                && value(&b2, received).is_some_and(|v| v >= before.1 + 200_000.0)
                && value(&b1, frames).is_some_and(|v| v > frames_before);
            *body.borrow_mut() = b1;
            done
        },
        || format!("n1's traffic to n2 was not counted (before: {before:?}):\n{}", body.borrow()),
    );
    let body = body.into_inner();
    for family in [
        "foundation_lock_acquired_total",
        "foundation_cluster_phi",
        "foundation_cluster_heartbeat_rtt_seconds",
        "foundation_node_tasks",
        "foundation_cluster_peer_sent_bytes_total",
    ] {
        assert!(body.contains(&format!("# HELP {family} ")), "no help for {family}:\n{body}");
    }
    #[cfg(target_os = "linux")]
    assert!(body.contains("# TYPE process_cpu_seconds_total counter"), "{body}");
    assert_clean(&body);
    // n2's subscription delivered (at least `ready` and the 200 000 bytes), counted: its
    // channels' handles were taken after the recorder was in
    let body2 = scrape(&m2);
    let delivered = value(&body2, r#"foundation_channel_delivered_total{topic="big"}"#);
    assert!(delivered.is_some_and(|d| d >= 2.0), "{delivered:?} in\n{body2}");
    assert_clean(&body2);

    // n2 killed (kill -9) and started again: n1's counters for it never go back, and grow with
    // the new session (its totals cover every session with the peer)
    let before_kill = value(&scrape(&m1), sent).unwrap();
    n2.kill();
    wait(&n1, json!({"event": "member_down", "name": "n2"}));
    let n2 = start_node("n2", p2, &[p1], &["--cookie", "metrics"]);
    wait(&n2, json!({"event": "member_up", "name": "n1"}));
    let latest = std::cell::Cell::new(0.0);
    support::until(
        || {
            let now = value(&scrape(&m1), sent).unwrap();
            assert!(now >= before_kill, "n1's bytes to n2 went back from {before_kill} to {now}");
            latest.set(now);
            now > before_kill + 1000.0
        },
        || format!("n1's bytes to the restarted n2 did not grow past {before_kill}: {}", latest.get()),
    );
}

#[test]
fn cluster_metrics_merges_the_sketches_of_every_node_that_shares_them() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let metrics = |_: u8| format!("127.0.0.1:{}", free_port());
    let n1 = start_node("n1", p1, &[], &["--cookie", "merge", "--metrics", &metrics(1)]);
    let n2 = start_node("n2", p2, &[p1], &["--cookie", "merge", "--metrics", &metrics(2)]);
    let n3 = start_node("n3", p3, &[p1], &["--cookie", "merge"]);
    for (me, others) in [(&n1, ["n2", "n3"]), (&n2, ["n1", "n3"]), (&n3, ["n1", "n2"])] {
        for other in others {
            wait(me, json!({"event": "member_up", "name": other}));
        }
    }
    // n1 and n2 both ping n3 (every node watches every other at this size): the round trips to
    // n3 are one histogram on each of them, with the same labels
    let ask = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
            .args(["cluster", "metrics", "--json", "--timeout", "3s", "--cookie", "merge"])
            .args([
                "--prefix",
                "foundation_cluster_heartbeat_rtt_seconds",
                "--seeds",
                &format!("127.0.0.1:{p1}"),
            ])
            .output()
            .unwrap();
        // (no node's readers seen yet by the observer: it exits with failure; asked again)
        serde_json::from_slice::<support::Value>(&out.stdout).ok().filter(|_| out.status.success())
    };
    let to_n3 = |found: &support::Value| {
        found["histograms"].as_array().unwrap().iter().find(|h| h["labels"]["peer"] == "n3").cloned()
    };
    let found = std::cell::RefCell::new(json!(null));
    support::until(
        || {
            let Some(answer) = ask() else { return false };
            *found.borrow_mut() = answer;
            let found = found.borrow();
            to_n3(&found).is_some_and(|h| h["nodes"].as_object().unwrap().len() == 2)
                && found["answered"] == json!(["n1", "n2"])
                && found["unshared"] == json!(["n3"])
        },
        || format!("not yet both n1's and n2's round trips to n3, n3 sharing none: {:#}", found.borrow()),
    );
    let h = to_n3(&found.into_inner()).unwrap();
    let (cluster, nodes) = (&h["cluster"], h["nodes"].as_object().unwrap());
    let sum = |field: &str| nodes.values().map(|n| n[field].as_u64().unwrap()).sum::<u64>();
    // the merge holds every sample of both nodes' windows ...
    assert_eq!(cluster["count"].as_u64().unwrap(), sum("count"), "{h:#}");
    assert_eq!(cluster["total_count"].as_u64().unwrap(), sum("total_count"), "{h:#}");
    // ... and its median lies between theirs (each within 1 % of its exact value)
    let medians: Vec<f64> = nodes.values().map(|n| n["p50"].as_f64().unwrap()).collect();
    let (lo, hi) =
        (medians.iter().copied().fold(f64::INFINITY, f64::min), medians.iter().copied().fold(0.0, f64::max));
    let p50 = cluster["p50"].as_f64().unwrap();
    assert!(
        p50 >= lo * 0.98 && p50 <= hi * 1.02,
        "merged p50 {p50} not between the nodes' {medians:?}: {h:#}"
    );
}

/// The metric names a PromQL expression reads: identifiers that are not functions, keywords,
/// label names (inside `{…}` or a `by (…)`-like clause), ranges or numbers.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    // After a grouping keyword, the next parenthesis holds label names.
    let mut labels_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if labels_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                labels_next = false;
            }
            '0'..='9' | '.' => {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let call = j < chars.len() && chars[j] == '(';
                match word.as_str() {
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => labels_next = true,
                    "bool" | "and" | "or" | "unless" | "offset" => {}
                    // Aggregations, also written `sum by (…) (…)`.
                    "sum" | "min" | "max" | "avg" | "count" | "stddev" | "stdvar" | "group" | "topk"
                    | "bottomk" | "quantile" | "count_values" => {}
                    _ if call => {}
                    _ => names.push(word),
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every expression of the alerting rules file (`expr: …` or a `expr: |` block).
fn rule_expressions(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let indent = line.len() - line.trim_start().len();
            if rest.trim() == "|" {
                let mut block = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty()
                        || lines[i + 1].len() - lines[i + 1].trim_start().len() > indent)
                {
                    i += 1;
                    block.push(lines[i].trim());
                }
                exprs.push(block.join(" "));
            } else {
                exprs.push(rest.trim().to_string());
            }
        }
        i += 1;
    }
    exprs
}

/// `promtool check rules` on a file: its complaints, or `None` without promtool (when allowed).
fn promtool_check_rules(path: &std::path::Path) -> Option<(bool, String)> {
    promtool_rules("check", path)
}

/// `promtool ACTION rules FILE` (`check`, or `test` for a rules unit-test file): whether it
/// passed and what it said, or `None` without promtool (when allowed).
fn promtool_rules(action: &str, path: &std::path::Path) -> Option<(bool, String)> {
    let required = std::env::var("CI_PROMTOOL_TEST").is_ok_and(|v| v == "required");
    match std::process::Command::new("promtool").args([action, "rules"]).arg(path).output() {
        Ok(out) => Some((
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )),
        Err(e) if !required => {
            eprintln!("promtool could not run ({e}): the rules' syntax was not checked");
            None
        }
        Err(e) => panic!("promtool is required (CI_PROMTOOL_TEST=required) but could not run: {e}"),
    }
}

#[test]
fn the_grafana_dashboard_and_alert_rules_query_only_metrics_a_node_exports_and_pass_promtool() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring");
    // What a node exports: every catalogued family (a histogram as a summary: its quantiles,
    // `_count` and `_sum`), the `process_*` families, and Prometheus' own `up` per target.
    let mut exported: BTreeSet<String> = BTreeSet::from(["up".to_string()]);
    for family in families() {
        exported.insert(family.name.to_string());
        if family.kind == MetricKind::Histogram {
            exported.insert(format!("{}_count", family.name));
            exported.insert(format!("{}_sum", family.name));
        }
    }
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    for line in telemetry.render().lines().filter_map(|l| l.strip_prefix("# TYPE process_")) {
        exported.insert(format!("process_{}", line.split(' ').next().unwrap()));
    }

    // The alerting rules: valid for promtool, and reading only exported metrics.
    let rules_path = docs.join("alerts.yml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let rule_exprs = rule_expressions(&rules);
    assert!(rule_exprs.len() >= 10, "{rule_exprs:?}");
    if let Some((ok, said)) = promtool_check_rules(&rules_path) {
        assert!(ok, "promtool check rules {}:\n{said}", rules_path.display());
    }
    // And they fire when they should: made-up series in a promtool unit test (a node down, a
    // fast SLO burn summed over two nodes, a 429 storm on one model and not another).
    let tests_path = docs.join("alerts-test.yml");
    if let Some((ok, said)) = promtool_rules("test", &tests_path) {
        assert!(ok, "promtool test rules {}:\n{said}", tests_path.display());
    }

    // The dashboard: JSON with a data source variable, every panel with queries; its queries
    // are valid PromQL (checked by promtool as recording rules, variables filled in).
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap()).unwrap();
    let mut dashboard_exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("no targets in {panel}"));
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            dashboard_exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(dashboard_exprs.len() >= 20, "{dashboard_exprs:?}");
    let as_rules = dashboard_exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let filled = e.replace("$instance", ".*").replace("$job", "foundation");
            format!(
                "      - record: dashboard:query_{i}\n        expr: {}\n",
                serde_json::to_string(&filled).unwrap()
            )
        })
        .collect::<String>();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, format!("groups:\n  - name: dashboard\n    rules:\n{as_rules}")).unwrap();
    if let Some((ok, said)) = promtool_check_rules(&path) {
        assert!(ok, "a dashboard query is not valid PromQL:\n{said}");
    }

    for expr in rule_exprs.iter().chain(&dashboard_exprs) {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in `{expr}`");
        for name in names {
            assert!(exported.contains(&name), "`{name}` (in `{expr}`) is not a metric a node exports");
        }
    }
    // The extractor itself: functions, keywords, labels and numbers are not metrics.
    assert_eq!(
        metric_names(r#"sum by (a, b) (rate(x_total{c="d"}[5m])) / clamp_min(y, 1e-9) > 0.1 and on (a) z"#),
        ["x_total", "y", "z"]
    );
}

#[test]
fn declared_objectives_are_judged_exported_alerted_on_and_shown_on_the_dashboard() {
    // Two objectives over the heartbeats' round trips (a running cluster always records them):
    // one no round trip meets (over 1 ns is bad), one every round trip meets (up to 60 s).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slos.toml");
    std::fs::write(
        &config,
        "[telemetry.slos.impossible]\nhistogram = \"foundation_cluster_heartbeat_rtt_seconds\"\n\
         threshold = 0.000000001\nobjective = 0.99\n\n\
         [telemetry.slos.relaxed]\nhistogram = \"foundation_cluster_heartbeat_rtt_seconds\"\n\
         threshold = 60.0\nobjective = 0.999\nlabels = [\"peer=n2\"]\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let (p1, p2) = (free_port(), free_port());
    let (metrics, web) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let n1 = start_node("n1", p1, &[], &["--config", &config, "--metrics", &metrics, "--dashboard", &web]);
    let _n2 = start_node("n2", p2, &[p1], &[]);
    wait(&n1, json!({"event": "member_up", "name": "n2"}));

    let bad = r#"foundation_slo_events_total{slo="impossible",outcome="bad"}"#;
    let good = r#"foundation_slo_events_total{slo="relaxed",outcome="good"}"#;
    let last = std::cell::RefCell::new(String::new());
    support::until(
        || {
            let text = scrape(&metrics);
            let judged =
                value(&text, bad).is_some_and(|n| n >= 3.0) && value(&text, good).is_some_and(|n| n >= 3.0);
            *last.borrow_mut() = text;
            judged
        },
        || format!("the objectives never judged three heartbeats: {}", last.borrow()),
    );
    let text = last.into_inner();
    // Every sample bad: 1 / (1 - 0.99) = 100 budgets; every sample good: 0.
    let burn = |slo: &str, window: &str| {
        value(&text, &format!(r#"foundation_slo_burn_rate{{slo="{slo}",window="{window}"}}"#)).unwrap()
    };
    assert!((burn("impossible", "5m") - 100.0).abs() < 1e-6, "{text}");
    assert!((burn("impossible", "6h") - 100.0).abs() < 1e-6, "{text}");
    assert_eq!(burn("relaxed", "1h"), 0.0, "{text}");
    assert_eq!(value(&text, r#"foundation_slo_objective{slo="relaxed"}"#), Some(0.999), "{text}");
    assert_eq!(value(&text, r#"foundation_slo_events_total{slo="relaxed",outcome="bad"}"#), Some(0.0));
    assert_clean(&text);

    // The dashboard shows them, with the same counts as far as it has seen.
    let (status, body) = support::request(&web, "GET", "/api/slos", "");
    assert_eq!(status, 200, "{body}");
    let slos: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = slos.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["impossible", "relaxed"], "{slos}");
    assert!(slos[0]["bad"].as_u64() >= Some(3) && slos[0]["good"] == 0, "{slos}");
    assert_eq!(slos[0]["burn_rates"][0][0], "5m", "{slos}");
    assert!((slos[0]["burn_rates"][0][1].as_f64().unwrap() - 100.0).abs() < 1e-6, "{slos}");

    // A malformed objective is refused before anything starts, naming the key.
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "[telemetry.slos.x]\nhistogram = \"not a metric\"\nobjective = 1.5\n")
        .unwrap();
    let out = support::foundation("config", &["check", "--config", &bad_config.display().to_string()]);
    let said = support::stderr(&out) + &support::stdout(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("telemetry.slos.x.objective") && said.contains("strictly between 0 and 1"),
        "{said}"
    );
    assert!(said.contains("telemetry.slos.x.histogram"), "{said}");
}

#[test]
fn a_baseline_recorded_from_the_cluster_flags_a_later_regression_and_refuses_garbage() {
    let (p1, p2) = (free_port(), free_port());
    let (m1, m2) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let n1 = start_node("n1", p1, &[], &["--cookie", "baseline", "--metrics", &m1]);
    let _n2 = start_node("n2", p2, &[p1], &["--cookie", "baseline", "--metrics", &m2]);
    wait(&n1, json!({"event": "member_up", "name": "n2"}));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baseline.json").display().to_string();
    let seeds = format!("127.0.0.1:{p1}");
    let reach =
        ["--seeds", seeds.as_str(), "--cookie", "baseline", "--prefix", "foundation_cluster_heartbeat"];

    // Recorded once the heartbeats' round trips have a few samples on both nodes.
    let rtt = r#"foundation_cluster_heartbeat_rtt_seconds{peer="n2"}"#;
    let last = std::cell::RefCell::new(String::new());
    support::until(
        || {
            let out =
                support::foundation("baseline", &[&["record", "--out", &file][..], &reach[..]].concat());
            *last.borrow_mut() = format!("{out:?}");
            let Ok(text) = std::fs::read_to_string(&file) else { return false };
            let baseline: serde_json::Value = serde_json::from_str(&text).unwrap();
            out.status.success()
                && baseline["operations"].as_array().unwrap().iter().any(|o| {
                    o["name"] == "foundation_cluster_heartbeat_rtt_seconds"
                        && o["labels"]["peer"] == "n2"
                        && o["count"].as_u64() >= Some(3)
                })
        },
        || format!("no baseline with heartbeats recorded: {}", last.borrow()),
    );
    let compare = |baseline: &str, extra: &[&str]| {
        let args = [&["compare", "--baseline", baseline, "--json"][..], &reach[..], extra].concat();
        support::foundation("baseline", &args)
    };

    // The same cluster against its own baseline, with room for the machine's noise: no regression.
    let same = compare(&file, &["--tolerance", "100", "--min-samples", "1"]);
    assert!(same.status.success(), "{same:?}");
    let report: serde_json::Value = serde_json::from_str(&support::stdout(&same)).unwrap();
    assert_eq!(report["regressions"], 0, "{report}");

    // A baseline whose round trips were a million times faster: this run regressed, and says so.
    let mut faster: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for op in faster["operations"].as_array_mut().unwrap() {
        for p in ["p50", "p90", "p99", "max"] {
            op[p] = json!(op[p].as_f64().unwrap() / 1e6);
        }
    }
    let faster_file = dir.path().join("faster.json").display().to_string();
    std::fs::write(&faster_file, faster.to_string()).unwrap();
    let worse = compare(&faster_file, &["--min-delta", "0", "--min-samples", "1"]);
    assert_eq!(worse.status.code(), Some(1), "{worse:?}");
    let report: serde_json::Value = serde_json::from_str(&support::stdout(&worse)).unwrap();
    let regressed: Vec<&str> = report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["verdict"] == "regressed")
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    assert!(regressed.contains(&rtt), "{report}");

    // Nothing judged (every operation under the samples asked for): exit 2, not a pass.
    let unjudged = compare(&file, &["--min-samples", "100000000"]);
    assert_eq!(unjudged.status.code(), Some(2), "{unjudged:?}");
    assert!(support::stderr(&unjudged).contains("no operation could be judged"), "{unjudged:?}");

    // Garbage, or a file that is not there: exit 2 with why, before reaching the cluster.
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"version\": 1, \"operations\": 7}").unwrap();
    let refused = compare(&garbage.display().to_string(), &[]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        support::stderr(&refused).contains("is not a baseline `foundation baseline record` wrote"),
        "{refused:?}"
    );
    let absent = compare("/nonexistent/baseline.json", &[]);
    assert_eq!(absent.status.code(), Some(2), "{absent:?}");
    assert!(
        support::stderr(&absent).contains("cannot read the baseline /nonexistent/baseline.json"),
        "{absent:?}"
    );
}
