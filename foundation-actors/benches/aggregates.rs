//! Rebuilding an aggregate with 10 000 events in a SQLite journal: from its latest snapshot (50
//! events after it) against the baseline of folding the whole journal.
//! Run with `cargo bench -p foundation-actors --bench aggregates`; figures in docs/BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use foundation_actors::aggregates::{Aggregate, AggregateConfig, Aggregates};
use foundation_core::events::{EventStore, SqliteOptions};
use serde::{Deserialize, Serialize};

const EVENTS: u64 = 10_000;

#[derive(Default, Serialize, Deserialize)]
struct Ledger {
    balance: i64,
    entries: u64,
    last_memo: String,
}

#[derive(Clone, Serialize, Deserialize)]
enum Ev {
    Posted { amount: i64, memo: String },
}

impl Aggregate for Ledger {
    const KIND: &'static str = "ledger";
    type Command = i64;
    type Event = Ev;
    type Error = String;
    fn handle(&self, amount: &i64) -> Result<Vec<Ev>, String> {
        Ok(vec![Ev::Posted { amount: *amount, memo: format!("entry {}", self.entries + 1) }])
    }
    fn apply(&mut self, Ev::Posted { amount, memo }: &Ev) {
        self.balance += amount;
        self.entries += 1;
        self.last_memo.clone_from(memo);
    }
}

fn rebuild(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(EventStore::open_sqlite(SqliteOptions::new(dir.path().join("a.db")))).unwrap();
    // Written with a snapshot every 1 000 events, then 50 more: the last snapshot is at 10 000.
    let writer = Aggregates::<Ledger>::new(
        store.clone(),
        AggregateConfig { snapshot_every: 1_000, ..Default::default() },
    );
    rt.block_on(async {
        for i in 0..EVENTS + 50 {
            writer.execute("acct", (i % 7) as i64 - 3).await.unwrap();
        }
    });
    writer.passivate_all();

    let mut group = c.benchmark_group("aggregate_rebuild_10k_events");
    group.sample_size(20);
    let with_snapshot = Aggregates::<Ledger>::new(store.clone(), AggregateConfig::default());
    group.bench_function(BenchmarkId::new("sqlite", "from_snapshot"), |b| {
        b.iter(|| {
            let entries = rt.block_on(with_snapshot.read("acct", |l, _| l.entries)).unwrap();
            assert_eq!(entries, EVENTS + 50);
            with_snapshot.passivate_all();
            black_box(entries);
        })
    });
    // The baseline: the same journal under a stream name whose snapshot is absent.
    rt.block_on(async {
        let copy = store.read_stream("ledger-acct", 0, 100_000).await.unwrap();
        let events = copy
            .into_iter()
            .map(|e| foundation_core::events::NewEvent::new(e.event_type, e.payload))
            .collect::<Vec<_>>();
        for chunk in events.chunks(1_000) {
            store
                .append_to_stream(
                    "ledger-nosnap",
                    foundation_core::events::ExpectedVersion::Any,
                    chunk.to_vec(),
                )
                .await
                .unwrap();
        }
    });
    let without =
        Aggregates::<Ledger>::new(store.clone(), AggregateConfig { snapshot_every: 0, ..Default::default() });
    group.bench_function(BenchmarkId::new("sqlite", "whole_journal"), |b| {
        b.iter(|| {
            let entries = rt.block_on(without.read("nosnap", |l, _| l.entries)).unwrap();
            assert_eq!(entries, EVENTS + 50);
            without.passivate_all();
            black_box(entries);
        })
    });
    group.finish();
}

criterion_group!(benches, rebuild);
criterion_main!(benches);
