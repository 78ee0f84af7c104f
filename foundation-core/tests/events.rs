//! The event store, the same behaviour checked on both backends (memory and a real SQLite
//! file), plus what only a file can show (reopening, a file that is not a store).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_core::events::{
    EventQuery, EventStore, EventStoreError, ExpectedVersion, NewEvent, Order, Retention, Snapshot,
    SqliteOptions, Synchronous,
};
use serde_json::json;

async fn sqlite(dir: &tempfile::TempDir) -> EventStore {
    EventStore::open_sqlite(SqliteOptions::new(dir.path().join("events.db"))).await.unwrap()
}

/// Runs one scenario on a memory store and on a SQLite file.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $name() { super::$name(foundation_core::events::EventStore::in_memory()).await } )*
        }
        mod sqlite_file {
            $( #[tokio::test] async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(super::sqlite(&dir).await).await
            } )*
        }
    };
}

both_backends!(
    queries_filter_order_and_limit,
    bad_queries_and_events_are_refused_and_store_nothing,
    causes_paths_and_consequences,
    streams_append_only_at_the_expected_version,
    retention_removes_old_and_excess_events_but_never_stream_events,
    a_tenant_view_sees_and_writes_only_its_own_events,
    appends_are_announced,
    payload_comparisons_are_the_same_on_both_backends,
    retention_over_many_chunks_keeps_exactly_the_newest,
);

async fn queries_filter_order_and_limit(store: EventStore) {
    let t0 = 1_700_000_000_000;
    let mut batch = Vec::new();
    for i in 0..20i64 {
        let kind = if i % 2 == 0 { "order.placed" } else { "order.paid" };
        batch.push(
            NewEvent::new(kind, json!({"n": i, "customer": {"tier": if i < 5 { "gold" } else { "basic" }}, "big": i > 15, "ratio": i as f64 / 2.0}))
                .at(t0 + i * 1000)
                .correlation(format!("req-{}", i % 4))
                .tenant(if i < 10 { "acme" } else { "globex" }),
        );
    }
    let stored = store.append_batch(batch).await.unwrap();
    assert_eq!(stored.len(), 20);
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id), "ids increase in append order");

    let ns = |events: Vec<foundation_core::events::Event>| -> Vec<i64> {
        events.iter().map(|e| e.payload["n"].as_i64().unwrap()).collect()
    };
    let q = |q: EventQuery| store.query(q);
    assert_eq!(ns(q(EventQuery::new().event_type("order.paid").limit(3)).await.unwrap()), [1, 3, 5]);
    assert_eq!(ns(q(EventQuery::new().correlation("req-2")).await.unwrap()), [2, 6, 10, 14, 18]);
    assert_eq!(
        ns(q(EventQuery::new().correlation("req-2").order(Order::Descending).limit(2)).await.unwrap()),
        [18, 14]
    );
    assert_eq!(ns(q(EventQuery::new().between(t0 + 3000, t0 + 6000)).await.unwrap()), [3, 4, 5]);
    assert_eq!(
        ns(q(EventQuery::new().tenant("globex").event_type("order.placed").limit(2)).await.unwrap()),
        [10, 12]
    );
    assert_eq!(ns(q(EventQuery::new().field_eq("customer.tier", "gold")).await.unwrap()), [0, 1, 2, 3, 4]);
    assert_eq!(
        ns(q(EventQuery::new().field_eq("/customer/tier", "gold").tenant("globex")).await.unwrap()),
        Vec::<i64>::new()
    );
    assert_eq!(ns(q(EventQuery::new().field_eq("n", 7)).await.unwrap()), [7]);
    assert_eq!(ns(q(EventQuery::new().field_eq("ratio", 3.5)).await.unwrap()), [7]);
    assert_eq!(ns(q(EventQuery::new().field_eq("big", true)).await.unwrap()), [16, 17, 18, 19]);
    // Exact comparison: the number 1 is not `true`, the string "7" is not 7.
    assert!(q(EventQuery::new().field_eq("n", "7")).await.unwrap().is_empty());
    assert!(q(EventQuery::new().field_eq("big", 1)).await.unwrap().is_empty());
    // Paging with `after` returns the rest.
    let first = q(EventQuery::new().limit(15)).await.unwrap();
    let rest = q(EventQuery::new().after(first.last().unwrap().id)).await.unwrap();
    assert_eq!(ns(rest), [15, 16, 17, 18, 19]);
    // Unknown values match nothing.
    assert!(q(EventQuery::new().correlation("nope")).await.unwrap().is_empty());
    assert!(q(EventQuery::new().field_eq("no.such.field", 1)).await.unwrap().is_empty());
    // Every field round-trips.
    let e = store.get(stored[3].id).await.unwrap().unwrap();
    assert_eq!(e, stored[3]);
    assert_eq!((e.schema_version, e.timestamp_ms, e.tenant.as_deref()), (1, t0 + 3000, Some("acme")));
    assert_eq!(e.field("customer.tier"), Some(&json!("gold")));
}

async fn bad_queries_and_events_are_refused_and_store_nothing(store: EventStore) {
    let refused = |r: Result<Vec<_>, EventStoreError>| match r {
        Err(EventStoreError::InvalidQuery(reason)) => reason,
        other => panic!("expected a refused query, got {other:?}"),
    };
    assert!(refused(store.query(EventQuery::new().limit(0)).await).contains("limit 0"));
    assert!(refused(store.query(EventQuery::new().limit(1_000_000)).await).contains("page with `after`"));
    assert!(refused(store.query(EventQuery::new().between(10, 5)).await).contains("from 10 is after to 5"));
    assert!(refused(store.query(EventQuery::new().field_eq("a", json!({"b": 1}))).await).contains("scalar"));

    let good = NewEvent::new("ok", json!({}));
    let bad = NewEvent::new("", json!({}));
    match store.append_batch(vec![good.clone(), bad]).await {
        Err(EventStoreError::InvalidEvent(reason)) => {
            assert!(reason.to_string().contains("event type is empty"), "{reason}")
        }
        other => panic!("expected a refused event, got {other:?}"),
    }
    let long_tenant = NewEvent::new("ok", json!({})).tenant("t".repeat(300));
    assert!(
        matches!(store.append(long_tenant).await, Err(EventStoreError::InvalidEvent(r)) if r.to_string().contains("300 bytes"))
    );
    assert!(matches!(
        store.append_to_stream("", ExpectedVersion::Any, vec![good]).await,
        Err(EventStoreError::InvalidEvent(_))
    ));
    // All or none: the good event of the refused batch was not kept.
    assert_eq!(store.stats().await.unwrap().events, 0);
    assert!(matches!(store.causes(42).await, Err(EventStoreError::NotFound(42))));
}

async fn causes_paths_and_consequences(store: EventStore) {
    // root → a → (a1, a2 → a2x); root → b; an unrelated event in between.
    let root = store.append(NewEvent::new("task.received", json!({})).correlation("job-1")).await.unwrap();
    let a = store.append(NewEvent::new("plan.made", json!({})).caused_by(&root)).await.unwrap();
    store.append(NewEvent::new("noise", json!({}))).await.unwrap();
    let a1 = store.append(NewEvent::new("step.done", json!({"step": 1})).caused_by(&a)).await.unwrap();
    let a2 = store.append(NewEvent::new("step.done", json!({"step": 2})).caused_by(&a)).await.unwrap();
    let b = store.append(NewEvent::new("audit.logged", json!({})).caused_by(&root)).await.unwrap();
    let a2x = store.append(NewEvent::new("answer.sent", json!({})).caused_by(&a2)).await.unwrap();
    assert_eq!(
        a2x.correlation_id.as_deref(),
        Some("job-1"),
        "the correlation id is inherited from the cause"
    );

    let ids = |events: &[foundation_core::events::Event]| events.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&store.causes(a2x.id).await.unwrap()), [root.id, a.id, a2.id, a2x.id]);
    assert_eq!(ids(&store.causal_path(a.id, a2x.id).await.unwrap().unwrap()), [a.id, a2.id, a2x.id]);
    assert_eq!(store.causal_path(b.id, a2x.id).await.unwrap(), None, "a2x does not descend from b");

    let tree = store.consequences(root.id).await.unwrap();
    assert_eq!(tree.len(), 6);
    assert_eq!(ids(&tree.consequences.iter().map(|c| c.event.clone()).collect::<Vec<_>>()), [a.id, b.id]);
    let under_a = &tree.consequences[0];
    assert_eq!(under_a.consequences[0].event.id, a1.id);
    assert_eq!(under_a.consequences.len(), 2);
    assert_eq!(under_a.consequences[1].consequences[0].event.id, a2x.id);
    assert!(tree.consequences[1].consequences.is_empty());
    assert_eq!(store.query(EventQuery::new().caused_by(a.id)).await.unwrap().len(), 2);
}

async fn streams_append_only_at_the_expected_version(store: EventStore) {
    let ev = |n: i64| NewEvent::new("counter.added", json!({"n": n}));
    let first =
        store.append_to_stream("counter-1", ExpectedVersion::NoStream, vec![ev(1), ev(2)]).await.unwrap();
    assert_eq!(first.iter().map(|e| e.stream.as_ref().unwrap().version).collect::<Vec<_>>(), [1, 2]);
    // A writer that read version 1 loses the race, and writes nothing.
    match store.append_to_stream("counter-1", ExpectedVersion::Exactly(1), vec![ev(99)]).await {
        Err(EventStoreError::Conflict { actual, expected, .. }) => {
            assert_eq!((actual, expected), (2, ExpectedVersion::Exactly(1)))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store.append_to_stream("counter-1", ExpectedVersion::NoStream, vec![ev(99)]).await,
        Err(EventStoreError::Conflict { actual: 2, .. })
    ));
    store.append_to_stream("counter-1", ExpectedVersion::Exactly(2), vec![ev(3)]).await.unwrap();
    store.append_to_stream("counter-2", ExpectedVersion::Any, vec![ev(10)]).await.unwrap();
    store.append_to_stream("counter-1", ExpectedVersion::Any, vec![ev(4)]).await.unwrap();
    assert_eq!(store.stream_version("counter-1").await.unwrap(), 4);
    assert_eq!(store.stream_version("nobody").await.unwrap(), 0);
    let tail = store.read_stream("counter-1", 2, 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.payload["n"].as_i64().unwrap()).collect::<Vec<_>>(), [3, 4]);
    assert!(store.query(EventQuery::new().field_eq("n", 99)).await.unwrap().is_empty());

    // Snapshots: a newer one replaces an older one, never the reverse.
    let snap = |v: u64| Snapshot { stream: "counter-1".into(), version: v, state: json!({"total": v}) };
    store.save_snapshot(snap(3)).await.unwrap();
    store.save_snapshot(snap(2)).await.unwrap();
    assert_eq!(store.load_snapshot("counter-1").await.unwrap().unwrap().version, 3);
    assert_eq!(store.load_snapshot("counter-2").await.unwrap(), None);
    store.save_checkpoint("totals", 7).await.unwrap();
    store.save_checkpoint("totals", 5).await.unwrap(); // a late save from an older run
    assert_eq!(store.load_checkpoint("totals").await.unwrap(), 7, "a position never goes back");
    assert_eq!(store.load_checkpoint("never").await.unwrap(), 0);
}

async fn retention_removes_old_and_excess_events_but_never_stream_events(store: EventStore) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let hour = 3_600_000;
    store
        .append_to_stream(
            "journal",
            ExpectedVersion::Any,
            vec![NewEvent::new("old.but.journaled", json!({})).at(now - 100 * hour)],
        )
        .await
        .unwrap();
    for i in 0..10 {
        store.append(NewEvent::new("old", json!({"i": i})).at(now - 48 * hour)).await.unwrap();
    }
    for i in 0..10 {
        store.append(NewEvent::new("new", json!({"i": i, "pad": "x".repeat(100)})).at(now)).await.unwrap();
    }
    let store = store
        .with_retention(Retention { max_age: Some(Duration::from_secs(24 * 3600)), ..Default::default() });
    let report = store.apply_retention().await.unwrap();
    assert_eq!((report.expired, report.evicted), (10, 0));
    assert!(store.query(EventQuery::new().event_type("old")).await.unwrap().is_empty());

    let store = store.with_retention(Retention { max_events: Some(6), ..Default::default() });
    assert_eq!(store.apply_retention().await.unwrap().evicted, 4);
    let left: Vec<i64> = store
        .query(EventQuery::new().event_type("new"))
        .await
        .unwrap()
        .iter()
        .map(|e| e.payload["i"].as_i64().unwrap())
        .collect();
    assert_eq!(left, [4, 5, 6, 7, 8, 9], "the oldest go first");

    let stats = store.stats().await.unwrap();
    let per_event = stats.unstreamed_payload_bytes / 6;
    let store =
        store.with_retention(Retention { max_payload_bytes: Some(per_event * 2), ..Default::default() });
    assert_eq!(store.apply_retention().await.unwrap().evicted, 4);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.unstreamed_events, stats.events), (2, 3));
    assert!(stats.unstreamed_payload_bytes <= per_event * 2);
    // The journaled event is older than every bound and still there.
    assert_eq!(store.read_stream("journal", 0, 10).await.unwrap().len(), 1);
}

async fn a_tenant_view_sees_and_writes_only_its_own_events(store: EventStore) {
    let acme = store.for_tenant("acme");
    let globex = store.for_tenant("globex");
    let secret = acme.append(NewEvent::new("doc.saved", json!({"title": "acme plans"}))).await.unwrap();
    // A tenant named on the event is overridden by the view's.
    let spoof =
        globex.append(NewEvent::new("doc.saved", json!({"title": "g"})).tenant("acme")).await.unwrap();
    assert_eq!(spoof.tenant.as_deref(), Some("globex"));
    assert_eq!(globex.get(secret.id).await.unwrap(), None, "another tenant's event reads as missing");
    assert_eq!(acme.get(secret.id).await.unwrap().unwrap().id, secret.id);
    let seen = globex.query(EventQuery::new().event_type("doc.saved").tenant("acme")).await.unwrap();
    assert_eq!(
        seen.iter().map(|e| e.id).collect::<Vec<_>>(),
        [spoof.id],
        "a query naming another tenant is narrowed"
    );
    assert_eq!(acme.query(EventQuery::new()).await.unwrap().len(), 1);
}

async fn appends_are_announced(store: EventStore) {
    let mut watch = store.watch_appends();
    let before = *watch.borrow_and_update();
    let e = store.append(NewEvent::new("x", json!(1))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), watch.changed()).await.unwrap().unwrap();
    assert!(*watch.borrow() == e.id && e.id > before);
}

#[tokio::test]
async fn a_sqlite_store_keeps_everything_across_a_reopen_and_never_reuses_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let last = {
        let store =
            EventStore::open_sqlite(SqliteOptions::new(&path).synchronous(Synchronous::Full)).await.unwrap();
        store.append_batch((0..100).map(|i| NewEvent::new("e", json!({"i": i}))).collect()).await.unwrap();
        store
            .append_to_stream("s", ExpectedVersion::NoStream, vec![NewEvent::new("s", json!({}))])
            .await
            .unwrap();
        store.save_checkpoint("p", 50).await.unwrap();
        let store = store.with_retention(Retention { max_events: Some(0), ..Default::default() });
        assert_eq!(store.apply_retention().await.unwrap().evicted, 100);
        store.stats().await.unwrap().last_id
    };
    let store = EventStore::open_sqlite(SqliteOptions::new(&path)).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.events, stats.unstreamed_events, stats.last_id), (1, 0, last));
    assert_eq!(store.load_checkpoint("p").await.unwrap(), 50);
    assert_eq!(*store.watch_appends().borrow(), last);
    let next = store.append(NewEvent::new("e", json!({}))).await.unwrap();
    assert!(next.id > last, "ids removed by retention are not reused: {} after {last}", next.id);
}

#[tokio::test]
async fn a_file_that_is_not_an_event_store_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, b"this is not a database, just some bytes that happen to be here").unwrap();
    let err = EventStore::open_sqlite(SqliteOptions::new(&path)).await.unwrap_err();
    assert!(err.to_string().contains("garbage.db"), "{err}");
    // And the file is left as it was.
    assert!(std::fs::read(&path).unwrap().starts_with(b"this is not a database"));
}

async fn payload_comparisons_are_the_same_on_both_backends(store: EventStore) {
    store
        .append(NewEvent::new("m", json!({"ratio": 3.0, "tags": ["a", "b"], "obj": {"0": "zero"}})))
        .await
        .unwrap();
    let count = |q: EventQuery| {
        let store = store.clone();
        async move { store.query(q).await.unwrap().len() }
    };
    // Numbers by value; numeric segments index arrays, never object keys.
    assert_eq!(count(EventQuery::new().field_eq("ratio", 3)).await, 1);
    assert_eq!(count(EventQuery::new().field_eq("ratio", 3.0)).await, 1);
    assert_eq!(count(EventQuery::new().field_eq("tags.1", "b")).await, 1);
    assert_eq!(count(EventQuery::new().field_eq("/tags/0", "a")).await, 1);
    assert_eq!(count(EventQuery::new().field_eq("obj.0", "zero")).await, 0);
    match store.query(EventQuery::new().field_eq("a\"b", 1)).await {
        Err(EventStoreError::InvalidQuery(reason)) => assert!(reason.contains("double quote"), "{reason}"),
        other => panic!("expected a refused query, got {other:?}"),
    }
}

async fn retention_over_many_chunks_keeps_exactly_the_newest(store: EventStore) {
    for chunk in 0..5 {
        store
            .append_batch((0..1000).map(|i| NewEvent::new("e", json!({"n": chunk * 1000 + i}))).collect())
            .await
            .unwrap();
    }
    let store = store.with_retention(Retention { max_events: Some(1_234), ..Default::default() });
    assert_eq!(store.apply_retention().await.unwrap().evicted, 3_766);
    let oldest = store.query(EventQuery::new().limit(1)).await.unwrap();
    assert_eq!(oldest[0].payload["n"], 3_766);
    assert_eq!(store.stats().await.unwrap().unstreamed_events, 1_234);
}

#[tokio::test]
async fn two_handles_on_one_file_share_exact_counts_and_streams() {
    // Two connections to one file, as two processes would have.
    let dir = tempfile::tempdir().unwrap();
    let a = sqlite(&dir).await;
    let b = sqlite(&dir).await;
    a.append_batch((0..10).map(|i| NewEvent::new("e", json!({"i": i}))).collect()).await.unwrap();
    b.append_batch((10..30).map(|i| NewEvent::new("e", json!({"i": i}))).collect()).await.unwrap();
    // a's retention sees b's appends: it keeps exactly 25, not 25 of the 10 it wrote itself.
    let a = a.with_retention(Retention { max_events: Some(25), ..Default::default() });
    assert_eq!(a.apply_retention().await.unwrap().evicted, 5);
    assert_eq!(b.stats().await.unwrap().unstreamed_events, 25);
    assert_eq!(b.query(EventQuery::new()).await.unwrap().len(), 25);

    // Racing appends to one stream from both: each either lands at the next version or is told
    // it conflicted; never a storage error, never a gap.
    let mut tasks = Vec::new();
    for (k, store) in [a.clone(), b.clone()].into_iter().cycle().take(8).enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut landed = 0;
            for _ in 0..25 {
                let version = store.stream_version("shared").await.unwrap();
                match store
                    .append_to_stream(
                        "shared",
                        ExpectedVersion::Exactly(version),
                        vec![NewEvent::new("s", json!({"k": k}))],
                    )
                    .await
                {
                    Ok(_) => landed += 1,
                    Err(EventStoreError::Conflict { .. }) => {}
                    Err(e) => panic!("writer {k}: {e}"),
                }
            }
            landed
        }));
    }
    let mut landed = 0;
    for t in tasks {
        landed += t.await.unwrap();
    }
    let versions: Vec<u64> = a
        .read_stream("shared", 0, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream.as_ref().unwrap().version)
        .collect();
    assert_eq!(versions, (1..=landed).collect::<Vec<u64>>());
}
