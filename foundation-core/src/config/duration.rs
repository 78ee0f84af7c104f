//! Human-readable durations in configuration files: `"200ms"`, `"5s"`, `"2m"`, `"1h"`.
//!
//! Used with `#[serde(with = "crate::config::duration")]` on `Duration` fields, so that a
//! config file says `window = "60s"` rather than a bare number whose unit must be guessed.

use std::fmt;
use std::time::Duration;

use serde::{Deserializer, Serializer, de};

/// What a duration value must look like; used in error messages.
pub const EXPECTED: &str = "a duration such as \"250ms\", \"5s\", \"2m\" or \"1h\"";

/// Parses `"<integer><unit>"` with unit `ms`, `s`, `m` or `h` (surrounding spaces allowed).
///
/// ```
/// use std::time::Duration;
/// use foundation_core::config::duration::parse;
/// assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
/// assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
/// assert_eq!(parse("5"), None); // a unit is required
/// ```
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let per_unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(per_unit_ms).map(Duration::from_millis)
}

/// Formats a duration in the largest unit that represents it exactly (`"1500ms"`, `"60s"`, `"2m"`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0ms".to_string()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// Serde serializer for `Duration` fields (see the module docs).
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Serde deserializer for `Duration` fields (see the module docs).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_str(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for (text, ms) in [("0ms", 0), ("1500ms", 1500), ("90s", 90_000), ("2m", 120_000), ("1h", 3_600_000)]
        {
            assert_eq!(parse(text), Some(Duration::from_millis(ms)), "{text}");
            assert_eq!(format(Duration::from_millis(ms)), text);
        }
        for bad in ["", "5", "s", "5 sec", "-1s", "1.5s", "99999999999999999999h"] {
            assert_eq!(parse(bad), None, "{bad:?} should be rejected");
        }
    }
}
