//! The metric families `scope-tracer` records, for [`Telemetry::describe`]
//! (see [`foundation_core::telemetry::catalog`]).
//!
//! [`Telemetry::describe`]: foundation_core::Telemetry::describe

use foundation_core::telemetry::catalog::MetricFamily;

/// Every family this crate records: name, kind, unit and help text.
pub const FAMILIES: &[MetricFamily] = &[MetricFamily::counter(
    "scope_tracer_spans_dropped_total",
    "Closed spans evicted from the recorder's buffer (the oldest first) to stay within its bound.",
)];
