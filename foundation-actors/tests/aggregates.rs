//! Event-sourced aggregates and projections on the event store: decisions, rejections,
//! optimistic concurrency between two writers, snapshots (and that a rebuild starts from one),
//! retirement of idle aggregates, a panicking aggregate, projections that resume.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::aggregates::{
    Aggregate, AggregateConfig, AggregateError, Aggregates, Projection, ProjectionConfig, ProjectionHandle,
};
use foundation_core::events::{
    Event, EventBackend, EventQuery, EventStore, EventStoreError, ExpectedVersion, MemoryBackend, NewEvent,
    Retention, RetentionReport, Snapshot, StoreStats,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    deposits: u32,
}

#[derive(Debug)]
enum Cmd {
    Deposit(i64),
    Withdraw(i64),
    Panic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Ev {
    Deposited(i64),
    Withdrew(i64),
}

impl Aggregate for Account {
    const KIND: &'static str = "account";
    type Command = Cmd;
    type Event = Ev;
    type Error = String;

    fn handle(&self, command: &Cmd) -> Result<Vec<Ev>, String> {
        match *command {
            Cmd::Deposit(n) if n > 0 => Ok(vec![Ev::Deposited(n)]),
            Cmd::Deposit(n) => Err(format!("cannot deposit {n}")),
            Cmd::Withdraw(n) if n <= self.balance => Ok(vec![Ev::Withdrew(n)]),
            Cmd::Withdraw(n) => Err(format!("balance {} is below {n}", self.balance)),
            Cmd::Panic => panic!("a bug in the aggregate"),
        }
    }

    fn apply(&mut self, event: &Ev) {
        match event {
            Ev::Deposited(13) if self.balance == 1300 => panic!("a bug in apply"),
            Ev::Deposited(n) => {
                self.balance += n;
                self.deposits += 1;
            }
            Ev::Withdrew(n) => self.balance -= n,
        }
    }
}

fn config(snapshot_every: u64) -> AggregateConfig {
    AggregateConfig { snapshot_every, ..Default::default() }
}

#[tokio::test]
async fn commands_are_decided_stored_and_refused_without_storing() {
    let store = EventStore::in_memory();
    let accounts = Aggregates::<Account>::new(store.clone(), config(0));
    let done = accounts.execute_correlated("alice", "req-1", Cmd::Deposit(100)).await.unwrap();
    assert_eq!((done.version, done.events.clone()), (1, vec![Ev::Deposited(100)]));
    accounts.execute("alice", Cmd::Withdraw(30)).await.unwrap();
    match accounts.execute("alice", Cmd::Withdraw(500)).await {
        Err(AggregateError::Rejected(reason)) => assert_eq!(reason, "balance 70 is below 500"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(accounts.execute("", Cmd::Deposit(1)).await, Err(AggregateError::InvalidId(_))));
    assert_eq!(accounts.read("alice", |a, v| (a.balance, v)).await.unwrap(), (70, 2));
    assert_eq!(
        accounts.read("bob", |a, v| (a.balance, v)).await.unwrap(),
        (0, 0),
        "a new aggregate is the default"
    );

    let journal = store.read_stream("account-alice", 0, 10).await.unwrap();
    let kinds: Vec<_> = journal.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["account.Deposited", "account.Withdrew"]);
    assert_eq!(journal[0].correlation_id.as_deref(), Some("req-1"));
    assert_eq!(journal[0].payload, json!({"Deposited": 100}));
}

#[tokio::test]
async fn two_writers_on_one_store_stay_consistent() {
    let store = EventStore::in_memory();
    // Two handles, as two processes sharing a database would have.
    let a = Aggregates::<Account>::new(store.clone(), config(0));
    let b = Aggregates::<Account>::new(store.clone(), config(0));
    a.execute("acct", Cmd::Deposit(10)).await.unwrap();
    assert_eq!(b.read("acct", |s, v| (s.balance, v)).await.unwrap(), (10, 1));
    a.execute("acct", Cmd::Deposit(5)).await.unwrap(); // b's copy is now behind.

    // A caller that pinned the version it read loses.
    match b.execute_at("acct", 1, Cmd::Withdraw(10)).await {
        Err(AggregateError::Conflict { expected: 1, actual: 2 }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Without a pinned version, b catches up and decides on the real state: 15 - 12 is allowed.
    let done = b.execute("acct", Cmd::Withdraw(12)).await.unwrap();
    assert_eq!(done.version, 3);
    // And a's copy, now behind, does the same: 3 left, so 5 is refused on the real state.
    assert!(matches!(a.execute("acct", Cmd::Withdraw(5)).await, Err(AggregateError::Rejected(_))));
    assert_eq!(a.read("acct", |s, v| (s.balance, v)).await.unwrap(), (3, 3));
    let versions: Vec<u64> = store
        .read_stream("account-acct", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream.as_ref().unwrap().version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}

/// A backend that counts the stream events it hands out (to see what a rebuild reads).
struct Counting {
    inner: MemoryBackend,
    stream_events_read: AtomicU64,
}

impl EventBackend for Counting {
    fn blocking(&self) -> bool {
        false
    }
    fn append(&self, e: Vec<NewEvent>) -> Result<Vec<Event>, EventStoreError> {
        self.inner.append(e)
    }
    fn append_to_stream(
        &self,
        s: &str,
        x: ExpectedVersion,
        e: Vec<NewEvent>,
    ) -> Result<Vec<Event>, EventStoreError> {
        self.inner.append_to_stream(s, x, e)
    }
    fn query(&self, q: &EventQuery, limit: usize) -> Result<Vec<Event>, EventStoreError> {
        let out = self.inner.query(q, limit)?;
        if q.stream.is_some() {
            self.stream_events_read.fetch_add(out.len() as u64, Ordering::SeqCst);
        }
        Ok(out)
    }
    fn get(&self, id: u64) -> Result<Option<Event>, EventStoreError> {
        self.inner.get(id)
    }
    fn caused_by(&self, ids: &[u64]) -> Result<Vec<Event>, EventStoreError> {
        self.inner.caused_by(ids)
    }
    fn stream_version(&self, s: &str) -> Result<u64, EventStoreError> {
        self.inner.stream_version(s)
    }
    fn save_snapshot(&self, s: &Snapshot) -> Result<(), EventStoreError> {
        self.inner.save_snapshot(s)
    }
    fn load_snapshot(&self, s: &str) -> Result<Option<Snapshot>, EventStoreError> {
        self.inner.load_snapshot(s)
    }
    fn save_checkpoint(&self, n: &str, p: u64) -> Result<(), EventStoreError> {
        self.inner.save_checkpoint(n, p)
    }
    fn load_checkpoint(&self, n: &str) -> Result<u64, EventStoreError> {
        self.inner.load_checkpoint(n)
    }
    fn apply_retention(&self, r: &Retention, now: i64) -> Result<RetentionReport, EventStoreError> {
        self.inner.apply_retention(r, now)
    }
    fn stats(&self) -> Result<StoreStats, EventStoreError> {
        self.inner.stats()
    }
}

#[tokio::test]
async fn a_rebuild_starts_from_the_latest_snapshot() {
    let backend = Arc::new(Counting { inner: MemoryBackend::new(), stream_events_read: AtomicU64::new(0) });
    let store = EventStore::with_backend(backend.clone());
    let accounts = Aggregates::<Account>::new(store.clone(), config(10));
    for _ in 0..25 {
        accounts.execute("carol", Cmd::Deposit(2)).await.unwrap();
    }
    let snapshot = store.load_snapshot("account-carol").await.unwrap().unwrap();
    assert_eq!(snapshot.version, 20);
    assert_eq!(snapshot.state, json!({"balance": 40, "deposits": 20}));

    accounts.passivate_all();
    backend.stream_events_read.store(0, Ordering::SeqCst);
    assert_eq!(accounts.read("carol", |a, v| (a.balance, a.deposits, v)).await.unwrap(), (50, 25, 25));
    assert_eq!(
        backend.stream_events_read.load(Ordering::SeqCst),
        5,
        "only the events after the snapshot are read"
    );

    // A snapshot the state can no longer be read from is ignored: the whole journal is read.
    store
        .save_snapshot(Snapshot { stream: "account-carol".into(), version: 24, state: json!("an old shape") })
        .await
        .unwrap();
    let fresh = Aggregates::<Account>::new(store.clone(), config(0));
    backend.stream_events_read.store(0, Ordering::SeqCst);
    assert_eq!(fresh.read("carol", |a, v| (a.balance, v)).await.unwrap(), (50, 25));
    assert_eq!(backend.stream_events_read.load(Ordering::SeqCst), 25);
}

#[tokio::test]
async fn idle_aggregates_are_retired_and_come_back_intact() {
    let accounts = Aggregates::<Account>::new(
        EventStore::in_memory(),
        AggregateConfig { snapshot_every: 0, max_live: 2 },
    );
    for round in 1..=3 {
        for id in ["a", "b", "c", "d", "e"] {
            accounts.execute(id, Cmd::Deposit(1)).await.unwrap();
            assert!(accounts.live() <= 2, "{} aggregates held", accounts.live());
        }
        for id in ["a", "e"] {
            assert_eq!(accounts.read(id, |a, _| a.balance).await.unwrap(), round);
        }
    }
}

#[tokio::test]
async fn a_panicking_aggregate_fails_its_command_and_the_next_one_works() {
    let store = EventStore::in_memory();
    let accounts = Aggregates::<Account>::new(store.clone(), config(0));
    accounts.execute("erin", Cmd::Deposit(9)).await.unwrap();
    match accounts.execute("erin", Cmd::Panic).await {
        Err(AggregateError::Unavailable(stream, _)) => assert_eq!(stream, "account-erin"),
        other => panic!("expected the aggregate to be unavailable, got {other:?}"),
    }
    accounts.execute("erin", Cmd::Deposit(1)).await.unwrap();
    assert_eq!(accounts.read("erin", |a, v| (a.balance, v)).await.unwrap(), (10, 2));
}

/// A read model kept outside the projection (as a database table would be), so that a new
/// instance after a restart continues it.
#[derive(Clone, Default)]
struct Totals {
    seen: Arc<Mutex<Vec<u64>>>,
    balance: Arc<AtomicU64>,
    fail_on: Option<u64>,
    failures: Arc<AtomicU64>,
}

impl Projection for Totals {
    async fn apply(&mut self, event: &Event) -> Result<(), foundation_core::BoxError> {
        if self.fail_on == Some(event.id) && self.failures.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err("the read model's database is down".into());
        }
        self.seen.lock().unwrap().push(event.id);
        if let Some(n) = event.payload["Deposited"].as_u64() {
            self.balance.fetch_add(n, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_projection_resumes_from_its_position_and_never_skips_a_failed_event() {
    let store = EventStore::in_memory();
    let accounts = Aggregates::<Account>::new(store.clone(), config(0));
    store.append(NewEvent::new("unrelated", json!({}))).await.unwrap();
    for i in 0..10 {
        accounts.execute(&format!("p{}", i % 3), Cmd::Deposit(1)).await.unwrap();
    }
    let totals = Totals::default();
    let projection_config = || {
        let mut c =
            ProjectionConfig::new("balances").filter(EventQuery::new().event_type("account.Deposited"));
        c.batch = 3;
        c.retry_after = Duration::from_millis(20);
        c
    };
    let running = ProjectionHandle::start(store.clone(), projection_config(), totals.clone()).await.unwrap();
    let last = store.stats().await.unwrap().last_id;
    running.wait_for(last, Duration::from_secs(10)).await.unwrap();
    assert_eq!(totals.balance.load(Ordering::SeqCst), 10);
    running.stop().await;
    assert_eq!(store.load_checkpoint("balances").await.unwrap(), last);

    // Written while the projection was down; the second of them fails twice before it goes in.
    let mut later = Vec::new();
    for _ in 0..4 {
        later.push(accounts.execute("p9", Cmd::Deposit(10)).await.unwrap().first_id.unwrap());
    }
    let restarted = Totals { fail_on: Some(later[1]), ..totals.clone() };
    let running = ProjectionHandle::start(store.clone(), projection_config(), restarted).await.unwrap();
    running.wait_for(later[3], Duration::from_secs(10)).await.unwrap();
    assert_eq!(totals.balance.load(Ordering::SeqCst), 50);
    assert_eq!(totals.failures.load(Ordering::SeqCst), 3, "the failing event was retried until it went in");
    let seen = totals.seen.lock().unwrap().clone();
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(seen, unique, "no event applied twice");
    assert_eq!(seen.len(), 14);
    assert!(running.last_error().is_none());
    running.stop().await;
}

#[tokio::test]
async fn a_panic_in_apply_after_the_append_reports_the_command_done_and_rebuilds() {
    let accounts = Aggregates::<Account>::new(EventStore::in_memory(), config(0));
    accounts.execute("f", Cmd::Deposit(1300)).await.unwrap();
    // Stored, then `apply` panics: the caller is told it is done (retrying would store it twice).
    let done = accounts.execute("f", Cmd::Deposit(13)).await.unwrap();
    assert_eq!(done.version, 2);
    // The rebuild folds the journal again and panics again: unavailable, with the reason.
    assert!(matches!(accounts.execute("f", Cmd::Deposit(1)).await, Err(AggregateError::Unavailable(..))));
}

#[tokio::test]
async fn concurrent_commands_on_more_ids_than_live_actors_all_land_once() {
    let store = EventStore::in_memory();
    let accounts =
        Aggregates::<Account>::new(store.clone(), AggregateConfig { snapshot_every: 3, max_live: 1 });
    let mut tasks = Vec::new();
    for t in 0..8 {
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let id = format!("c{}", (t + i) % 4);
                accounts.execute(&id, Cmd::Deposit(1)).await.unwrap();
                assert!(accounts.read(&id, |a, _| a.balance >= 1).await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut total = 0;
    for id in ["c0", "c1", "c2", "c3"] {
        let (balance, version) = accounts.read(id, |a, v| (a.balance, v)).await.unwrap();
        assert_eq!(balance as u64, version, "{id}: every stored deposit is folded in once");
        total += balance;
    }
    assert_eq!(total, 200, "200 commands, each stored exactly once");
    assert_eq!(store.stats().await.unwrap().events, 200);
}

/// Applies slowly, to stop a projection in the middle of an event.
#[derive(Clone, Default)]
struct Slow {
    applied: Arc<Mutex<Vec<u64>>>,
    started: Arc<tokio::sync::Notify>,
}

impl Projection for Slow {
    async fn apply(&mut self, event: &Event) -> Result<(), foundation_core::BoxError> {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.applied.lock().unwrap().push(event.id);
        Ok(())
    }
}

#[tokio::test]
async fn stopping_a_projection_finishes_the_event_being_applied_and_records_it() {
    let store = EventStore::in_memory();
    for i in 0..5 {
        store.append(NewEvent::new("e", json!(i))).await.unwrap();
    }
    let slow = Slow::default();
    let running =
        ProjectionHandle::start(store.clone(), ProjectionConfig::new("slow"), slow.clone()).await.unwrap();
    slow.started.notified().await;
    running.stop().await;
    let applied = slow.applied.lock().unwrap().clone();
    assert_eq!(applied, [1], "the event under way was finished, no other was started");
    assert_eq!(store.load_checkpoint("slow").await.unwrap(), 1, "and its position recorded at the stop");
}

#[tokio::test]
async fn a_failing_projection_can_still_be_read_and_says_why_it_is_stuck() {
    let store = EventStore::in_memory();
    let id = store.append(NewEvent::new("account.Deposited", json!({"Deposited": 1}))).await.unwrap().id;
    let stuck = Totals { fail_on: Some(id), failures: Arc::new(AtomicU64::new(0)), ..Totals::default() };
    // Fails twice, 300 ms apart: reads in between are served, not held by the retry.
    let mut config = ProjectionConfig::new("stuck");
    config.retry_after = Duration::from_millis(300);
    let running = ProjectionHandle::start(store.clone(), config, stuck.clone()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running.last_error().is_none() {
        assert!(std::time::Instant::now() < deadline, "no error reported");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(running.last_error().unwrap().contains("database is down"));
    let seen =
        tokio::time::timeout(Duration::from_millis(250), running.read(|t| t.seen.lock().unwrap().len()))
            .await
            .expect("read while the projection waits to retry");
    assert_eq!(seen, 0);
    running.wait_for(id, Duration::from_secs(10)).await.unwrap();
    running.stop().await;
}
