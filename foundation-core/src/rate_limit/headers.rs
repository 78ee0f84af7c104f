//! Reading providers' rate-limit headers into a limiter: the OpenAI-style
//! `x-ratelimit-remaining-<dimension>` (and `-reset-<dimension>`), the Anthropic-style
//! `anthropic-ratelimit-<dimension>-remaining`, and `retry-after`.

use std::time::Duration;

use super::RateLimiter;

/// What a response's headers said, after [`RateLimiter::apply_headers`] applied it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderReport {
    /// (dimension, remaining) pairs that matched one of the limiter's dimensions.
    pub remaining: Vec<(String, u64)>,
    /// The pause taken from `retry-after`, if any (at most [`MAX_PAUSE`](super::MAX_PAUSE)).
    pub retry_after: Option<Duration>,
    /// (dimension, time until full) from `x-ratelimit-reset-<dimension>`, for dimensions the
    /// limiter has. Read, not applied: our buckets refill continuously at the limit's own rate,
    /// so once `remaining` has lowered a bucket, the refill already takes that long.
    pub resets: Vec<(String, Duration)>,
    /// Headers that looked like rate-limit headers but did not parse (name, value).
    pub unreadable: Vec<(String, String)>,
}

/// Parses a duration as providers write them: `"1.5"` or `"20"` (seconds), `"20ms"`, `"6m0s"`,
/// `"1h2m3.5s"`. Untrusted input: negative, NaN, infinite and unparseable values are `None`, a
/// value too large for a `Duration` (`"1e20"`) is `Duration::MAX` (never a panic); whoever
/// waits on it caps it (a pause at [`MAX_PAUSE`](super::MAX_PAUSE)).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| saturating_secs(seconds));
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        total += number
            * match unit {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                _ => return None,
            };
        rest = after;
    }
    (total.is_finite() && !text.is_empty()).then(|| saturating_secs(total))
}

/// `seconds` (finite, not negative) as a duration, `Duration::MAX` if it does not fit.
fn saturating_secs(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

/// The dimension a header speaks of, if it is a remaining-count header.
fn remaining_dimension(name: &str) -> Option<&str> {
    if let Some(dim) = name.strip_prefix("x-ratelimit-remaining-") {
        return Some(dim);
    }
    name.strip_prefix("anthropic-ratelimit-").and_then(|rest| rest.strip_suffix("-remaining"))
}

impl RateLimiter {
    /// Corrects the limiter from a response's headers (names matched case-insensitively; a
    /// header's dimension matches a limit named the same, or its singular: `requests` or
    /// `request`, `tokens` or `token`). `retry-after` pauses every grant. Returns what was
    /// applied and what could not be read; never fails.
    pub fn apply_headers<'a>(&self, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderReport {
        let mut report = HeaderReport::default();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if name == "retry-after" {
                match parse_duration(value) {
                    Some(d) => {
                        let d = d.min(super::MAX_PAUSE);
                        self.pause_for(d);
                        report.retry_after = Some(d);
                    }
                    // An HTTP date is allowed by the standard; providers send seconds.
                    None => report.unreadable.push((name, value.to_string())),
                }
                continue;
            }
            if let Some(dimension) = name.strip_prefix("x-ratelimit-reset-") {
                if let Some(index) = self.find_dimension(dimension) {
                    match parse_duration(value) {
                        Some(d) => report.resets.push((self.dimensions()[index].clone(), d)),
                        None => report.unreadable.push((name, value.to_string())),
                    }
                }
                continue;
            }
            let Some(dimension) = remaining_dimension(&name) else { continue };
            let Some(index) = self.find_dimension(dimension) else { continue };
            match value.trim().parse::<u64>() {
                Ok(remaining) => {
                    self.observe_remaining(index, remaining);
                    report.remaining.push((self.dimensions()[index].clone(), remaining));
                }
                Err(_) => report.unreadable.push((name, value.to_string())),
            }
        }
        report
    }

    /// A dimension named like a header's: the same name, or its singular.
    fn find_dimension(&self, dimension: &str) -> Option<usize> {
        self.dimension(dimension).or_else(|| {
            let singular = dimension.strip_suffix('s').unwrap_or(dimension);
            self.dimensions().iter().position(|d| d.strip_suffix('s').unwrap_or(d) == singular)
        })
    }
}
