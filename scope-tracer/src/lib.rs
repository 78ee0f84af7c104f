//! Distributed tracing across actors and nodes for Foundation: trace context on every message,
//! per-node participants, collection into one timeline, export to Perfetto, a cluster profiler
//! and a live web dashboard.
//!
//! Not built yet: this crate is planned in the project's issue 7 (tracer).
