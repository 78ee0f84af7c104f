//! A structured event store: what happened, when, in which operation, caused by what, for whom.
//!
//! Every [`Event`] has a type, a schema version, a timestamp, an optional correlation id (the
//! operation it belongs to), an optional causation id (the event that caused it), an optional
//! tenant and a JSON payload; events appended to a *stream* (an aggregate's journal) also carry
//! their version in it, with optimistic concurrency on appends ([`ExpectedVersion`]).
//!
//! - [`EventStore`]: the handle. [`EventStore::in_memory`], or [`EventStore::open_sqlite`] for
//!   the durable default (one SQLite file in WAL mode; the fsync policy is in [`sqlite`]).
//! - [`EventQuery`]: by type, time range, correlation id, cause, tenant, stream and payload
//!   fields, ordered by id, with a limit (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
//! - Causality: [`EventStore::causes`] (the chain that led to an event),
//!   [`EventStore::causal_path`] (from one event to another) and [`EventStore::consequences`]
//!   (the tree of everything an event caused).
//! - [`Retention`] by age, count and payload bytes, for events outside streams.
//! - [`TenantEvents`]: one tenant's view, which can neither read nor write another's events.
//!
//! ```
//! use foundation_core::events::{EventQuery, EventStore, NewEvent};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = EventStore::in_memory(); // or EventStore::open_sqlite(SqliteOptions::new("events.db"))
//! let asked = store.append(NewEvent::new("question.asked", json!({"text": "2+2?"})).correlation("req-1")).await?;
//! let answered = store
//!     .append(NewEvent::new("answer.given", json!({"text": "4", "model": "sim"})).caused_by(&asked))
//!     .await?;
//!
//! // Everything request req-1 did, newest first:
//! let all = store.query(EventQuery::new().correlation("req-1").limit(10)).await?;
//! assert_eq!(all.len(), 2);
//! // Which answers came from the simulated model:
//! let sim = store.query(EventQuery::new().event_type("answer.given").field_eq("model", "sim")).await?;
//! assert_eq!(sim[0].id, answered.id);
//! // What led to the answer:
//! let chain = store.causes(answered.id).await?;
//! assert_eq!(chain.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["question.asked", "answer.given"]);
//! # Ok::<_, foundation_core::events::EventStoreError>(())
//! # }).unwrap();
//! ```

mod backend;
mod event;
mod memory;
mod query;
mod retention;
pub mod sqlite;
mod store;
mod tenant_view;

pub use backend::{EventBackend, EventStoreError, ExpectedVersion, Snapshot, StoreStats};
pub use event::{Event, EventId, MAX_NAME_BYTES, NewEvent, StreamPosition};
pub use memory::MemoryBackend;
pub use query::{CausalTree, DEFAULT_LIMIT, EventQuery, MAX_LIMIT, Order};
pub use retention::{Retention, RetentionReport};
pub use sqlite::{SqliteBackend, SqliteOptions, Synchronous};
pub use store::EventStore;
pub use tenant_view::TenantEvents;
