//! Label values that others choose — a topic named by a peer, a peer's node name, a service a
//! remote node registers — are bounded: each family of labels keeps the first
//! [`MAX_LABEL_VALUES`] distinct values it sees, and every later one is reported as
//! [`OTHER_LABEL`]. Without this a peer could make a node's metrics (and every scrape of them)
//! grow without end by naming new topics.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use crate::sync::MutexRecover;

/// Distinct values a label family keeps before the rest are [`OTHER_LABEL`].
pub const MAX_LABEL_VALUES: usize = 256;
/// What a value past the cap is reported as.
pub const OTHER_LABEL: &str = "other";
/// The longest label value kept; a longer one is [`OTHER_LABEL`] too.
pub const MAX_LABEL_BYTES: usize = 128;

static SEEN: OnceLock<Mutex<HashMap<&'static str, HashSet<String>>>> = OnceLock::new();

/// `value` as a label of `family` (e.g. `"topic"`): itself while the family has seen fewer than
/// [`MAX_LABEL_VALUES`] distinct values (and it is at most [`MAX_LABEL_BYTES`] long), else
/// [`OTHER_LABEL`]. Per process; a value once kept stays kept.
pub fn bounded_label(family: &'static str, value: &str) -> String {
    if value.len() > MAX_LABEL_BYTES {
        return OTHER_LABEL.to_string();
    }
    let mut seen = SEEN.get_or_init(Mutex::default).lock_or_recover();
    let values = seen.entry(family).or_default();
    if values.contains(value) {
        return value.to_string();
    }
    if values.len() >= MAX_LABEL_VALUES {
        return OTHER_LABEL.to_string();
    }
    values.insert(value.to_string());
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_keeps_its_first_values_and_reports_the_rest_as_other() {
        for k in 0..MAX_LABEL_VALUES {
            assert_eq!(bounded_label("test-family", &format!("t{k}")), format!("t{k}"));
        }
        assert_eq!(bounded_label("test-family", "one-too-many"), OTHER_LABEL);
        assert_eq!(bounded_label("test-family", "t7"), "t7", "a kept value stays kept");
        assert_eq!(bounded_label("another-family", "one-too-many"), "one-too-many");
        assert_eq!(bounded_label("another-family", &"x".repeat(MAX_LABEL_BYTES + 1)), OTHER_LABEL);
    }
}
