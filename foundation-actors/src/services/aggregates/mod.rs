//! Event sourcing and CQRS on the [event store](foundation_core::events): aggregates that decide
//! commands and are rebuilt from their journals, and projections that build read models.
//!
//! - [`Aggregate`]: `handle` a command into events, `apply` an event to the state.
//! - [`Aggregates`]: one actor per aggregate id, rebuilt from its latest snapshot and the events
//!   after it; commands to one aggregate are decided in order; optimistic concurrency on the
//!   stream's version ([`Aggregates::execute_at`], and between processes sharing a store);
//!   a snapshot every [`AggregateConfig::snapshot_every`] events.
//! - [`ProjectionHandle`]: runs a [`Projection`] over the store's events, records its position
//!   after each batch and resumes from it after a restart.
//!
//! An accepted command's events are committed before `execute` returns, in one transaction:
//! with the SQLite store, a crash (even `kill -9`) loses no acknowledged event and leaves no
//! half-written command (`tests/event_sourcing_crash.rs` kills a real writer process).
//!
//! ```
//! use foundation_actors::aggregates::{Aggregate, AggregateConfig, Aggregates};
//! use foundation_core::events::EventStore;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { total: u64 }
//! #[derive(Clone, Serialize, Deserialize)]
//! enum Event { Added(u64) }
//!
//! impl Aggregate for Counter {
//!     const KIND: &'static str = "counter";
//!     type Command = u64;
//!     type Event = Event;
//!     type Error = String;
//!     fn handle(&self, n: &u64) -> Result<Vec<Event>, String> {
//!         if *n == 0 { Err("adding 0 changes nothing".into()) } else { Ok(vec![Event::Added(*n)]) }
//!     }
//!     fn apply(&mut self, Event::Added(n): &Event) { self.total += n; }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let counters = Aggregates::<Counter>::new(EventStore::in_memory(), AggregateConfig::default());
//! counters.execute("visits", 2).await.unwrap();
//! let done = counters.execute("visits", 3).await.unwrap();
//! assert_eq!(done.version, 2);
//! assert!(counters.execute("visits", 0).await.is_err());
//! assert_eq!(counters.read("visits", |c, _| c.total).await.unwrap(), 5);
//! // Another writer read version 1 and lost the race:
//! assert!(counters.execute_at("visits", 1, 10).await.is_err());
//! # });
//! ```

mod actor;
mod aggregate;
mod handle;
mod projection;

pub use aggregate::Aggregate;
pub use handle::{AggregateConfig, AggregateError, Aggregates, Executed};
pub use projection::{Projection, ProjectionConfig, ProjectionHandle};
