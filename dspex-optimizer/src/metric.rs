//! Metrics: how well a prediction matches an example's labels, in [0, 1]. Metrics are data
//! (named, serializable), so that every node scores the same way.

use serde::{Deserialize, Serialize};

use crate::example::{Example, Prediction};

/// A metric over one output field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    /// 1 when the field equals the label, ignoring case, surrounding spaces and punctuation.
    ExactMatch(String),
    /// Token-level F1 between the field and the label (SQuAD-style).
    TokenF1(String),
}

fn normalize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

impl Metric {
    /// The metric called `name`: `exact_match:FIELD` or `f1:FIELD`.
    pub fn by_name(name: &str) -> Option<Metric> {
        match name.split_once(':')? {
            ("exact_match", field) => Some(Metric::ExactMatch(field.into())),
            ("f1", field) => Some(Metric::TokenF1(field.into())),
            _ => None,
        }
    }

    /// Its name, as [`by_name`](Self::by_name) reads it.
    pub fn name(&self) -> String {
        match self {
            Metric::ExactMatch(f) => format!("exact_match:{f}"),
            Metric::TokenF1(f) => format!("f1:{f}"),
        }
    }

    /// The score of `prediction` for `example` (0 when the field or label is missing).
    pub fn score(&self, example: &Example, prediction: &Prediction) -> f64 {
        let (Metric::ExactMatch(field) | Metric::TokenF1(field)) = self;
        let (Some(label), Some(predicted)) = (example.labels.get(field), prediction.get(field)) else {
            return 0.0;
        };
        let (label, predicted) = (normalize(label), normalize(predicted));
        match self {
            Metric::ExactMatch(_) => f64::from(u8::from(label == predicted)),
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
    }
}
