//! Distributed tracing across actors and nodes for Foundation: traces, cluster traces, a
//! cluster profiler and a live dashboard.
//!
//! - [`context`]: W3C `traceparent` parsing and formatting, and a [`Sampler`] that decides from
//!   the trace id (so every node decides alike).
//! - [`recorder`]: a `tracing` layer ([`TraceLayer`]) that follows trace context through spans —
//!   a span continuing a carried context (`continue_trace!`, or a `traceparent` field), one with
//!   `trace_root = true` starting a sampled-or-not trace, nested spans joining their parent's —
//!   and keeps finished spans of sampled traces in a bounded [`TraceBuffer`] (oldest dropped and
//!   counted), each with the events emitted inside it (bounded) and whether it ended in error.
//! - Propagation: [`layer`] installs the hook through which Foundation's handles carry the
//!   current context with every message — to other nodes in the wire frame (`Wire::span`
//!   continues it), inside a node through channels (`Subscription::recv_traced`), pipeline
//!   stages and `foundation_actors::traced::Traced` for a user's own actor messages.
//! - [`timeline`]: merging the parts of a trace from several nodes, parents before children,
//!   with clock skew corrected so that no child starts before its parent, orphans and missing
//!   nodes reported, spans that ended in error listed. [`export`]: Chrome trace event JSON
//!   (Perfetto; events as instant events) and JSON lines; `otlp` (cargo feature `otlp`):
//!   OTLP/HTTP to an OpenTelemetry collector (events as span events, errors as error status).
//! - [`participant`]: a per-node participant answering with its part of a trace, and
//!   [`participant::collect`] merging every node's part, naming the nodes that did not answer.
//! - [`session`]: cluster traces — [`start_cluster_trace`] over a [`TraceScope`] (nodes, rate),
//!   [`stop_cluster_trace`], [`collect_cluster_trace`]; a coordinator singleton per trace that
//!   fails over.
//! - [`profiler`]: per node and per kind of work (span name), runs, time and a DDSketch of
//!   durations, since start and over a profile window ([`participant::start_profile`],
//!   [`participant::stop_profile`]); [`participant::profiles`] collects every node's, and
//!   [`profiler::analyze`] names bottlenecks (CPU, memory, growing queues, uneven load;
//!   observers left out) and hotspots merged across nodes.
//! - [`dashboard`]: the live dashboard (nodes and health, optimization runs, hotspots, cluster
//!   traces with start and stop buttons and their timelines, over server-sent events; trace
//!   downloads; an access token off loopback).
//!
//! ```
//! use scope_tracer::*;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let buffer = TraceBuffer::new(1024);
//! let subscriber = tracing_subscriber::registry().with(TraceLayer::new("n1", Sampler::always(), buffer.clone()));
//! let traceparent = tracing::subscriber::with_default(subscriber, || {
//!     let root = tracing::info_span!("request", trace_root = true, user = "ada");
//!     let _in = root.enter();
//!     let _step = tracing::info_span!("lookup").entered();
//!     current_traceparent().unwrap()
//! });
//! let trace_id = TraceContext::parse(&traceparent).unwrap().trace_hex();
//! let timeline = timeline::merge(&trace_id, buffer.trace(&trace_id), Default::default());
//! assert_eq!(timeline.spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["request", "lookup"]);
//! assert!(export::chrome_trace(&timeline)["traceEvents"].as_array().unwrap().len() >= 2);
//! ```

pub mod context;
pub mod dashboard;
pub mod export;
pub mod metric_catalog;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod participant;
pub mod profiler;
pub mod recorder;
pub mod session;
pub mod timeline;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static BUFFER: OnceLock<TraceBuffer> = OnceLock::new();
static PROFILER: OnceLock<profiler::Profiler> = OnceLock::new();

/// This process's profiler: what [`profile_layer`] records into and a participant reports.
pub fn profiler() -> &'static profiler::Profiler {
    PROFILER.get_or_init(profiler::Profiler::default)
}

/// This process's profiling layer (every span timed by name, into [`profiler`]).
pub fn profile_layer() -> profiler::ProfileLayer {
    profiler::ProfileLayer::new(profiler().clone())
}
/// The process's sampling rate, as f64 bits (0 until [`layer`] sets it).
static RATE: AtomicU64 = AtomicU64::new(0);

/// Whether a new trace started here now is sampled, at the rate given to [`layer`] (never
/// before a layer is installed). What [`root_span!`] asks before creating anything.
pub fn sample_new_trace() -> bool {
    let rate = f64::from_bits(RATE.load(Ordering::Relaxed)).max(session::boost());
    rate > 0.0 && foundation_core::random::unit() < rate
}

/// Starts a trace at the edge: a root span if the new trace is sampled, else a disabled span
/// that costs nothing (so that unsampled requests create no span at all). Same arguments as
/// `tracing::info_span!`.
///
/// ```
/// let span = scope_tracer::root_span!("request", path = "/order");
/// let _in = span.enter();
/// ```
#[macro_export]
macro_rules! root_span {
    ($name:expr $(, $($fields:tt)*)?) => {
        if $crate::sample_new_trace() {
            ::tracing::info_span!($name, trace_sampled = true $(, $($fields)*)?)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// This process's trace buffer (created with [`recorder::DEFAULT_CAPACITY`] on first use): what
/// [`layer`] records into and a participant answers from.
pub fn buffer() -> &'static TraceBuffer {
    BUFFER.get_or_init(|| TraceBuffer::new(recorder::DEFAULT_CAPACITY))
}

/// This process's recording layer for `node`, sampling new traces at `rate`, into [`buffer`];
/// also installs trace propagation, so that every message Foundation sends to another node
/// carries the current `traceparent` (see `foundation_core::trace_context`).
pub fn layer(node: &str, rate: f64) -> TraceLayer {
    foundation_core::trace_context::install(current_parent);
    RATE.store(Sampler::new(rate).rate().to_bits(), Ordering::Relaxed);
    TraceLayer::new(node, Sampler::new(rate), buffer().clone())
}

pub use context::{Sampler, TraceContext, TraceparentError};
pub use recorder::{
    SpanEvent, SpanRecord, TraceBuffer, TraceLayer, current_context, current_parent, current_traceparent,
};
pub use session::{
    SessionReport, TraceScope, collect_cluster_trace, sessions, start_cluster_trace, stop_cluster_trace,
};
pub use timeline::{SpanError, Timeline};
