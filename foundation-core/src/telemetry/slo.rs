//! Service-level objectives (`[telemetry.slos.NAME]`): each sample recorded into a matching
//! histogram series is judged good (at or under the objective's threshold) or bad as it is
//! recorded, counted in `foundation_slo_events_total{slo, outcome}`, and kept per minute for six
//! hours, from which the error budget's **burn rate** over 5 minutes, 30 minutes, 1 hour and 6
//! hours is exported at each render as `foundation_slo_burn_rate{slo, window}`: the share of
//! bad samples in the window over the share the objective allows (`1 − objective`). Windows are
//! whole minutes, the current one included: "5m" covers the last four to five minutes. A burn
//! rate of 1 spends the budget at exactly the rate it allows (whatever period it is counted
//! over); 14.4 for an hour spends 2 % of a 30-day budget (the multi-window alerts in
//! `docs/monitoring/alerts.yml`). A window with no samples burns 0; a process younger than a
//! window is judged on what it has.
//!
//! Per node: a cluster's objective is the sum over its nodes, which Prometheus computes from
//! the counters. Cost: a comparison and one short mutex and an atomic add per sample of a matching
//! series; 360 minute counters per objective. An objective whose histogram the node never
//! records stays at zero events (the name is not checked against what the program records).

use crate::sync::MutexRecover;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Key, Label};
use metrics_exporter_prometheus::PrometheusRecorder;
use serde::{Deserialize, Serialize};

use crate::config::SloConfig;

/// The windows burn rates are exported over, as their label and their length.
pub const BURN_WINDOWS: [(&str, Duration); 4] = [
    ("5m", Duration::from_secs(300)),
    ("30m", Duration::from_secs(1800)),
    ("1h", Duration::from_secs(3600)),
    ("6h", Duration::from_secs(21_600)),
];

/// Minutes kept: the longest window.
const MINUTES: u64 = 360;

/// An objective as a node judges it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    /// Its name (`[telemetry.slos.NAME]`).
    pub name: String,
    /// The histogram it judges.
    pub histogram: String,
    /// Good at or under this.
    pub threshold: f64,
    /// The share of good samples wanted.
    pub objective: f64,
    /// Good samples since the process started.
    pub good: u64,
    /// Bad samples since the process started.
    pub bad: u64,
    /// Burn rate per window (`5m`, `30m`, `1h`, `6h`).
    pub burn_rates: Vec<(String, f64)>,
}

/// Registers counters and gauges with the exporter's recorder (our own metrics, kept as
/// handles).
pub(crate) struct Registrar<'a>(pub(crate) &'a PrometheusRecorder);

impl Registrar<'_> {
    fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
        Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect::<Vec<_>>())
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        let meta = metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
        metrics::Recorder::register_counter(self.0, &Self::key(name, labels), &meta)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, String)]) -> Gauge {
        let meta = metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
        metrics::Recorder::register_gauge(self.0, &Self::key(name, labels), &meta)
    }
}

/// One objective: its rule, its counters and its minutes.
pub(crate) struct Slo {
    name: String,
    histogram: String,
    threshold: f64,
    objective: f64,
    labels: Vec<(String, String)>,
    good: Counter,
    bad: Counter,
    burn: Vec<Gauge>,
    origin: Instant,
    /// (minute since `origin`, good, bad), oldest first, at most [`MINUTES`].
    minutes: Mutex<VecDeque<(u64, u64, u64)>>,
    /// Good and bad samples since the start (what [`SloStatus`] reports; the counters above
    /// go to the exporter and cannot be read back).
    good_total: AtomicU64,
    bad_total: AtomicU64,
}

impl Slo {
    /// The objective `name` of `config`, its metrics registered with `registrar`.
    pub(crate) fn new(name: &str, config: &SloConfig, registrar: &Registrar<'_>) -> Self {
        let slo = name.to_string();
        let outcome = |o: &'static str| [("slo", slo.clone()), ("outcome", o.to_string())];
        let good = registrar.counter("foundation_slo_events_total", &outcome("good"));
        let bad = registrar.counter("foundation_slo_events_total", &outcome("bad"));
        // Present from the start (a bad sample should not be what makes the series appear).
        good.increment(0);
        bad.increment(0);
        registrar.gauge("foundation_slo_objective", &[("slo", slo.clone())]).set(config.objective);
        let burn = BURN_WINDOWS
            .iter()
            .map(|(window, _)| {
                registrar.gauge(
                    "foundation_slo_burn_rate",
                    &[("slo", slo.clone()), ("window", window.to_string())],
                )
            })
            .collect();
        Slo {
            name: slo,
            histogram: config.histogram.clone(),
            threshold: config.threshold,
            objective: config.objective,
            labels: config.label_pairs(),
            good,
            bad,
            burn,
            origin: Instant::now(),
            minutes: Mutex::new(VecDeque::new()),
            good_total: AtomicU64::new(0),
            bad_total: AtomicU64::new(0),
        }
    }

    /// Whether samples of the series `key` count for it.
    pub(crate) fn matches(&self, key: &Key) -> bool {
        key.name() == self.histogram
            && self.labels.iter().all(|(k, v)| key.labels().any(|l| l.key() == k && l.value() == v))
    }

    fn minute(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs() / 60
    }

    /// Judges one sample (finite: the histogram refuses the others before).
    pub(crate) fn judge(&self, value: f64, at: Instant) {
        let good = value <= self.threshold;
        if good {
            self.good.increment(1)
        } else {
            self.bad.increment(1)
        }
        let total = if good { &self.good_total } else { &self.bad_total };
        total.fetch_add(1, Ordering::Relaxed);
        let minute = self.minute(at);
        let mut minutes = self.minutes.lock_or_recover();
        // Threads read their clocks before taking the lock: a sample may belong to a minute
        // before the newest one (kept in order: its own bucket, or one made in place).
        let at_or_before = minutes.iter().rposition(|(m, _, _)| *m <= minute);
        match at_or_before {
            Some(i) if minutes[i].0 == minute => {
                let (_, g, b) = &mut minutes[i];
                if good {
                    *g = g.saturating_add(1);
                } else {
                    *b = b.saturating_add(1);
                }
            }
            Some(i) => minutes.insert(i + 1, (minute, u64::from(good), u64::from(!good))),
            None => minutes.push_front((minute, u64::from(good), u64::from(!good))),
        }
        let newest = minutes.back().map_or(minute, |(m, _, _)| *m);
        while minutes.front().is_some_and(|(m, _, _)| *m + MINUTES <= newest) {
            minutes.pop_front();
        }
    }

    /// The burn rate over the last `window` before `now`.
    fn burn_rate(&self, window: Duration, now: Instant) -> f64 {
        let current = self.minute(now);
        let span = window.as_secs().div_ceil(60);
        let (good, bad) = self
            .minutes
            .lock_or_recover()
            .iter()
            .filter(|(m, _, _)| *m + span > current)
            .fold((0u64, 0u64), |(g, b), (_, mg, mb)| (g.saturating_add(*mg), b.saturating_add(*mb)));
        let total = good.saturating_add(bad);
        if total == 0 {
            return 0.0;
        }
        (bad as f64 / total as f64) / (1.0 - self.objective)
    }

    /// Sets the burn-rate gauges for `now` (before a render).
    pub(crate) fn update(&self, now: Instant) {
        for ((_, window), gauge) in BURN_WINDOWS.iter().zip(&self.burn) {
            gauge.set(self.burn_rate(*window, now));
        }
    }

    /// Where it stands at `now`.
    pub(crate) fn status(&self, now: Instant) -> SloStatus {
        let (good, bad) = (self.good_total.load(Ordering::Relaxed), self.bad_total.load(Ordering::Relaxed));
        SloStatus {
            name: self.name.clone(),
            histogram: self.histogram.clone(),
            threshold: self.threshold,
            objective: self.objective,
            good,
            bad,
            burn_rates: BURN_WINDOWS.iter().map(|(w, d)| (w.to_string(), self.burn_rate(*d, now))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn samples_are_judged_and_burn_rates_cover_their_windows() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let config = SloConfig {
            histogram: "foundation_llm_request_seconds".into(),
            threshold: 2.0,
            objective: 0.99,
            labels: vec!["provider=openai".into()],
        };
        let slo = Slo::new("latency", &config, &Registrar(&recorder));
        let key = |provider: &str| {
            Key::from_parts(
                "foundation_llm_request_seconds",
                vec![Label::new("provider", provider.to_string())],
            )
        };
        assert!(slo.matches(&key("openai")) && !slo.matches(&key("anthropic")));
        let t0 = slo.origin;
        // An hour ago: 100 samples, 10 bad. Now: 100 samples, 1 bad.
        for i in 0..100 {
            slo.judge(if i < 10 { 3.0 } else { 0.5 }, t0);
        }
        let now = t0 + Duration::from_secs(3600);
        for i in 0..100 {
            slo.judge(if i < 1 { 2.5 } else { 2.0 }, now);
        }
        // A sample stamped in an earlier minute, judged after a later one: in its own minute.
        slo.judge(0.1, t0 + Duration::from_secs(60));
        assert_eq!(slo.minutes.lock_or_recover().iter().map(|(m, _, _)| *m).collect::<Vec<_>>(), [0, 1, 60]);
        slo.minutes.lock_or_recover().remove(1);
        let status = slo.status(now);
        assert_eq!((status.good, status.bad), (190, 11));
        let rate = |w: &str| status.burn_rates.iter().find(|(x, _)| x == w).unwrap().1;
        // 5 minutes: 1 bad in 100 = 1 % = exactly the budget.
        assert!((rate("5m") - 1.0).abs() < 1e-9, "{status:?}");
        // 6 hours: 11 in 200 = 5.5 % = 5.5 budgets.
        assert!((rate("6h") - 5.5).abs() < 1e-9, "{status:?}");
        // Past six hours the old minute is gone; far later nothing is in any window.
        let later = slo.burn_rate(Duration::from_secs(21_600), t0 + Duration::from_secs(6 * 3600 + 30));
        assert!((later - 1.0).abs() < 1e-9, "{later}");
        assert_eq!(slo.burn_rate(Duration::from_secs(300), t0 + Duration::from_secs(9 * 3600)), 0.0);
        slo.update(now);
        let text = handle.render();
        assert!(text.contains("foundation_slo_events_total{slo=\"latency\",outcome=\"bad\"} 11"), "{text}");
        assert!(text.contains("foundation_slo_objective{slo=\"latency\"} 0.99"), "{text}");
        let six_hours: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("foundation_slo_burn_rate{slo=\"latency\",window=\"6h\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no 6h burn rate in {text}"));
        assert!((six_hours - 5.5).abs() < 1e-9, "{text}");
    }
}
