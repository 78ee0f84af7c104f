//! Telemetry: counters, gauges and histograms on the `metrics` facade, percentiles readable in
//! code, and a Prometheus exporter served over HTTP.
//!
//! [`Telemetry`] is itself a [`metrics::Recorder`]. Nothing global is installed unless asked:
//! call [`Telemetry::install_global`] in a program that owns its process, or use
//! [`metrics::with_local_recorder`] in an embedding that keeps its own recorder.
//!
//! ```
//! use foundation_core::config::TelemetryConfig;
//! use foundation_core::telemetry::Telemetry;
//!
//! let telemetry = Telemetry::new(&TelemetryConfig::default())?;
//! metrics::with_local_recorder(&telemetry, || {
//!     let latency = metrics::histogram!("handler_seconds", "actor" => "worker");
//!     for ms in 1..=100 {
//!         latency.record(ms as f64 / 1000.0);
//!     }
//! });
//! let p = telemetry.percentiles("handler_seconds", &[("actor", "worker")]).unwrap();
//! let p99 = p.p99().unwrap();
//! assert!((p99 - 0.099).abs() <= 0.099 * 0.01); // within the configured 1 % relative error
//! assert!(telemetry.render().contains("handler_seconds{actor=\"worker\",quantile=\"0.99\"}"));
//! # Ok::<(), foundation_core::telemetry::TelemetryError>(())
//! ```
//!
//! # Percentile accuracy
//!
//! Every reported quantile `q` is within `max_relative_error` (default 1 %) of the exact value
//! of rank `⌊q·(n−1)⌋` among the samples in the window (DDSketch's guarantee; tested against
//! exact quantiles in `tests/telemetry.rs`). Min, max, mean, count and sum are exact.
//!
//! # Exposition
//!
//! Counters and gauges are rendered by `metrics-exporter-prometheus`; histograms are rendered
//! by us as Prometheus summaries (the configured quantiles over the window, with lifetime
//! `_sum` and `_count`), from the same sketches that [`Telemetry::percentiles`] reads, so code
//! and Prometheus always agree. Because the exporter's recorder never holds histograms, it needs
//! no periodic upkeep. Help lines come from the crates' [`catalog`]s given to
//! [`Telemetry::describe`]; the `process_*` families are read from `/proc` at each render.

pub mod catalog;
#[cfg(feature = "metrics-server")]
mod exporter;
mod labels;
mod process;
mod sketch;
mod sketch_wire;
pub mod slo;

use crate::sync::RwLockRecover;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::formatting::{
    sanitize_label_key, sanitize_label_value, sanitize_metric_name, write_help_line, write_type_line,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::registry::{Registry, Storage};

#[cfg(feature = "metrics-server")]
pub use exporter::MetricsServer;
pub use labels::{MAX_LABEL_BYTES, MAX_LABEL_VALUES, OTHER_LABEL, bounded_label};
pub use sketch::Percentiles;
pub use slo::SloStatus;

use crate::config::{ConfigError, TelemetryConfig, Validator};
use sketch::{WindowSpec, WindowedHistogram};

/// Errors from setting up or serving telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The telemetry configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another global `metrics` recorder is already installed in this process.
    #[error("a global metrics recorder is already installed in this process")]
    AlreadyInstalled,
    /// The exporter could not listen on its address.
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Two readings with different error bounds cannot be merged.
    #[error("cannot merge percentiles recorded with different max_relative_error")]
    IncompatibleSketches,
    /// A relative error outside 0.001 to 0.1 asked of a new reading.
    #[error("a relative error of {0} (expected 0.001 to 0.1)")]
    RelativeError(f64),
    /// Merging would count more samples than a reading holds (2^62).
    #[error("merging these readings would count more than 2^62 samples")]
    TooManySamples,
}

/// A node's telemetry: a `metrics` recorder, percentile readings and Prometheus text.
/// Cheap to clone; clones share the same metrics.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    prometheus: PrometheusRecorder,
    handle: PrometheusHandle,
    histograms: Registry<Key, HistogramStorage>,
    histogram_help: RwLock<HashMap<String, (Option<Unit>, SharedString)>>,
    quantiles: Vec<f64>,
    /// The configured service-level objectives.
    slos: Arc<Vec<Arc<slo::Slo>>>,
}

impl Telemetry {
    /// Builds telemetry from its configuration (validated here too).
    pub fn new(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let mut v = Validator::default();
        config.validate(&mut v);
        let issues = v.into_issues();
        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues).into());
        }
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let registrar = slo::Registrar(&prometheus);
        let slos: Arc<Vec<Arc<slo::Slo>>> = Arc::new(
            config.slos.iter().map(|(name, c)| Arc::new(slo::Slo::new(name, c, &registrar))).collect(),
        );
        let spec = WindowSpec {
            alpha: config.max_relative_error,
            bucket: config.window / config.window_buckets,
            buckets: config.window_buckets,
            origin: Instant::now(),
        };
        Ok(Telemetry {
            inner: Arc::new(Inner {
                prometheus,
                handle,
                histograms: Registry::new(HistogramStorage { spec, slos: slos.clone() }),
                histogram_help: RwLock::default(),
                quantiles: config.quantiles.clone(),
                slos,
            }),
        })
    }

    /// Installs this telemetry as the process-wide `metrics` recorder.
    pub fn install_global(&self) -> Result<(), TelemetryError> {
        metrics::set_global_recorder(self.clone()).map_err(|_| TelemetryError::AlreadyInstalled)
    }

    /// The current reading of one histogram. Labels match as a set, in any order.
    pub fn percentiles(&self, name: &str, labels: &[(&str, &str)]) -> Option<Percentiles> {
        let now = Instant::now();
        let mut found = None;
        self.inner.histograms.visit_histograms(|key, h| {
            if found.is_none() && key.name() == name && same_labels(key, labels) {
                found = Some(h.snapshot_at(now));
            }
        });
        found
    }

    /// Where each configured service-level objective stands (`[telemetry.slos.NAME]`): its
    /// good and bad samples and its burn rates, by name.
    pub fn slos(&self) -> Vec<SloStatus> {
        let now = Instant::now();
        self.inner.slos.iter().map(|s| s.status(now)).collect()
    }

    /// Readings of every histogram, by key.
    pub fn histograms(&self) -> Vec<(Key, Percentiles)> {
        let now = Instant::now();
        let mut all = Vec::new();
        self.inner.histograms.visit_histograms(|key, h| all.push((key.clone(), h.snapshot_at(now))));
        all
    }

    /// The Prometheus text exposition of every metric, and the standard `process_*` families
    /// of this process (CPU seconds, memory, descriptors, start time; where `/proc` exists and
    /// the program records no `process_*` family of its own).
    pub fn render(&self) -> String {
        let now = Instant::now();
        for slo in self.inner.slos.iter() {
            slo.update(now);
        }
        let mut out = self.inner.handle.render();
        let mut by_name: BTreeMap<String, Vec<(String, Percentiles)>> = BTreeMap::new();
        for (key, reading) in self.histograms() {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}=\"{}\"", sanitize_label_key(l.key()), sanitize_label_value(l.value())))
                .collect();
            by_name.entry(key.name().to_string()).or_default().push((labels.join(","), reading));
        }
        let help = self.inner.histogram_help.read_or_recover();
        for (name, mut series) in by_name {
            series.sort_by(|a, b| a.0.cmp(&b.0));
            let metric = sanitize_metric_name(&name);
            // the unit is in the name (`_seconds`): the exporter would append it to the HELP
            // line's name only, which would then name another family than the TYPE line
            if let Some((_, description)) = help.get(&name) {
                write_help_line(&mut out, &metric, None, None, description);
            }
            write_type_line(&mut out, &metric, None, None, "summary");
            for (labels, reading) in series {
                let sep = if labels.is_empty() { "" } else { "," };
                for q in &self.inner.quantiles {
                    let value = reading.quantile(*q).unwrap_or(f64::NAN);
                    out.push_str(&format!("{metric}{{{labels}{sep}quantile=\"{q}\"}} {value}\n"));
                }
                let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
                out.push_str(&format!("{metric}_sum{braces} {}\n", reading.total_sum()));
                out.push_str(&format!("{metric}_count{braces} {}\n", reading.total_count()));
            }
            out.push('\n');
        }
        // (unless the program records process metrics of its own: a family twice is invalid)
        if !out.contains("# TYPE process_")
            && let Some(reading) = process::read()
        {
            process::render(&mut out, &reading);
        }
        out
    }

    /// Serves `GET /metrics` (Prometheus text) on `addr` from the current tokio runtime until
    /// the returned server is shut down or dropped. Port 0 picks a free port; see
    /// [`MetricsServer::local_addr`]. (Feature `metrics-server`, on by default.)
    #[cfg(feature = "metrics-server")]
    pub async fn serve(&self, addr: std::net::SocketAddr) -> Result<MetricsServer, TelemetryError> {
        exporter::serve(self.clone(), addr).await
    }
}

fn same_labels(key: &Key, wanted: &[(&str, &str)]) -> bool {
    key.labels().count() == wanted.len()
        && wanted.iter().all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

impl Recorder for Telemetry {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let mut help = self.inner.histogram_help.write_or_recover();
        help.entry(key.as_str().to_string()).or_insert((unit, description));
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.prometheus.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.prometheus.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.inner.histograms.get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("quantiles", &self.inner.quantiles).finish_non_exhaustive()
    }
}

/// Registry storage that only ever holds histograms (counters and gauges go to the exporter's
/// recorder); the counter and gauge types exist to satisfy the trait.
struct HistogramStorage {
    spec: WindowSpec,
    slos: Arc<Vec<Arc<slo::Slo>>>,
}

impl Storage<Key> for HistogramStorage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<WindowedHistogram>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::default()
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::default()
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        let slos = self.slos.iter().filter(|s| s.matches(key)).cloned().collect();
        Arc::new(WindowedHistogram::new(self.spec.clone(), slos))
    }
}
