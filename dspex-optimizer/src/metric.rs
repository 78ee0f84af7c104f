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

use foundation_actors::providers::LanguageModel;

use crate::example::{Example, Prediction};
use crate::judge::{Judge, JudgeError};
use crate::models::LanguageModels;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// 1 when the field equals the label, ignoring case, surrounding spaces and punctuation.
    ExactMatch(String),
    /// Token-level F1 between the field and the label (SQuAD-style).
    TokenF1(String),
    /// 1 when the label's words appear in the field, in order and together (case and
    /// punctuation ignored): "the answer is New York City" contains "new york city".
    Contains(String),
    /// 1 when the first number in the field is within the tolerance of the label's number
    /// (`1,000`, `-2.5`, `3e2` read as numbers; a missing number scores 0).
    Numeric {
        /// The field.
        field: String,
        /// How far it may be.
        tolerance: Tolerance,
    },
    /// A function registered under this name with [`register_metric`].
    Custom(String),
    /// A model's judgement of the field against a rubric (see [`crate::judge`]): scored with
    /// [`score_with`](Metric::score_with).
    Judge(Judge),
}

/// How far a number may be from the label's ([`Metric::Numeric`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Tolerance {
    /// At most this far (0: equal as numbers).
    Absolute(f64),
    /// At most this fraction of the label's magnitude (`1%` is 0.01).
    Relative(f64),
}

impl Tolerance {
    /// `0.01` (absolute) or `1%` (relative); finite and not negative.
    fn parse(text: &str) -> Option<Tolerance> {
        let (number, relative) = match text.strip_suffix('%') {
            Some(n) => (n, true),
            None => (text, false),
        };
        let value: f64 = number.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
        Some(if relative { Tolerance::Relative(value / 100.0) } else { Tolerance::Absolute(value) })
    }

    fn text(&self) -> String {
        match self {
            Tolerance::Absolute(v) => format!("{v}"),
            Tolerance::Relative(v) => format!("{}%", v * 100.0),
        }
    }

    fn allows(&self, label: f64, predicted: f64) -> bool {
        let limit = match self {
            Tolerance::Absolute(v) => *v,
            Tolerance::Relative(v) => v * label.abs(),
        };
        (predicted - label).abs() <= limit
    }
}

/// The first number in `text`: digits with an optional sign, thousands commas, a decimal point
/// and an exponent.
fn first_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            || (matches!(bytes[i], b'-' | b'+' | b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < bytes.len() {
            let b = bytes[end];
            let exponent = matches!(b, b'e' | b'E')
                && bytes.get(end + 1).is_some_and(|n| n.is_ascii_digit() || matches!(n, b'-' | b'+'));
            let comma = b == b',' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
            if b.is_ascii_digit()
                || b == b'.'
                || exponent
                || comma
                || (matches!(b, b'-' | b'+') && matches!(bytes[end - 1], b'e' | b'E'))
            {
                end += 1;
            } else {
                break;
            }
        }
        let candidate: String = text[i..end].chars().filter(|c| *c != ',').collect();
        let candidate = candidate.trim_end_matches('.');
        if let Ok(value) = candidate.parse::<f64>()
            && value.is_finite()
        {
            return Some(value);
        }
        i = end;
    }
    None
}

fn normalize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

impl Metric {
    /// The metric called `name`: `exact_match:FIELD`, `f1:FIELD`, `contains:FIELD`,
    /// `numeric:FIELD` or `numeric:FIELD:TOLERANCE` (`0.5` absolute, `2%` relative), or a name
    /// registered in this process with [`register_metric`].
    pub fn by_name(name: &str) -> Option<Metric> {
        match name.split_once(':') {
            Some(("exact_match", field)) if !field.is_empty() => Some(Metric::ExactMatch(field.into())),
            Some(("f1", field)) if !field.is_empty() => Some(Metric::TokenF1(field.into())),
            Some(("contains", field)) if !field.is_empty() => Some(Metric::Contains(field.into())),
            Some(("numeric", rest)) => {
                let (field, tolerance) = match rest.split_once(':') {
                    Some((field, tolerance)) => (field, Tolerance::parse(tolerance)?),
                    None => (rest, Tolerance::Absolute(0.0)),
                };
                (!field.is_empty()).then(|| Metric::Numeric { field: field.into(), tolerance })
            }
            Some(_) => None,
            None => custom(name).map(|_| Metric::Custom(name.to_string())),
        }
    }

    /// Its name, as [`by_name`](Self::by_name) reads it.
    pub fn name(&self) -> String {
        match self {
            Metric::ExactMatch(f) => format!("exact_match:{f}"),
            Metric::TokenF1(f) => format!("f1:{f}"),
            Metric::Contains(f) => format!("contains:{f}"),
            Metric::Numeric { field, tolerance: Tolerance::Absolute(v) } if *v == 0.0 => {
                format!("numeric:{field}")
            }
            Metric::Numeric { field, tolerance } => format!("numeric:{field}:{}", tolerance.text()),
            Metric::Custom(name) => name.clone(),
            Metric::Judge(judge) => format!("judge:{}", judge.field),
        }
    }

    /// The output field it scores (none for a custom metric: the function reads what it wants).
    pub fn field(&self) -> Option<&str> {
        match self {
            Metric::ExactMatch(f) | Metric::TokenF1(f) | Metric::Contains(f) => Some(f),
            Metric::Numeric { field, .. } => Some(field),
            Metric::Judge(judge) => Some(&judge.field),
            Metric::Custom(_) => None,
        }
    }

    /// Whether this process can score with it (a custom metric must be registered here, a
    /// judge's named model bound with [`bind_judge`](Self::bind_judge)).
    pub fn available(&self) -> bool {
        match self {
            Metric::Custom(name) => custom(name).is_some(),
            Metric::Judge(judge) => judge.is_ready(),
            _ => true,
        }
    }

    /// Binds a judge's named model from this node's `models` (nothing to do for the others).
    pub fn bind_judge(&mut self, models: &LanguageModels) -> Result<(), String> {
        match self {
            Metric::Judge(judge) => judge.bind(models),
            _ => Ok(()),
        }
    }

    /// The score of `prediction` for `example`, the judge's call made for a [`Metric::Judge`]
    /// (with its own model, or `program_model`); the others as [`score`](Self::score).
    pub async fn score_with(
        &self,
        example: &Example,
        prediction: &Prediction,
        program_model: &dyn LanguageModel,
    ) -> Result<f64, JudgeError> {
        match self {
            Metric::Judge(judge) => judge.score(example, prediction, program_model).await,
            _ => Ok(self.score(example, prediction)),
        }
    }

    /// The score of `prediction` for `example` (0 when the field or label is missing, or a
    /// custom metric is not registered here: check [`available`](Self::available) first). A
    /// custom metric's score is clamped to [0, 1] (NaN is 0). A judge needs a model call: 0
    /// here, its score from [`score_with`](Self::score_with).
    pub fn score(&self, example: &Example, prediction: &Prediction) -> f64 {
        let field = match self {
            Metric::Judge(_) => return 0.0,
            Metric::ExactMatch(field) | Metric::TokenF1(field) | Metric::Contains(field) => field,
            Metric::Numeric { field, tolerance } => {
                let (Some(label), Some(predicted)) = (example.labels.get(field), prediction.get(field))
                else {
                    return 0.0;
                };
                return match (first_number(label), first_number(predicted)) {
                    (Some(l), Some(p)) => f64::from(u8::from(tolerance.allows(l, p))),
                    _ => 0.0,
                };
            }
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
            Metric::Contains(_) => {
                let found =
                    !label.is_empty() && predicted.windows(label.len()).any(|w| w == label.as_slice());
                f64::from(u8::from(found))
            }
            Metric::Custom(_) | Metric::Numeric { .. } | Metric::Judge(_) => 0.0,
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
    fn contains_and_numeric() {
        let p = |s: &str| Prediction {
            fields: [("answer".to_string(), s.to_string())].into(),
            ..Default::default()
        };
        let contains = Metric::by_name("contains:answer").unwrap();
        let ex = Example::new().label("answer", "New York City");
        assert_eq!(contains.score(&ex, &p("It is new york city, of course.")), 1.0);
        assert_eq!(contains.score(&ex, &p("York, New City")), 0.0);
        assert_eq!(contains.score(&ex, &p("new yorkcity")), 0.0);
        assert_eq!(contains.name(), "contains:answer");

        let exact = Metric::by_name("numeric:answer").unwrap();
        let ex = Example::new().label("answer", "1000");
        assert_eq!(exact.score(&ex, &p("about 1,000 people")), 1.0);
        assert_eq!(exact.score(&ex, &p("1000.0")), 1.0);
        assert_eq!(exact.score(&ex, &p("1e3")), 1.0);
        assert_eq!(exact.score(&ex, &p("999")), 0.0);
        assert_eq!(exact.score(&ex, &p("no number")), 0.0);
        assert_eq!(exact.name(), "numeric:answer");
        let absolute = Metric::by_name("numeric:answer:0.5").unwrap();
        let ex = Example::new().label("answer", "-2.5 degrees");
        assert_eq!(absolute.score(&ex, &p("-2.1")), 1.0);
        assert_eq!(absolute.score(&ex, &p("-3.1")), 0.0);
        assert_eq!(absolute.name(), "numeric:answer:0.5");
        let relative = Metric::by_name("numeric:answer:2%").unwrap();
        let ex = Example::new().label("answer", "$250");
        assert_eq!(relative.score(&ex, &p("254")), 1.0);
        assert_eq!(relative.score(&ex, &p("256")), 0.0);
        assert_eq!(relative.name(), "numeric:answer:2%");
        assert_eq!(Metric::by_name("numeric:answer:-1"), None);
        assert_eq!(Metric::by_name("numeric:answer:lots"), None);
        assert_eq!(Metric::by_name("numeric:"), None);
        assert_eq!(Metric::by_name("contains:"), None);
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
