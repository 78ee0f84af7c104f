//! `[telemetry.slos.NAME]`: service-level objectives over the node's histograms, e.g. "99 % of
//! provider calls under 2 s" (`histogram = "foundation_llm_request_seconds"`, `threshold = 2.0`,
//! `objective = 0.99`). Telemetry counts each sample of a matching series as good (at or under
//! the threshold) or bad, and exports the counts and the error budget's burn rate (see
//! `telemetry::slo`).

use serde::{Deserialize, Serialize};

use super::keys::config_section;
use super::reference::KeyKind;

/// Default `objective`: 99 % good.
pub const DEFAULT_SLO_OBJECTIVE: f64 = 0.99;

/// Whether `name` is a Prometheus metric name.
pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether every entry is `key=value` with a label name for key, each key once (a series has
/// one value per label: two matches on one key would match nothing).
fn are_label_pairs(labels: &[String]) -> bool {
    let mut keys: Vec<&str> = labels.iter().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    keys.sort_unstable();
    let once = keys.windows(2).all(|w| w[0] != w[1]);
    once && labels.iter().all(|l| {
        l.split_once('=').is_some_and(|(k, v)| {
            !v.is_empty()
                && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

config_section! {
    /// `[telemetry.slos.NAME]`: one service-level objective, under a name of your choice.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct SloConfig in "telemetry.slos.NAME" {
        histogram: String = String::new() => KeyKind::String,
            check(|c: &Self| is_metric_name(&c.histogram), "the name of a histogram this node records (e.g. foundation_llm_request_seconds)"),
            doc "The histogram whose samples are judged, e.g. `foundation_llm_request_seconds` (required). A histogram the node never records leaves the objective without events.";
        threshold: f64 = 1.0 => KeyKind::Number,
            check(|c: &Self| c.threshold.is_finite() && c.threshold > 0.0, "a positive number"),
            doc "A sample at or under this is good, above it bad, in the histogram's unit (seconds for a `_seconds` histogram).";
        objective: f64 = DEFAULT_SLO_OBJECTIVE => KeyKind::Number,
            check(|c: &Self| c.objective > 0.0 && c.objective < 1.0, "a number strictly between 0 and 1"),
            doc "The share of good samples wanted (0.99: 99 %); the error budget is the rest. A burn rate of 1 spends exactly the budget over the objective's period.";
        labels: Vec<String> = Vec::new() => KeyKind::Strings,
            check(|c: &Self| are_label_pairs(&c.labels), "a list of \"key=value\" label matches, each key once"),
            doc "Only the histogram's series with these labels count, each `key=value` (e.g. `[\"provider=openai\"]`). Empty: every series.";
    }
}

impl SloConfig {
    /// Its label matches as pairs.
    pub fn label_pairs(&self) -> Vec<(String, String)> {
        self.labels
            .iter()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }
}
