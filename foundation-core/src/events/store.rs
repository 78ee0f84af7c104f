//! [`EventStore`]: the async handle over a backend, shared by cloning.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::backend::{EventBackend, EventStoreError, ExpectedVersion, Snapshot, StoreStats};
use super::event::{Event, EventId, MAX_NAME_BYTES, NewEvent, now_ms};
use super::memory::MemoryBackend;
use super::query::{CausalTree, EventQuery, MAX_LIMIT};
use super::retention::{Retention, RetentionReport};
use super::sqlite::{SqliteBackend, SqliteOptions};

/// The longest causal chain followed upwards before giving up (a guard against a cycle written
/// by hand through [`NewEvent::caused_by_id`]).
const MAX_CHAIN: usize = 100_000;
/// The deepest tree of consequences built (each level is a frame of recursion).
const MAX_DEPTH: usize = 1_000;

/// A handle on an event store. Cheap to clone; every clone sees the same events.
///
/// Calls to a backend that does I/O (SQLite) run on tokio's blocking pool, so they never stall
/// the runtime's workers; call them from within a tokio runtime.
#[derive(Clone)]
pub struct EventStore {
    backend: Arc<dyn EventBackend>,
    retention: Arc<Retention>,
    appended: Arc<watch::Sender<EventId>>,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore").field("retention", &self.retention).finish_non_exhaustive()
    }
}

/// What every backend would refuse, checked once here, before any I/O.
fn validate(events: &[NewEvent]) -> Result<(), EventStoreError> {
    events.iter().try_for_each(|e| e.validate().map_err(|r| EventStoreError::InvalidEvent(r.into())))
}

fn validate_stream(stream: &str) -> Result<(), EventStoreError> {
    if stream.is_empty() || stream.len() > MAX_NAME_BYTES {
        let reason = format!("stream name must be 1 to {MAX_NAME_BYTES} bytes, got {}", stream.len());
        return Err(EventStoreError::InvalidEvent(reason.into()));
    }
    Ok(())
}

impl EventStore {
    /// A store in this process's memory.
    pub fn in_memory() -> Self {
        Self::with_backend(Arc::new(MemoryBackend::new()))
    }

    /// Opens (or creates) a SQLite store (see [`sqlite`](super::sqlite) for the fsync policy).
    pub async fn open_sqlite(options: SqliteOptions) -> Result<Self, EventStoreError> {
        let backend = tokio::task::spawn_blocking(move || SqliteBackend::open(&options))
            .await
            .map_err(|e| EventStoreError::Storage(format!("the open task failed: {e}").into()))??;
        let store = Self::with_backend(Arc::new(backend));
        let last = store.stats().await?.last_id;
        store.appended.send_replace(last);
        Ok(store)
    }

    /// A store over any backend.
    pub fn with_backend(backend: Arc<dyn EventBackend>) -> Self {
        EventStore {
            backend,
            retention: Arc::new(Retention::default()),
            appended: Arc::new(watch::channel(0).0),
        }
    }

    /// Sets the retention rules [`apply_retention`](Self::apply_retention) enforces.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = Arc::new(retention);
        self
    }

    /// The retention rules in force.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EventBackend) -> Result<T, EventStoreError> + Send + 'static,
    ) -> Result<T, EventStoreError> {
        if self.backend.blocking() {
            let backend = self.backend.clone();
            tokio::task::spawn_blocking(move || f(&*backend))
                .await
                .map_err(|e| EventStoreError::Storage(format!("the storage task failed: {e}").into()))?
        } else {
            f(&*self.backend)
        }
    }

    fn announce(&self, stored: &[Event]) {
        if let Some(last) = stored.last() {
            self.appended.send_if_modified(|id| {
                let newer = last.id > *id;
                if newer {
                    *id = last.id;
                }
                newer
            });
        }
    }

    /// Appends one event; returns it as stored (with its id and timestamp).
    pub async fn append(&self, event: NewEvent) -> Result<Event, EventStoreError> {
        let mut stored = self.append_batch(vec![event]).await?;
        stored.pop().ok_or_else(|| EventStoreError::Storage("the backend stored nothing".into()))
    }

    /// Appends events in one transaction (all or none), in order. The fast way to write many.
    pub async fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventStoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        validate(&events)?;
        let stored = self.run(move |b| b.append(events)).await?;
        self.announce(&stored);
        Ok(stored)
    }

    /// Appends events to a stream if its version is as `expected` (all or none), numbering them
    /// after its last one. [`EventStoreError::Conflict`] if another writer got there first.
    pub async fn append_to_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, EventStoreError> {
        validate_stream(stream)?;
        validate(&events)?;
        let stream = stream.to_string();
        let stored = self.run(move |b| b.append_to_stream(&stream, expected, events)).await?;
        self.announce(&stored);
        Ok(stored)
    }

    /// The events a query selects (refused with the reason if its limit or range is invalid).
    pub async fn query(&self, query: EventQuery) -> Result<Vec<Event>, EventStoreError> {
        let limit = query.checked_limit().map_err(EventStoreError::InvalidQuery)?;
        self.run(move |b| b.query(&query, limit)).await
    }

    /// One event by id.
    pub async fn get(&self, id: EventId) -> Result<Option<Event>, EventStoreError> {
        self.run(move |b| b.get(id)).await
    }

    /// A stream's events with a version greater than `after_version`, oldest first, at most
    /// `limit` ([`MAX_LIMIT`] at most).
    pub async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventStoreError> {
        self.query(EventQuery::new().stream_after(stream, after_version).limit(limit)).await
    }

    /// A stream's current version (0 if it has no events).
    pub async fn stream_version(&self, stream: &str) -> Result<u64, EventStoreError> {
        let stream = stream.to_string();
        self.run(move |b| b.stream_version(&stream)).await
    }

    /// The chain of causes that led to an event: its root cause first, the event itself last.
    pub async fn causes(&self, id: EventId) -> Result<Vec<Event>, EventStoreError> {
        self.run(move |b| {
            let mut chain = vec![b.get(id)?.ok_or(EventStoreError::NotFound(id))?];
            while let Some(parent) = chain.last().and_then(|e| e.causation_id) {
                if chain.len() >= MAX_CHAIN {
                    return Err(EventStoreError::InvalidQuery(format!(
                        "the causal chain of {id} is longer than {MAX_CHAIN} events (a cycle?)"
                    )));
                }
                match b.get(parent)? {
                    Some(e) => chain.push(e),
                    // The cause was removed by retention: the chain starts here.
                    None => break,
                }
            }
            chain.reverse();
            Ok(chain)
        })
        .await
    }

    /// The events between two: the chain from `from` to `to` along causation links (`from`
    /// first), or `None` if `to` does not descend from `from`.
    pub async fn causal_path(
        &self,
        from: EventId,
        to: EventId,
    ) -> Result<Option<Vec<Event>>, EventStoreError> {
        let chain = self.causes(to).await?;
        Ok(chain.iter().position(|e| e.id == from).map(|i| chain[i..].to_vec()))
    }

    /// An event and everything it caused, transitively, as a tree (at most [`MAX_LIMIT`] events).
    pub async fn consequences(&self, id: EventId) -> Result<CausalTree, EventStoreError> {
        self.run(move |b| {
            let root = b.get(id)?.ok_or(EventStoreError::NotFound(id))?;
            // Found breadth first, kept by cause: the tree is grown from this map at the end.
            let mut children: HashMap<EventId, Vec<Event>> = HashMap::new();
            let mut depth = 0;
            let mut frontier = vec![id];
            let mut total = 1;
            while !frontier.is_empty() {
                let next = b.caused_by(&frontier)?;
                total += next.len();
                if total > MAX_LIMIT {
                    return Err(EventStoreError::InvalidQuery(format!(
                        "event {id} has more than {MAX_LIMIT} consequences; query them by correlation id instead"
                    )));
                }
                if depth >= MAX_DEPTH {
                    return Err(EventStoreError::InvalidQuery(format!(
                        "the consequences of event {id} are more than {MAX_DEPTH} causes deep"
                    )));
                }
                depth += 1;
                frontier = next.iter().map(|e| e.id).collect();
                for event in next {
                    if let Some(cause) = event.causation_id {
                        children.entry(cause).or_default().push(event);
                    }
                }
            }
            Ok(grow(root, &mut children))
        })
        .await
    }

    /// Keeps an aggregate's snapshot (an older version never replaces a newer one).
    pub async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.run(move |b| b.save_snapshot(&snapshot)).await
    }

    /// A stream's latest snapshot.
    pub async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, EventStoreError> {
        let stream = stream.to_string();
        self.run(move |b| b.load_snapshot(&stream)).await
    }

    /// Records how far a named reader (a projection) has read.
    pub async fn save_checkpoint(&self, name: &str, position: EventId) -> Result<(), EventStoreError> {
        let name = name.to_string();
        self.run(move |b| b.save_checkpoint(&name, position)).await
    }

    /// How far a named reader has read (0 if never).
    pub async fn load_checkpoint(&self, name: &str) -> Result<EventId, EventStoreError> {
        let name = name.to_string();
        self.run(move |b| b.load_checkpoint(&name)).await
    }

    /// Removes the events outside streams that the retention rules no longer keep.
    pub async fn apply_retention(&self) -> Result<RetentionReport, EventStoreError> {
        let retention = self.retention.clone();
        if !retention.is_bounded() {
            return Ok(RetentionReport::default());
        }
        let report = self.run(move |b| b.apply_retention(&retention, now_ms())).await?;
        if report.removed() > 0 {
            metrics::counter!("foundation_events_retention_removed_total").increment(report.removed());
        }
        Ok(report)
    }

    /// Applies retention every `interval` until the returned task is aborted (or dropped along
    /// with its runtime). Failures are logged and retried at the next tick.
    pub fn retain_every(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = store.apply_retention().await {
                    tracing::warn!(error = %e, "event retention failed; retrying at the next tick");
                }
            }
        })
    }

    /// The store's counts.
    pub async fn stats(&self) -> Result<StoreStats, EventStoreError> {
        self.run(|b| b.stats()).await
    }

    /// The id of the last event appended through this handle or its clones, as it changes:
    /// readers (projections) wait on it instead of polling. Writers in other processes are not
    /// seen here; poll for those.
    pub fn watch_appends(&self) -> watch::Receiver<EventId> {
        self.appended.subscribe()
    }
}

/// The tree under `event`, taking each event's consequences out of `children`.
fn grow(event: Event, children: &mut HashMap<EventId, Vec<Event>>) -> CausalTree {
    let consequences =
        children.remove(&event.id).unwrap_or_default().into_iter().map(|e| grow(e, children)).collect();
    CausalTree { event, consequences }
}
