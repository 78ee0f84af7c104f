//! The metric families `dspex-optimizer` records, for [`Telemetry::describe`]
//! (see [`foundation_core::telemetry::catalog`]).
//!
//! [`Telemetry::describe`]: foundation_core::Telemetry::describe

use foundation_core::telemetry::catalog::MetricFamily;

/// Every family this crate records: name, kind, unit and help text.
pub const FAMILIES: &[MetricFamily] = &[MetricFamily::counter(
    "foundation_optimization_evaluations_total",
    "Examples a worker of the optimization service evaluated, by run (capped like every label: past 256 runs, `other`) and outcome (ok or error).",
)];
