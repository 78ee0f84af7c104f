//! The optimization service as users drive it: node processes serving with `--workers`, runs
//! submitted from outside (an observer in this process, and the `foundation optimize` command):
//! two runs of equal priority share the workers evenly; the command line submits, follows,
//! stops and fetches runs and says no clearly; a node without a run's model refuses its tasks
//! and the others do them; a node three times slower does proportionally fewer tasks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

mod support;

use std::time::{Duration, Instant};

use dspex_optimizer::distributed::{Optimizations, RunSpec, Status};
use foundation_cluster::testkit::{NodeProcess, free_port_range};
use support::{foundation, spec_file, start_node, stderr, stdout};

/// Three nodes serving with `workers` workers each and the simulated model at `latency_ms`
/// (plus `extra` options for node `i`).
fn serving(workers: &str, latency_ms: &str, extra: impl Fn(u16) -> Vec<String>) -> (u16, Vec<NodeProcess>) {
    let base = free_port_range(3);
    let nodes = (0..3u16)
        .map(|i| {
            let seeds: Vec<u16> = (0..i).map(|j| base + j).collect();
            let mut args: Vec<String> =
                ["--workers", workers, "--latency-ms", latency_ms].iter().map(|s| s.to_string()).collect();
            args.extend(extra(i));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            start_node(&format!("n{}", i + 1), base + i, &seeds, &args)
        })
        .collect();
    (base, nodes)
}

/// A sample of two runs' progress: (time, evaluations done, tasks queued) of each.
type Sample = (Duration, [usize; 2], [usize; 2]);

#[test]
fn two_equal_priority_runs_get_evaluations_within_ten_percent_over_every_ten_seconds() {
    let (base, _nodes) = serving("2", "40", |_| Vec::new());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let samples: Vec<Sample> = runtime.block_on(async {
        let observer = support::observer("fair", base).await;
        // Submitted together: 13 candidates × 100 validation questions each.
        let a = Optimizations::submit_within(
            &observer,
            RunSpec::questions("fair-a", 7, 10),
            Duration::from_secs(60),
        );
        let b = Optimizations::submit_within(
            &observer,
            RunSpec::questions("fair-b", 7, 10),
            Duration::from_secs(60),
        );
        let (a, b) = tokio::join!(a, b);
        let (a, b) = (a.unwrap(), b.unwrap());
        let started = Instant::now();
        let mut samples = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Ok(runs) = Optimizations::list(&observer).await else { continue };
            let find = |id: &str| runs.iter().find(|s| s.run_id == id).cloned();
            let (Some(sa), Some(sb)): (Option<Status>, Option<Status>) = (find(a.id()), find(b.id())) else {
                continue;
            };
            samples.push((started.elapsed(), [sa.evaluations.1, sb.evaluations.1], [sa.queued, sb.queued]));
            if sa.finished() && sb.finished() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(180), "the runs did not finish: {samples:?}");
        }
        observer.shutdown().await;
        samples
    });
    // Every 10-second window (from each sample) during which both runs had tasks queued.
    let both_have_work = |s: &Sample| s.2[0] > 0 && s.2[1] > 0;
    let mut windows = 0;
    let mut worst = 0.0f64;
    for (i, start) in samples.iter().enumerate() {
        let Some(j) =
            samples[i..].iter().position(|s| s.0 >= start.0 + Duration::from_secs(10)).map(|k| i + k)
        else {
            break;
        };
        if !samples[i..=j].iter().all(both_have_work) {
            continue;
        }
        let end = &samples[j];
        let (da, db) = (end.1[0] - start.1[0], end.1[1] - start.1[1]);
        let most = da.max(db) as f64;
        assert!(
            (da as f64 - db as f64).abs() <= 0.1 * most,
            "window {:?}..{:?}: fair-a {da}, fair-b {db} evaluations\n{samples:?}",
            start.0,
            end.0
        );
        windows += 1;
        worst = worst.max((da as f64 - db as f64).abs() / most.max(1.0));
    }
    eprintln!("{windows} ten-second windows, largest difference {:.1} %", worst * 100.0);
    assert!(windows >= 4, "too few 10-second windows with both runs at work ({windows}): {samples:?}");
}

#[test]
fn the_command_line_submits_follows_stops_and_fetches_runs_and_says_no_clearly() {
    // n3 also serves a model named `special` (an endpoint no one answers at: its calls fail,
    // and score 0); n1 and n2 do not have it.
    let (base, _nodes) = serving("2", "5", |i| match i {
        2 => vec!["--lm-url".into(), "http://127.0.0.1:9/v1".into(), "--lm-model".into(), "special".into()],
        _ => Vec::new(),
    });
    let seeds = format!("127.0.0.1:{base}");
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(dir.path(), "cli-run", "simulated", 7);

    // Submitted, and submitted again (the same run); another spec under the name is refused.
    let submitted = foundation("optimize", &["submit", "--spec", &spec, "--seeds", &seeds]);
    assert!(submitted.status.success(), "{submitted:?}");
    assert!(
        stdout(&submitted).contains("submitted run cli-run (5 candidates × 50 validation examples)"),
        "{submitted:?}"
    );
    assert!(foundation("optimize", &["submit", "--spec", &spec, "--seeds", &seeds]).status.success());
    let other = spec_file(dir.path(), "cli-run", "simulated", 8);
    let taken = foundation("optimize", &["submit", "--spec", &other, "--seeds", &seeds]);
    assert_eq!(taken.status.code(), Some(1), "{taken:?}");
    assert!(stderr(&taken).contains("a run named `cli-run` already exists with another spec"), "{taken:?}");

    // Followed to its end (JSON: one status per line, the last finished).
    let watched = foundation("optimize", &["watch", "cli-run", "--seeds", &seeds, "--json"]);
    assert!(watched.status.success(), "{watched:?}");
    let last: serde_json::Value = serde_json::from_str(stdout(&watched).lines().last().unwrap()).unwrap();
    assert_eq!(last["status"]["evaluations"], serde_json::json!([250, 250]), "{last}");
    let listed = foundation("optimize", &["list", "--seeds", &seeds]);
    assert!(stdout(&listed).contains("cli-run  finished  250/250 evaluations"), "{listed:?}");

    // Its best program, saved and run.
    let best = dir.path().join("best.json").display().to_string();
    let result = foundation("optimize", &["result", "cli-run", "--seeds", &seeds, "--out", &best]);
    assert!(result.status.success(), "{result:?}");
    let predicted = foundation("predict", &["--program", &best, "--input", "question=Who wrote Hamlet?"]);
    assert!(predicted.status.success(), "{predicted:?}");

    // No: a finished run cannot be stopped; no such run; a spec that does not read (before
    // any cluster is reached); no cluster at the address.
    let stop = foundation("optimize", &["stop", "cli-run", "--seeds", &seeds]);
    assert_eq!(stop.status.code(), Some(1), "{stop:?}");
    assert!(stderr(&stop).contains("run `cli-run` is finished"), "{stop:?}");
    let missing = foundation("optimize", &["status", "nope", "--seeds", &seeds]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(stderr(&missing).contains("no run `nope`"), "{missing:?}");
    let unread = foundation("optimize", &["submit", "--spec", "/nonexistent/run.toml", "--seeds", &seeds]);
    assert_eq!(unread.status.code(), Some(2), "{unread:?}");
    assert!(stderr(&unread).contains("/nonexistent/run.toml"), "{unread:?}");
    let huge = spec_file(dir.path(), "huge-run", "simulated", 7);
    let text = std::fs::read_to_string(&huge).unwrap().replace("candidates = 2", "candidates = 100000000");
    std::fs::write(&huge, text).unwrap();
    let refused = foundation("optimize", &["submit", "--spec", &huge, "--seeds", &seeds]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(stderr(&refused).contains("100000000 candidates, at most 1000"), "{refused:?}");
    let nobody = format!("127.0.0.1:{}", free_port_range(1));
    let unreachable = foundation("optimize", &["list", "--seeds", &nobody, "--timeout", "2s"]);
    assert_eq!(unreachable.status.code(), Some(2), "{unreachable:?}");

    // A run of a model only n3 has: n1 and n2 refuse its tasks (named in its status), n3 does
    // them all.
    let special = spec_file(dir.path(), "special-run", "special", 7);
    let text = std::fs::read_to_string(&special).unwrap().replace("candidates = 2", "candidates = 0");
    std::fs::write(&special, text).unwrap();
    assert!(foundation("optimize", &["submit", "--spec", &special, "--seeds", &seeds]).status.success());
    let watched = foundation("optimize", &["watch", "special-run", "--seeds", &seeds, "--json"]);
    assert!(watched.status.success(), "{watched:?}");
    let status = foundation("optimize", &["status", "special-run", "--seeds", &seeds, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let status = &status["status"];
    assert_eq!(status["refused_by"], serde_json::json!(["n1", "n2"]), "{status}");
    let by_node = status["result"]["tasks_by_node"].as_object().unwrap();
    assert_eq!(by_node.keys().collect::<Vec<_>>(), ["n3"], "{status}");

    // Stopped and resumed while it runs (a larger run).
    let long = spec_file(dir.path(), "long-run", "simulated", 9);
    let text = std::fs::read_to_string(&long).unwrap().replace("candidates = 2", "candidates = 12");
    std::fs::write(&long, text).unwrap();
    assert!(foundation("optimize", &["submit", "--spec", &long, "--seeds", &seeds]).status.success());
    assert!(foundation("optimize", &["stop", "long-run", "--seeds", &seeds]).status.success());
    let stopped = foundation("optimize", &["watch", "long-run", "--seeds", &seeds]);
    assert_eq!(stopped.status.code(), Some(1), "a watch of a stopped run ends with it: {stopped:?}");
    assert!(stdout(&stopped).contains("long-run  stopped"), "{stopped:?}");
    assert!(foundation("optimize", &["resume", "long-run", "--seeds", &seeds]).status.success());
    let finished = foundation("optimize", &["watch", "long-run", "--seeds", &seeds]);
    assert!(finished.status.success(), "{finished:?}");
    assert!(stdout(&finished).contains("long-run  finished  750/750 evaluations"), "{finished:?}");
}

#[test]
fn of_two_nodes_the_one_three_times_slower_records_proportionally_fewer_tasks() {
    let base = free_port_range(2);
    let _fast = start_node("n1", base, &[], &["--workers", "4", "--latency-ms", "15"]);
    let _slow = start_node("n2", base + 1, &[base], &["--workers", "4", "--latency-ms", "45"]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let result = runtime.block_on(async {
        let observer = support::observer("capacity", base).await;
        // 9 candidates × 100 questions in batches of 5: 180 evaluation tasks.
        let run = Optimizations::submit_within(
            &observer,
            RunSpec::questions("capacity", 7, 6),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let result = run.wait(Duration::from_secs(180)).await.unwrap();
        observer.shutdown().await;
        result
    });
    let (fast, slow) = (result.tasks_by_node["n1"] as f64, result.tasks_by_node["n2"] as f64);
    let share = slow / (fast + slow);
    eprintln!(
        "tasks: n1 (fast) {fast}, n2 (3× slower) {slow}: the slow one's share {:.0} % (ideal 25 %)",
        share * 100.0
    );
    // Pulled by speed, the slow node does about a quarter; it does clearly less than half.
    assert!(
        share > 0.05 && share < 0.4,
        "the slow node's share of tasks: {share} ({:?})",
        result.tasks_by_node
    );
}
