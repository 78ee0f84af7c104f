//! Metrics: how well a prediction matches an example's labels, in [0, 1]. Metrics are data
//! (named, serializable), so that every node scores the same way.
//!
//! Besides the built-in ones, a program built on the library registers its own metric
//! functions by name with [`register_metric`] (on every node, at start: the function never
//! crosses the network, its name does); a run then names it as [`Metric::Custom`]. A node that
//! has not registered a run's custom metric does none of that run's tasks (it tells the
//! scheduler, which gives them to other nodes).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use foundation_core::sync::RwLockRecover;
use serde::{Deserialize, Serialize};

use crate::example::{Example, Prediction};

/// A metric function of the program's own: the score of a prediction for an example, in [0, 1].
pub type MetricFn = Arc<dyn Fn(&Example, &Prediction) -> f64 + Send + Sync>;

static CUSTOM: RwLock<BTreeMap<String, MetricFn>> = RwLock::new(BTreeMap::new());

/// Registers `metric` under `name` in this process (replacing one of that name), for runs that
/// name it ([`Metric::Custom`], or `metric = "NAME"` in a spec file). A name must not contain
/// `:` (the built-ins' form) and is at most 64 bytes; an invalid name is an error.
pub fn register_metric(
    name: &str,
    metric: impl Fn(&Example, &Prediction) -> f64 + Send + Sync + 'static,
) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || name.contains(':') {
        return Err(format!("metric name {name:?}: 1 to 64 bytes, without `:`"));
    }
    CUSTOM.write_or_recover().insert(name.to_string(), Arc::new(metric));
    Ok(())
}

fn custom(name: &str) -> Option<MetricFn> {
    CUSTOM.read_or_recover().get(name).cloned()
}

/// A metric over one output field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    /// 1 when the field equals the label, ignoring case, surrounding spaces and punctuation.
    ExactMatch(String),
    /// Token-level F1 between the field and the label (SQuAD-style).
    TokenF1(String),
    /// A function registered under this name with [`register_metric`].
    Custom(String),
}

fn normalize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

impl Metric {
    /// The metric called `name`: `exact_match:FIELD`, `f1:FIELD`, or a name registered in this
    /// process with [`register_metric`].
    pub fn by_name(name: &str) -> Option<Metric> {
        match name.split_once(':') {
            Some(("exact_match", field)) if !field.is_empty() => Some(Metric::ExactMatch(field.into())),
            Some(("f1", field)) if !field.is_empty() => Some(Metric::TokenF1(field.into())),
            Some(_) => None,
            None => custom(name).map(|_| Metric::Custom(name.to_string())),
        }
    }

    /// Its name, as [`by_name`](Self::by_name) reads it.
    pub fn name(&self) -> String {
        match self {
            Metric::ExactMatch(f) => format!("exact_match:{f}"),
            Metric::TokenF1(f) => format!("f1:{f}"),
            Metric::Custom(name) => name.clone(),
        }
    }

    /// The output field it scores (none for a custom metric: the function reads what it wants).
    pub fn field(&self) -> Option<&str> {
        match self {
            Metric::ExactMatch(f) | Metric::TokenF1(f) => Some(f),
            Metric::Custom(_) => None,
        }
    }

    /// Whether this process can score with it (a custom metric must be registered here).
    pub fn available(&self) -> bool {
        match self {
            Metric::Custom(name) => custom(name).is_some(),
            _ => true,
        }
    }

    /// The score of `prediction` for `example` (0 when the field or label is missing, or a
    /// custom metric is not registered here: check [`available`](Self::available) first). A
    /// custom metric's score is clamped to [0, 1] (NaN is 0).
    pub fn score(&self, example: &Example, prediction: &Prediction) -> f64 {
        let field = match self {
            Metric::ExactMatch(field) | Metric::TokenF1(field) => field,
            Metric::Custom(name) => {
                let score = custom(name).map_or(0.0, |f| f(example, prediction));
                return if score.is_nan() { 0.0 } else { score.clamp(0.0, 1.0) };
            }
        };
        let (Some(label), Some(predicted)) = (example.labels.get(field), prediction.get(field)) else {
            return 0.0;
        };
        let (label, predicted) = (normalize(label), normalize(predicted));
        match self {
            Metric::ExactMatch(_) => f64::from(u8::from(label == predicted)),
            Metric::Custom(_) => 0.0,
            Metric::TokenF1(_) => {
                let mut remaining = label.clone();
                let common = predicted
                    .iter()
                    .filter(|w| remaining.iter().position(|l| l == *w).map(|i| remaining.remove(i)).is_some())
                    .count();
                if common == 0 {
                    return 0.0;
                }
                let precision = common as f64 / predicted.len() as f64;
                let recall = common as f64 / label.len() as f64;
                2.0 * precision * recall / (precision + recall)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_and_f1() {
        let ex = Example::new().label("answer", "New York City");
        let p = |s: &str| Prediction {
            fields: [("answer".to_string(), s.to_string())].into(),
            ..Default::default()
        };
        let em = Metric::by_name("exact_match:answer").unwrap();
        assert_eq!(em.score(&ex, &p(" new york city. ")), 1.0);
        assert_eq!(em.score(&ex, &p("New York")), 0.0);
        let f1 = Metric::by_name("f1:answer").unwrap();
        assert!((f1.score(&ex, &p("New York")) - 0.8).abs() < 1e-9);
        assert_eq!(f1.name(), "f1:answer");
        assert_eq!(Metric::by_name("bleu:answer"), None);
        assert_eq!(Metric::by_name("f1:"), None);
    }

    #[test]
    fn custom_metrics_are_registered_by_name() {
        assert_eq!(Metric::by_name("starts-alike"), None);
        assert!(!Metric::Custom("starts-alike".into()).available());
        register_metric("starts-alike", |ex, p| {
            let first = |s: Option<&str>| s.and_then(|s| s.chars().next());
            if first(ex.labels.get("answer").map(String::as_str)) == first(p.get("answer")) {
                2.0
            } else {
                f64::NAN
            }
        })
        .unwrap();
        let metric = Metric::by_name("starts-alike").unwrap();
        assert!(metric.available());
        assert_eq!(metric.name(), "starts-alike");
        let ex = Example::new().label("answer", "Paris");
        let p = |s: &str| Prediction {
            fields: [("answer".to_string(), s.to_string())].into(),
            ..Default::default()
        };
        // Clamped to [0, 1]; NaN is 0.
        assert_eq!(metric.score(&ex, &p("Pisa")), 1.0);
        assert_eq!(metric.score(&ex, &p("Rome")), 0.0);
        assert!(register_metric("a:b", |_, _| 1.0).is_err());
    }
}
