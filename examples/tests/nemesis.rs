//! The nemesis, short form: five `foundation node` processes on test hosts under the fixed
//! schedule of seed 38 (40 s of kills, freezes, restarts with and without seeds and under new
//! names, and packet-drop partitions of every kind) while their clients record a history; the
//! checker must find no anomaly. Seed 38 found the bug this guards against: a node restarted
//! under a new name, alone until discovery found it the cluster, made a majority of its own
//! (two lock holders at once, a smaller term after a larger one); `cluster.expected_nodes`
//! fixed it. The long form is `foundation nemesis --duration 10m` (docs/BENCHMARKS.md). Skips,
//! saying why, where namespaces cannot be made, unless `CI_NETNS_TEST=required`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_cluster::testkit::TestkitError;
use foundation_cluster::testkit::nemesis::{self, NemesisConfig};
use foundation_cluster::testkit::netns::required;

#[test]
fn forty_seconds_of_faults_leave_no_anomaly_in_the_history() {
    let mut config = NemesisConfig::new(env!("CARGO_BIN_EXE_foundation"), 5, 38, Duration::from_secs(40));
    config.verbose = true;
    let dir = tempfile::tempdir().unwrap();
    config.dir = Some(dir.path().join("run"));
    let report = match nemesis::run(&config) {
        Ok(report) => report,
        Err(e @ TestkitError::Network { .. }) if !required() => {
            eprintln!("skipped: {e} (set CI_NETNS_TEST=required to make this a failure)");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    eprintln!("{report}");
    assert!(report.anomalies.is_empty(), "{report}");
    assert!(report.to_string().ends_with("anomalies: 0"));
    // The schedule ran (every kind of fault of seed 38) and every client did work under it.
    for kind in ["kill", "stop", "restart-seeds", "restart-seedless", "restart-renamed", "isolate"] {
        assert!(report.faults.get(kind).is_some_and(|n| *n > 0), "no {kind} in {report}");
    }
    assert!(report.faults.keys().filter(|k| k.starts_with("partition")).count() >= 3, "{report}");
    for op in [
        "lock_acquired",
        "lock_act",
        "fenced_write accepted",
        "leader",
        "singleton_act",
        "crdt_increment acked",
    ] {
        assert!(report.counts.get(op).is_some_and(|n| *n > 0), "no {op} in {report}");
    }
    // Every node read both counters at the end (5 nodes, 2 counters), and they agreed.
    assert_eq!(report.counts.get("crdt_final"), Some(&10), "{report}");
}
