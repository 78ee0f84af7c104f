//! The storage interface the [`EventStore`](super::EventStore) handle drives, and its error.

use serde_json::Value;

use super::event::{Event, EventId, NewEvent};
use super::query::EventQuery;
use super::retention::{Retention, RetentionReport};

/// What an append to a stream expects the stream's current version to be (optimistic
/// concurrency: the append fails with [`EventStoreError::Conflict`] otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exactly(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` (0: no events) satisfies this expectation.
    pub fn admits(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exactly(v) => current == v,
        }
    }

    /// [`EventStoreError::Conflict`] unless [`admits`](Self::admits)`(current)` (for backends).
    pub fn check(self, stream: &str, current: u64) -> Result<(), EventStoreError> {
        if self.admits(current) {
            return Ok(());
        }
        Err(EventStoreError::Conflict { stream: stream.to_string(), expected: self, actual: current })
    }
}

/// An aggregate's saved state at a version of its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream it was taken from.
    pub stream: String,
    /// The version of the last event folded into it.
    pub version: u64,
    /// The state, as JSON.
    pub state: Value,
}

/// Counts a store keeps about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Events held (streams' included).
    pub events: u64,
    /// Events outside streams (those retention may remove).
    pub unstreamed_events: u64,
    /// Bytes of JSON payload outside streams.
    pub unstreamed_payload_bytes: u64,
    /// The highest id ever assigned (0 before the first append).
    pub last_id: EventId,
}

/// Why a store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// The stream's version is not the one the append expected; nothing was appended.
    #[error(
        "stream `{stream}` is at version {actual}, the append expected {expected:?}; nothing was appended"
    )]
    Conflict {
        /// The stream.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version.
        actual: u64,
    },
    /// An event the store refuses to keep (the reason names the field; or the underlying error,
    /// e.g. of serializing its payload).
    #[error("event refused: {0}")]
    InvalidEvent(#[source] crate::BoxError),
    /// A query the store refuses to run.
    #[error("query refused: {0}")]
    InvalidQuery(String),
    /// No event has this id.
    #[error("no event has id {0}")]
    NotFound(EventId),
    /// The storage failed (the underlying error: SQLite's, or a task that could not run).
    #[error("event storage failed: {0}")]
    Storage(#[source] crate::BoxError),
}

/// A place events are kept. Implemented by the in-memory and SQLite backends; implement it for
/// another database and hand it to [`EventStore::with_backend`](super::EventStore::with_backend).
///
/// Methods are synchronous: the handle runs them on tokio's blocking pool when
/// [`blocking`](EventBackend::blocking) says they may wait on I/O. The handle has already
/// refused invalid events, stream names and queries before a backend sees them.
pub trait EventBackend: Send + Sync + 'static {
    /// Whether calls may block on I/O (run on the blocking pool).
    fn blocking(&self) -> bool;
    /// Appends events outside any stream, all or none, in order; returns them as stored.
    fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventStoreError>;
    /// Appends events to a stream if its version is as expected, all or none.
    fn append_to_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, EventStoreError>;
    /// The events a (checked) query selects, at most `limit`.
    fn query(&self, query: &EventQuery, limit: usize) -> Result<Vec<Event>, EventStoreError>;
    /// One event by id.
    fn get(&self, id: EventId) -> Result<Option<Event>, EventStoreError>;
    /// The events directly caused by any of these, in id order.
    fn caused_by(&self, ids: &[EventId]) -> Result<Vec<Event>, EventStoreError>;
    /// A stream's version: its last event's version, 0 if it has none.
    fn stream_version(&self, stream: &str) -> Result<u64, EventStoreError>;
    /// Keeps a snapshot, replacing an older one of the same stream.
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), EventStoreError>;
    /// The latest snapshot of a stream.
    fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, EventStoreError>;
    /// Records how far a named reader (a projection) has got; a position never goes back.
    fn save_checkpoint(&self, name: &str, position: EventId) -> Result<(), EventStoreError>;
    /// How far a named reader has got (0: from the start).
    fn load_checkpoint(&self, name: &str) -> Result<EventId, EventStoreError>;
    /// Removes events outside streams that the retention rules say are too old or too many.
    fn apply_retention(&self, retention: &Retention, now_ms: i64)
    -> Result<RetentionReport, EventStoreError>;
    /// The store's counts.
    fn stats(&self) -> Result<StoreStats, EventStoreError>;
}
