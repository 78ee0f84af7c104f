//! A histogram over a sliding time window, with percentiles of bounded relative error.
//!
//! Each histogram keeps one DDSketch per sub-window (`window / window_buckets`); a reading merges
//! the sub-windows still inside the window. DDSketch guarantees that the value reported for
//! quantile `q` is within a relative error `alpha` of the exact value of rank `⌊q·(n−1)⌋` in the
//! sorted samples, and sketches merge without losing that guarantee — so per-node readings can
//! be merged into cluster-wide ones later. Written on `sketches-ddsketch` rather than the
//! exporter's own summaries because those cannot be read back in code.

use crate::sync::MutexRecover;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sketches_ddsketch::{Config, DDSketch};

/// Values with magnitude below this count as zero.
pub(crate) const MIN_VALUE: f64 = 1e-9;
/// Ratio between the largest and smallest sample (of one sign) that a sketch covers without
/// collapsing buckets, i.e. with the error bound intact: nanoseconds to weeks, bytes to petabytes.
const COVERED_RATIO: f64 = 1e15;

/// Buckets needed to cover [`COVERED_RATIO`] at relative error `alpha`. A sketch only allocates
/// the buckets between its smallest and largest samples (in steps of 128, 8 bytes each), so this
/// is a cap, not an allocation: at 1 % error, latencies from 1 ms to 10 s use about 470 buckets.
pub(crate) fn max_bins(alpha: f64) -> u32 {
    let gamma = 1.0 + 2.0 * alpha / (1.0 - alpha);
    ((COVERED_RATIO.ln() / gamma.ln()).ceil() as u32).saturating_add(128)
}

/// The most samples a merged reading holds (its counters are `u64`, unchecked by the sketch).
const MAX_MERGED: u64 = 1 << 62;

/// The layout shared by every histogram of one [`Telemetry`](super::Telemetry).
#[derive(Debug, Clone)]
pub(crate) struct WindowSpec {
    pub(crate) alpha: f64,
    pub(crate) bucket: Duration,
    pub(crate) buckets: u32,
    pub(crate) origin: Instant,
}

impl WindowSpec {
    fn sketch(&self) -> DDSketch {
        DDSketch::new(Config::new(self.alpha, max_bins(self.alpha), MIN_VALUE))
    }

    fn epoch(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        (nanos / self.bucket.as_nanos().max(1)) as u64
    }
}

/// One histogram: windowed sketches plus lifetime count and sum (Prometheus `_count`, `_sum`).
pub(crate) struct WindowedHistogram {
    spec: WindowSpec,
    state: Mutex<State>,
    /// The service-level objectives that judge its samples.
    slos: Vec<std::sync::Arc<super::slo::Slo>>,
}

struct State {
    sketches: Vec<DDSketch>,
    epoch: u64,
    total_count: u64,
    total_sum: f64,
    rejected: u64,
}

impl WindowedHistogram {
    pub(crate) fn new(spec: WindowSpec, slos: Vec<std::sync::Arc<super::slo::Slo>>) -> Self {
        let sketches = (0..spec.buckets).map(|_| spec.sketch()).collect();
        let epoch = spec.epoch(Instant::now());
        Self {
            spec,
            state: Mutex::new(State { sketches, epoch, total_count: 0, total_sum: 0.0, rejected: 0 }),
            slos,
        }
    }

    pub(crate) fn record_at(&self, value: f64, now: Instant) {
        let epoch = self.spec.epoch(now);
        let mut s = self.state.lock_or_recover();
        if !value.is_finite() {
            // NaN or infinity would poison sums and sketches; count them instead.
            s.rejected += 1;
            return;
        }
        s.advance(epoch, &self.spec);
        let slot = (epoch % u64::from(self.spec.buckets)) as usize;
        s.sketches[slot].add(value);
        s.total_count += 1;
        s.total_sum += value;
        drop(s);
        for slo in &self.slos {
            slo.judge(value, now);
        }
    }

    pub(crate) fn snapshot_at(&self, now: Instant) -> Percentiles {
        let epoch = self.spec.epoch(now);
        let mut s = self.state.lock_or_recover();
        s.advance(epoch, &self.spec);
        let mut merged = self.spec.sketch();
        for sketch in &s.sketches {
            // Sketches built from one config always merge.
            let _ = merged.merge(sketch);
        }
        Percentiles {
            window: merged,
            total_count: s.total_count,
            total_sum: s.total_sum,
            rejected: s.rejected,
        }
    }
}

impl metrics::HistogramFn for WindowedHistogram {
    fn record(&self, value: f64) {
        self.record_at(value, Instant::now());
    }
}

impl State {
    /// Moves the window forward to `epoch`, emptying the sub-windows that fell out of it.
    fn advance(&mut self, epoch: u64, spec: &WindowSpec) {
        if epoch <= self.epoch {
            return;
        }
        let n = u64::from(spec.buckets);
        let stale = (epoch - self.epoch).min(n);
        for e in (epoch - stale + 1)..=epoch {
            self.sketches[(e % n) as usize] = spec.sketch();
        }
        self.epoch = epoch;
    }
}

/// A reading of one histogram: percentiles over the sliding window, lifetime count and sum.
/// Serializable, so that readings of several nodes can be merged in one place
/// (`foundation_cluster::cluster_metrics`); a reading is deserialized only if it is a sketch
/// this crate could have made (checked field by field: see `sketch_wire.rs`), so a made-up one
/// is an error, never a merge that allocates without bound or panics.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "super::sketch_wire::RawPercentiles")]
pub struct Percentiles {
    window: DDSketch,
    total_count: u64,
    total_sum: f64,
    rejected: u64,
}

impl Percentiles {
    /// An empty reading to record samples into directly, within `max_relative_error` (0.001 to
    /// 0.1, as `telemetry.max_relative_error`). It has no sliding window: every sample
    /// [`record`](Self::record)ed stays in it (a profile over a window is one such reading per
    /// window). Readings merge only with readings of the same error bound.
    pub fn new(max_relative_error: f64) -> Result<Self, super::TelemetryError> {
        if !(0.001..=0.1).contains(&max_relative_error) {
            return Err(super::TelemetryError::RelativeError(max_relative_error));
        }
        let config = Config::new(max_relative_error, max_bins(max_relative_error), MIN_VALUE);
        Ok(Percentiles { window: DDSketch::new(config), total_count: 0, total_sum: 0.0, rejected: 0 })
    }

    /// An empty reading at the default error bound (`telemetry.max_relative_error`'s default,
    /// 1 %): what [`Default`] gives.
    fn with_default_error() -> Self {
        let alpha = crate::config::DEFAULT_MAX_RELATIVE_ERROR;
        let config = Config::new(alpha, max_bins(alpha), MIN_VALUE);
        Percentiles { window: DDSketch::new(config), total_count: 0, total_sum: 0.0, rejected: 0 }
    }

    /// Records one sample (NaN and infinities are refused and counted in
    /// [`rejected`](Self::rejected)); past 2^62 samples it is counted as rejected too.
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() || self.count() >= MAX_MERGED {
            self.rejected = self.rejected.saturating_add(1);
            return;
        }
        self.window.add(value);
        self.total_count = self.total_count.saturating_add(1);
        self.total_sum += value;
    }

    pub(crate) fn from_parts(window: DDSketch, total_count: u64, total_sum: f64, rejected: u64) -> Self {
        Percentiles { window, total_count, total_sum, rejected }
    }

    /// The value at quantile `q` (0 ≤ q ≤ 1) over the window; `None` if the window is empty or
    /// `q` is out of range. Within the configured relative error of the exact value, and never
    /// beyond the window's exact minimum and maximum (which can only bring it closer).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let v = self.window.quantile(q).ok().flatten()?;
        match (self.window.min(), self.window.max()) {
            (Some(lo), Some(hi)) if lo <= hi => Some(v.clamp(lo, hi)),
            _ => Some(v),
        }
    }

    /// Median over the window.
    pub fn p50(&self) -> Option<f64> {
        self.quantile(0.5)
    }

    /// 90th percentile over the window.
    pub fn p90(&self) -> Option<f64> {
        self.quantile(0.9)
    }

    /// 99th percentile over the window.
    pub fn p99(&self) -> Option<f64> {
        self.quantile(0.99)
    }

    /// 99.9th percentile over the window.
    pub fn p999(&self) -> Option<f64> {
        self.quantile(0.999)
    }

    /// Samples in the window.
    pub fn count(&self) -> u64 {
        self.window.count() as u64
    }

    /// Smallest sample in the window (exact).
    pub fn min(&self) -> Option<f64> {
        self.window.min()
    }

    /// Largest sample in the window (exact).
    pub fn max(&self) -> Option<f64> {
        self.window.max()
    }

    /// Mean of the samples in the window (exact).
    pub fn mean(&self) -> Option<f64> {
        let n = self.window.count();
        self.window.sum().filter(|_| n > 0).map(|s| s / n as f64)
    }

    /// Samples since the histogram was created (Prometheus `_count`).
    pub fn total_count(&self) -> u64 {
        self.total_count
    }

    /// Sum of samples since the histogram was created (Prometheus `_sum`).
    pub fn total_sum(&self) -> f64 {
        self.total_sum
    }

    /// NaN or infinite values that were refused rather than recorded.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Folds another reading in (for example the same histogram on another node). Both must
    /// come from telemetry with the same `max_relative_error`.
    pub fn merge(&mut self, other: &Percentiles) -> Result<(), super::TelemetryError> {
        // (readings from elsewhere are capped when decoded; their sum is checked here, before
        // the sketch's own counters, which do not check theirs)
        if self.count().checked_add(other.count()).is_none_or(|n| n > MAX_MERGED) {
            return Err(super::TelemetryError::TooManySamples);
        }
        self.window.merge(&other.window).map_err(|_| super::TelemetryError::IncompatibleSketches)?;
        self.total_count = self.total_count.saturating_add(other.total_count);
        self.total_sum += other.total_sum;
        self.rejected = self.rejected.saturating_add(other.rejected);
        Ok(())
    }
}

/// An empty reading within 1 % (the default `telemetry.max_relative_error`), to
/// [`record`](Percentiles::record) into.
impl Default for Percentiles {
    fn default() -> Self {
        Percentiles::with_default_error()
    }
}

impl std::fmt::Debug for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Percentiles")
            .field("count", &self.count())
            .field("p50", &self.p50())
            .field("p90", &self.p90())
            .field("p99", &self.p99())
            .field("p999", &self.p999())
            .field("total_count", &self.total_count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(origin: Instant) -> WindowSpec {
        WindowSpec { alpha: 0.01, bucket: Duration::from_secs(10), buckets: 6, origin }
    }

    #[test]
    fn samples_leave_the_window_bucket_by_bucket() {
        let t0 = Instant::now();
        let h = WindowedHistogram::new(spec(t0), Vec::new());
        h.record_at(1.0, t0);
        h.record_at(2.0, t0 + Duration::from_secs(25));
        assert_eq!(h.snapshot_at(t0 + Duration::from_secs(59)).count(), 2);
        // At 60 s the first sub-window [0, 10) is replaced by [60, 70).
        let later = h.snapshot_at(t0 + Duration::from_secs(61));
        assert_eq!(later.count(), 1);
        assert_eq!(later.min(), Some(2.0));
        // Far in the future everything has left the window; lifetime totals remain.
        let empty = h.snapshot_at(t0 + Duration::from_secs(3600));
        assert_eq!(empty.count(), 0);
        assert_eq!(empty.p99(), None);
        assert_eq!(empty.total_count(), 2);
        assert_eq!(empty.total_sum(), 3.0);
    }

    #[test]
    fn a_reading_recorded_into_directly_keeps_its_error_bound_and_round_trips() {
        assert!(matches!(Percentiles::new(0.5), Err(crate::telemetry::TelemetryError::RelativeError(_))));
        let mut p = Percentiles::new(0.01).unwrap();
        for i in 1..=1000 {
            p.record(f64::from(i) / 1000.0);
        }
        p.record(f64::NAN);
        assert_eq!((p.count(), p.total_count(), p.rejected()), (1000, 1000, 1));
        let p99 = p.p99().unwrap();
        assert!((p99 - 0.99).abs() <= 0.99 * 0.01 + 1e-9, "{p99}");
        // Through the checked wire form, and merged with one of the same bound only.
        let bytes = bincode::serde::encode_to_vec(&p, bincode::config::standard()).unwrap();
        let (back, _): (Percentiles, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!((back.count(), back.p99()), (1000, Some(p99)));
        let mut merged = back.clone();
        merged.merge(&p).unwrap();
        assert_eq!(merged.count(), 2000);
        assert!(merged.merge(&Percentiles::new(0.02).unwrap()).is_err());
    }

    #[test]
    fn non_finite_values_are_refused_and_counted() {
        let t0 = Instant::now();
        let h = WindowedHistogram::new(spec(t0), Vec::new());
        h.record_at(f64::NAN, t0);
        h.record_at(f64::INFINITY, t0);
        h.record_at(-3.0, t0);
        let s = h.snapshot_at(t0);
        assert_eq!((s.count(), s.rejected(), s.total_sum()), (1, 2, -3.0));
    }
}
