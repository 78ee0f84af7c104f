//! The agent team example, run as the user runs it: three real node processes, a worker node
//! SIGKILLed partway through the batch, and every job still completed. (`cargo test --test
//! agent_team` alone does not rebuild the example: build it with
//! `cargo build -p foundation-examples --example agent_team`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Only reached when something is stuck (the run itself takes a few seconds).
const DEADLINE: Duration = Duration::from_secs(120);

fn example_binary(name: &str) -> std::path::PathBuf {
    // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples").join(name)
}

/// Runs the example to its end (killed past the deadline): its exit status and standard output.
fn run_example(args: &[&str]) -> (std::process::ExitStatus, String) {
    let path = example_binary("agent_team");
    let mut child = Command::new(&path).args(args).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (build it: cargo build -p foundation-examples --example agent_team)",
            path.display()
        )
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            // Its worker nodes exit when their standard input (held by the example) closes.
            child.kill().unwrap();
            panic!("the example did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

/// The number that ends `prefix` in the line starting with it (`prefix: 3 (...)` gives 3).
fn count_after(out: &str, prefix: &str) -> (usize, String) {
    let line =
        out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in:\n{out}"));
    let count = line[prefix.len()..].split_whitespace().next().and_then(|n| n.parse().ok());
    (count.unwrap_or_else(|| panic!("no count in `{line}`")), line.to_string())
}

#[test]
fn every_job_completes_when_a_worker_node_is_killed_mid_run() {
    let (status, out) = run_example(&["--kill-after", "3"]);
    assert!(status.success(), "the example failed ({status}):\n{out}");

    // Both worker nodes were found across the cluster and answered a direct ask.
    for worker in ["worker-n2", "worker-n3"] {
        assert!(
            out.contains(&format!("found {worker} (remote: true); asked it directly: 2 + 2 = 4")),
            "{out}"
        );
    }

    // n3 was killed mid-run: after it had started jobs, and with jobs still finishing after.
    let killed_at =
        out.find("n1: SIGKILL n3 while it works").unwrap_or_else(|| panic!("n3 not killed:\n{out}"));
    let (before, after) = out.split_at(killed_at);
    assert_eq!(before.matches("[n3] n3: solving job").count(), 3, "{out}");
    assert!(before.contains("planner: 12 jobs"), "{out}");
    assert!(after.contains(" done on n2: "), "no job finished after the kill:\n{out}");
    assert!(out.contains("n3 killed mid-run: yes"), "{out}");

    // Every job completed; at least one lost with n3 was announced again and finished on n2.
    let (done, line) = count_after(&out, "jobs done: ");
    assert_eq!(done, 12, "{line}");
    assert!(line.starts_with("jobs done: 12 of 12"), "{line}");
    let (reannounced, line) = count_after(&out, "re-announced after their node was lost: ");
    assert!(reannounced >= 1, "{line}\n{out}");
    assert!(line.contains("done on n2") && !line.contains("done on n3"), "{line}");
    assert!(
        after.contains("its winner was lost (n3: ") && after.contains("announced again, done on n2"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("all jobs completed"), "{out}");
}
