//! The metric families a crate records, with their help text and unit, so that an exposition
//! says what every series means (`# HELP`).
//!
//! Each crate lists its own families (`foundation_core::telemetry::catalog::FAMILIES`,
//! `foundation_actors::metric_catalog::FAMILIES`, `foundation_cluster::metric_catalog::FAMILIES`,
//! `scope_tracer::metric_catalog::FAMILIES`, `dspex_optimizer::metric_catalog::FAMILIES`); a program gives them to [`Telemetry::describe`]
//! once, before or after the series exist. The workspace's tests check that every metric a crate
//! records is in its list with the same kind, that every listed one is recorded, and that a
//! node's `/metrics` passes `promtool check metrics`.
//!
//! Naming (Prometheus conventions, which `promtool` checks): counters end in `_total`, nothing
//! else does; a unit is spelled out in the name in its base form (`_seconds`, `_bytes`): the
//! text format has no unit line, so the name is where a scraper finds it.
//!
//! ```
//! use foundation_core::config::TelemetryConfig;
//! use foundation_core::telemetry::{catalog, Telemetry};
//!
//! let telemetry = Telemetry::new(&TelemetryConfig::default())?;
//! telemetry.describe(catalog::FAMILIES);
//! metrics::with_local_recorder(&telemetry, || {
//!     metrics::counter!("foundation_events_retention_removed_total").increment(3);
//! });
//! assert!(telemetry.render().contains("# HELP foundation_events_retention_removed_total"));
//! # Ok::<(), foundation_core::telemetry::TelemetryError>(())
//! ```

use super::Telemetry;
use metrics::{Recorder, Unit};

/// What kind of series a family is (as recorded through the `metrics` macros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// `metrics::counter!`: a count that only grows (rendered as a Prometheus counter).
    Counter,
    /// `metrics::gauge!`: a value that goes up and down.
    Gauge,
    /// `metrics::histogram!`: samples, rendered as a summary (quantiles, `_sum`, `_count`).
    Histogram,
}

/// One metric family: its name, kind, unit and what it counts.
#[derive(Clone, Copy, Debug)]
pub struct MetricFamily {
    /// The metric's name, as recorded.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Its unit, if it has one.
    pub unit: Option<Unit>,
    /// One sentence for `# HELP`: what is counted, and its labels.
    pub help: &'static str,
}

impl MetricFamily {
    /// A counter.
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        MetricFamily { name, kind: MetricKind::Counter, unit: None, help }
    }

    /// A gauge.
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        MetricFamily { name, kind: MetricKind::Gauge, unit: None, help }
    }

    /// A histogram.
    pub const fn histogram(name: &'static str, help: &'static str) -> Self {
        MetricFamily { name, kind: MetricKind::Histogram, unit: None, help }
    }

    /// The same family with a unit.
    pub const fn in_unit(self, unit: Unit) -> Self {
        MetricFamily { unit: Some(unit), ..self }
    }

    /// Why this family's name breaks a Prometheus naming rule, if it does.
    pub fn naming_problem(&self) -> Option<String> {
        let name = self.name;
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Some(format!("{name}: a name is lowercase letters, digits and `_`"));
        }
        match (self.kind, name.ends_with("_total")) {
            (MetricKind::Counter, false) => {
                return Some(format!("{name}: a counter's name ends in `_total`"));
            }
            (MetricKind::Gauge | MetricKind::Histogram, true) => {
                return Some(format!("{name}: only a counter's name ends in `_total`"));
            }
            _ => {}
        }
        let unit_suffix = match self.unit {
            Some(Unit::Seconds) => Some("_seconds"),
            Some(Unit::Bytes) => Some("_bytes"),
            None | Some(Unit::Count) => None,
            Some(other) => {
                return Some(format!(
                    "{name}: {} is not a base unit (Prometheus wants seconds or bytes in the name)",
                    other.as_str()
                ));
            }
        };
        if let Some(suffix) = unit_suffix
            && !name.trim_end_matches("_total").ends_with(suffix)
        {
            return Some(format!("{name}: a family in {suffix} has it at the end of its name"));
        }
        if self.help.trim().is_empty() {
            return Some(format!("{name}: no help text"));
        }
        None
    }
}

impl Telemetry {
    /// Gives every family's help text and unit to this telemetry: its exposition carries a
    /// `# HELP` line for each family once it has a series (families never recorded are not
    /// rendered). Safe to call more than once; the first description of a name stays.
    pub fn describe<'a>(&self, families: impl IntoIterator<Item = &'a MetricFamily>) {
        describe_to(self, families);
    }
}

/// [`Telemetry::describe`] for any `metrics` recorder: a program that exports through its own
/// (`metrics_exporter_prometheus`'s, say) gives it the families' help text this way, or with
/// `metrics::with_recorder(|r| describe_to(r, ...))` once its recorder is installed.
pub fn describe_to<'a>(recorder: &dyn Recorder, families: impl IntoIterator<Item = &'a MetricFamily>) {
    for family in families {
        let name = metrics::KeyName::from(family.name);
        let help = metrics::SharedString::from(family.help);
        match family.kind {
            MetricKind::Counter => recorder.describe_counter(name, family.unit, help),
            MetricKind::Gauge => recorder.describe_gauge(name, family.unit, help),
            MetricKind::Histogram => recorder.describe_histogram(name, family.unit, help),
        }
    }
}

/// The families `foundation-core` records.
pub const FAMILIES: &[MetricFamily] = &[
    MetricFamily::counter(
        "foundation_slo_events_total",
        "Samples judged by each service-level objective ([telemetry.slos.NAME]), by objective and outcome (good: at or under its threshold).",
    ),
    MetricFamily::gauge(
        "foundation_slo_objective",
        "The share of good samples each service-level objective wants, by objective.",
    ),
    MetricFamily::gauge(
        "foundation_slo_burn_rate",
        "How fast each service-level objective spends its error budget over a window (1: exactly the budget), by objective and window (5m, 30m, 1h, 6h).",
    ),
    MetricFamily::counter("foundation_cache_hits_total", "Lookups answered from a cache, by cache and tier."),
    MetricFamily::counter(
        "foundation_cache_misses_total",
        "Lookups a cache could not answer, by cache and tier.",
    ),
    MetricFamily::gauge(
        "foundation_cache_saved_cost",
        "Cost (in the provider's currency, USD for the bundled price tables) that cache hits saved, by cache and tier.",
    ),
    MetricFamily::counter(
        "foundation_events_retention_removed_total",
        "Events removed from the event store by its retention policy.",
    ),
];
