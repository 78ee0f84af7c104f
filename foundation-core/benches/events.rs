//! The event store's throughput and query latency: batched durable appends (SQLite, both fsync
//! policies), a query by correlation id over 1 000 000 events (SQLite file and memory).
//! Run with `cargo bench -p foundation-core --bench events`; figures in docs/BENCHMARKS.md.
//! The 1M-event file is built once per run (about half a minute) in a temporary directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use foundation_core::events::{EventQuery, EventStore, NewEvent, SqliteOptions, Synchronous};
use serde_json::json;

const BATCH: usize = 1_000;
const EVENTS: usize = 1_000_000;
/// Ten events per correlation id.
const CORRELATIONS: usize = EVENTS / 10;

fn event(i: usize) -> NewEvent {
    NewEvent::new(
        if i.is_multiple_of(3) { "order.placed" } else { "order.paid" },
        json!({"order": i, "total": i % 997, "status": "ok"}),
    )
    .correlation(format!("req-{}", i % CORRELATIONS))
    .tenant(format!("tenant-{}", i % 8))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("events_append");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    for (name, sync) in [("sqlite_normal", Synchronous::Normal), ("sqlite_full", Synchronous::Full)] {
        let dir = tempfile::tempdir().unwrap();
        let store = rt
            .block_on(EventStore::open_sqlite(SqliteOptions::new(dir.path().join("e.db")).synchronous(sync)))
            .unwrap();
        let mut i = 0;
        group.bench_function(BenchmarkId::new(name, format!("batch_{BATCH}")), |b| {
            b.iter(|| {
                let batch: Vec<NewEvent> = (i..i + BATCH).map(event).collect();
                i += BATCH;
                rt.block_on(store.append_batch(batch)).unwrap();
            })
        });
    }
    // The same events one per transaction, to show what batching buys.
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(EventStore::open_sqlite(SqliteOptions::new(dir.path().join("e.db")))).unwrap();
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function(BenchmarkId::new("sqlite_normal", "single"), |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(store.append(event(i))).unwrap();
        })
    });
    group.finish();
}

fn fill(rt: &tokio::runtime::Runtime, store: &EventStore) {
    for start in (0..EVENTS).step_by(10_000) {
        rt.block_on(store.append_batch((start..start + 10_000).map(event).collect())).unwrap();
    }
}

fn query(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt.block_on(EventStore::open_sqlite(SqliteOptions::new(dir.path().join("1m.db")))).unwrap();
    let started = std::time::Instant::now();
    fill(&rt, &sqlite);
    eprintln!("filled the SQLite store with {EVENTS} events in {:?}", started.elapsed());
    let memory = EventStore::in_memory();
    fill(&rt, &memory);

    let mut group = c.benchmark_group("events_query_1m");
    let mut n = 0usize;
    for (name, store) in [("sqlite", &sqlite), ("memory", &memory)] {
        group.bench_function(BenchmarkId::new(name, "by_correlation"), |b| {
            b.iter(|| {
                n = (n + 7919) % CORRELATIONS;
                let found = rt
                    .block_on(store.query(EventQuery::new().correlation(format!("req-{n}")).limit(100)))
                    .unwrap();
                assert_eq!(found.len(), 10);
                black_box(found);
            })
        });
    }
    // A narrower, index-less filter: one tenant's paid orders with a payload value, newest 50.
    group.bench_function(BenchmarkId::new("sqlite", "type_tenant_field_newest_50"), |b| {
        b.iter(|| {
            let q = EventQuery::new()
                .event_type("order.paid")
                .tenant("tenant-3")
                .field_eq("total", 5)
                .order(foundation_core::events::Order::Descending)
                .limit(50);
            black_box(rt.block_on(sqlite.query(q)).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, append, query);
criterion_main!(benches);
