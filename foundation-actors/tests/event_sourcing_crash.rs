//! `kill -9` during writes: a real writer process (this test binary, re-run as a child) executes
//! commands on aggregates in a SQLite store and prints each acknowledgement; the parent kills
//! it mid-stream, then checks the file: every acknowledged event is there, no stream has a gap
//! or a half-written command, every payload reads back, snapshots agree with the journal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foundation_actors::aggregates::{Aggregate, AggregateConfig, Aggregates};
use foundation_core::events::{EventQuery, EventStore, SqliteOptions};
use serde::{Deserialize, Serialize};

/// Set (to the database path) in the child process only.
const CHILD_DB: &str = "ES_CRASH_TEST_DB";
const IDS: usize = 8;

#[derive(Default, Serialize, Deserialize)]
struct Tally {
    total: u64,
    batches: u64,
}

#[derive(Clone, Serialize, Deserialize)]
enum Ev {
    /// Each command writes two events, so a half-written command would show as an odd count.
    Counted {
        n: u64,
        pad: String,
    },
    Closed {
        batch: u64,
    },
}

impl Aggregate for Tally {
    const KIND: &'static str = "tally";
    type Command = u64;
    type Event = Ev;
    type Error = String;

    fn handle(&self, n: &u64) -> Result<Vec<Ev>, String> {
        Ok(vec![Ev::Counted { n: *n, pad: "p".repeat(64) }, Ev::Closed { batch: self.batches + 1 }])
    }

    fn apply(&mut self, event: &Ev) {
        match event {
            Ev::Counted { n, .. } => self.total += n,
            Ev::Closed { batch } => self.batches = *batch,
        }
    }
}

/// The child: writes until killed, printing `ack ID VERSION` after each acknowledged command.
#[test]
fn crash_writer_child() {
    let Ok(path) = std::env::var(CHILD_DB) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = EventStore::open_sqlite(SqliteOptions::new(path)).await.unwrap();
        let tallies =
            Aggregates::<Tally>::new(store, AggregateConfig { snapshot_every: 10, ..Default::default() });
        let writers: Vec<_> = (0..IDS)
            .map(|w| {
                let tallies = tallies.clone();
                tokio::spawn(async move {
                    for _ in 0.. {
                        let done = tallies.execute(&format!("t{w}"), 1).await.unwrap();
                        use std::io::Write;
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack t{w} {}", done.version).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
    });
}

#[test]
fn a_kill_during_writes_loses_no_acknowledged_event_and_leaves_no_half_command() {
    if std::env::var(CHILD_DB).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_writer_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Let it write a good number of commands, then kill it (SIGKILL) in the middle of writing.
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count < 400 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the writer stopped acknowledging");
        if let Some(rest) = line.strip_prefix("ack ") {
            let (id, version) = rest.split_once(' ').unwrap();
            let version: u64 = version.parse().unwrap();
            let e = acked.entry(id.to_string()).or_default();
            *e = (*e).max(version);
            count += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    // Acknowledgements printed before the kill are still in the pipe.
    for line in rx.try_iter() {
        if let Some(rest) = line.strip_prefix("ack ") {
            let (id, version) = rest.split_once(' ').unwrap();
            let e = acked.entry(id.to_string()).or_default();
            *e = (*e).max(version.parse().unwrap());
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let store =
            EventStore::open_sqlite(SqliteOptions::new(&path)).await.expect("the file opens after the kill");
        let tallies = Aggregates::<Tally>::new(
            store.clone(),
            AggregateConfig { snapshot_every: 0, ..Default::default() },
        );
        for w in 0..IDS {
            let id = format!("t{w}");
            let stream = format!("tally-{id}");
            let events = store.read_stream(&stream, 0, 100_000).await.unwrap();
            let versions: Vec<u64> = events.iter().map(|e| e.stream.as_ref().unwrap().version).collect();
            assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "{stream} has a gap");
            assert_eq!(versions.len() % 2, 0, "{stream} ends with half a command");
            for e in &events {
                serde_json::from_value::<Ev>(e.payload.clone())
                    .unwrap_or_else(|err| panic!("event {} unreadable: {err}", e.id));
            }
            let acked_version = acked.get(&id).copied().unwrap_or(0);
            assert!(
                versions.len() as u64 >= acked_version,
                "{stream}: version {acked_version} was acknowledged but only {} events survived",
                versions.len()
            );
            // Rebuilding from scratch and from the child's snapshot give the same state.
            let (total, version) = tallies.read(&id, |t, v| (t.total, v)).await.unwrap();
            assert_eq!((total, version), (versions.len() as u64 / 2, versions.len() as u64));
            if let Some(snapshot) = store.load_snapshot(&stream).await.unwrap() {
                assert!(snapshot.version <= version && snapshot.version % 2 == 0);
                assert_eq!(snapshot.state["total"].as_u64(), Some(snapshot.version / 2));
            }
        }
        assert!(acked.values().sum::<u64>() >= 800, "acknowledged versions: {acked:?}");
        // Nothing but these streams' events is in the file.
        let all = store.query(EventQuery::new().limit(100_000)).await.unwrap();
        assert!(all.iter().all(|e| e.stream.is_some()));
    });
}
