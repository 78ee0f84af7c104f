//! The checked wire form of a [`Percentiles`] reading, so that a reading from another process
//! is merged only if it is a sketch this crate could have made.
//!
//! `sketches-ddsketch` serializes its private fields as they are, and trusts them: a store whose
//! bin limit, keys or counts were made up makes a later merge allocate without bound, index out
//! of range or overflow. A reading is therefore decoded into [`RawPercentiles`], a field-for-field
//! mirror of the crate's layout (pinned to `=0.3.2`; a test round-trips a real sketch so that a
//! change of layout fails CI), checked, and only then turned into a `DDSketch` (by re-decoding
//! the checked mirror). What is checked:
//!
//! - the configuration is one this crate makes: `min_value` ours, `gamma` for a relative error
//!   `telemetry.max_relative_error` accepts (0.001 to 0.1), with its logarithm, and `offset` and
//!   `max_num_bins` as [`Config::new`] computes them for that `gamma` (so at most about 17 400
//!   bins, 136 KiB per store);
//! - each store: bin limit = `max_num_bins`, at most that many bins; an empty store exactly as
//!   `Store::new` makes it; otherwise `offset ≤ min_key ≤ max_key < offset + bins`, keys within
//!   ±2^24, and a count that is the sum of its bins;
//! - the sketch: at most [`MAX_COUNT`] samples; when it has any, a finite `min ≤ max`; when it
//!   has none, the minimum, maximum and sum of a new sketch; a plausible lifetime count.
//!
//! Merging readings that passed cannot fail but for different configurations (an `Err`).

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use super::sketch::{MIN_VALUE, Percentiles, max_bins};

/// The relative errors a configuration may have: those `telemetry.max_relative_error` accepts
/// (0.001 to 0.1), with room for rounding.
const ALPHAS: std::ops::RangeInclusive<f64> = 0.000_999..=0.100_001;
/// The most samples a checked reading may hold (window or lifetime): 2^48, so that the readings
/// of 65 535 nodes still add up without overflow (merging checks the sum besides).
pub(crate) const MAX_COUNT: u64 = 1 << 48;
/// Keys beyond this magnitude are no sample's (they would overflow a store's length arithmetic).
const MAX_KEY: i32 = 1 << 24;

#[derive(Serialize, Deserialize)]
struct RawConfig {
    max_num_bins: u32,
    gamma: f64,
    gamma_ln: f64,
    min_value: f64,
    offset: i32,
}

#[derive(Serialize, Deserialize)]
struct RawStore {
    bins: Vec<u64>,
    count: u64,
    min_key: i32,
    max_key: i32,
    offset: i32,
    bin_limit: usize,
    is_collapsed: bool,
}

#[derive(Serialize, Deserialize)]
struct RawSketch {
    config: RawConfig,
    store: RawStore,
    negative_store: RawStore,
    min: f64,
    max: f64,
    sum: f64,
    zero_count: u64,
}

/// A reading as it travels, before it is checked.
#[derive(Serialize, Deserialize)]
pub(crate) struct RawPercentiles {
    window: RawSketch,
    total_count: u64,
    total_sum: f64,
    rejected: u64,
}

/// Why a reading from elsewhere was refused.
#[derive(Debug, thiserror::Error)]
#[error("not a sketch this version makes: {0}")]
pub(crate) struct SketchRefused(String);

fn refuse<T>(why: impl Into<String>) -> Result<T, SketchRefused> {
    Err(SketchRefused(why.into()))
}

fn check_config(c: &RawConfig) -> Result<(), SketchRefused> {
    let alpha = (c.gamma - 1.0) / (c.gamma + 1.0);
    // (checked before `Config::new`, whose arithmetic overflows for a gamma next to 1)
    if c.min_value != MIN_VALUE || !ALPHAS.contains(&alpha) {
        return refuse("its configuration is not one of ours");
    }
    let expected = Config::new(alpha, max_bins(alpha), MIN_VALUE);
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    if !near(c.gamma, expected.gamma)
        || !near(c.gamma_ln, c.gamma.ln())
        || c.offset.abs_diff(expected.offset) > 1
        || c.max_num_bins.abs_diff(expected.max_num_bins) > 1
    {
        return refuse("its configuration does not hold together");
    }
    Ok(())
}

fn check_store(s: &RawStore, bins: u32) -> Result<(), SketchRefused> {
    if s.bin_limit != bins as usize || s.bins.len() > s.bin_limit {
        return refuse("a store over its bin limit");
    }
    if s.count == 0 {
        let fresh = s.bins.is_empty() && s.min_key == i32::MAX && s.max_key == i32::MIN && s.offset == 0;
        return if fresh { Ok(()) } else { refuse("an empty store that is not") };
    }
    let (offset, min, max, len) =
        (i64::from(s.offset), i64::from(s.min_key), i64::from(s.max_key), s.bins.len() as i64);
    if !(offset <= min && min <= max && max < offset + len) {
        return refuse("a store whose keys are outside its bins");
    }
    if [s.offset, s.min_key, s.max_key].iter().any(|k| k.unsigned_abs() > MAX_KEY as u32) {
        return refuse("a store with keys no sample has");
    }
    let sum = s.bins.iter().try_fold(0u64, |acc, b| acc.checked_add(*b));
    if sum != Some(s.count) {
        return refuse("a store whose count is not its bins' sum");
    }
    Ok(())
}

impl TryFrom<RawPercentiles> for Percentiles {
    type Error = SketchRefused;

    fn try_from(raw: RawPercentiles) -> Result<Self, SketchRefused> {
        let w = &raw.window;
        check_config(&w.config)?;
        check_store(&w.store, w.config.max_num_bins)?;
        check_store(&w.negative_store, w.config.max_num_bins)?;
        let count =
            w.store.count.checked_add(w.negative_store.count).and_then(|n| n.checked_add(w.zero_count));
        let Some(count) = count.filter(|n| *n <= MAX_COUNT) else { return refuse("too many samples") };
        // (a sum may overflow to infinity with honest samples near the largest float: not checked)
        if count > 0 && !(w.min.is_finite() && w.max.is_finite() && w.min <= w.max) {
            return refuse("a minimum or maximum that is not a number");
        }
        // an empty window as a new sketch has it: a made-up sum would spoil a merged mean
        if count == 0 && !(w.sum == 0.0 && w.min == f64::INFINITY && w.max == f64::NEG_INFINITY) {
            return refuse("an empty window with a minimum, maximum or sum");
        }
        if raw.total_count > MAX_COUNT || raw.rejected > MAX_COUNT {
            return refuse("implausible lifetime totals");
        }
        // The checked mirror has the crate's layout: decoded as the crate's own type.
        let config = bincode::config::standard();
        let bytes =
            bincode::serde::encode_to_vec(&raw.window, config).map_err(|e| SketchRefused(e.to_string()))?;
        let (window, _): (DDSketch, usize) =
            bincode::serde::decode_from_slice(&bytes, config).map_err(|e| SketchRefused(e.to_string()))?;
        Ok(Percentiles::from_parts(window, raw.total_count, raw.total_sum, raw.rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Percentiles {
        let mut sketch = DDSketch::new(Config::new(0.01, max_bins(0.01), MIN_VALUE));
        for v in [0.001, 0.002, 0.5, 3.0, -1.0, 0.0] {
            sketch.add(v);
        }
        Percentiles::from_parts(sketch, 6, 2.503, 0)
    }

    fn round_trip(raw: &RawPercentiles) -> Result<Percentiles, SketchRefused> {
        let bytes = bincode::serde::encode_to_vec(raw, bincode::config::standard()).unwrap();
        let (back, _): (Percentiles, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .map_err(|e| SketchRefused(e.to_string()))?;
        Ok(back)
    }

    fn raw(p: &Percentiles) -> RawPercentiles {
        let bytes = bincode::serde::encode_to_vec(p, bincode::config::standard()).unwrap();
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap().0
    }

    #[test]
    fn a_real_reading_round_trips_through_the_checked_mirror() {
        let p = reading();
        let back = round_trip(&raw(&p)).expect("a real sketch passes");
        for q in [0.0, 0.25, 0.5, 0.9, 1.0] {
            assert_eq!(back.quantile(q), p.quantile(q), "q = {q}");
        }
        assert_eq!((back.count(), back.total_count(), back.min(), back.max()), (6, 6, Some(-1.0), Some(3.0)));
        let mut merged = back.clone();
        merged.merge(&p).expect("the same configuration merges");
        assert_eq!(merged.count(), 12);
    }

    #[test]
    fn merging_readings_at_the_cap_stops_with_an_error_before_the_counters_overflow() {
        let mut r = raw(&reading());
        r.window.store = RawStore {
            bins: vec![],
            count: 0,
            min_key: i32::MAX,
            max_key: i32::MIN,
            offset: 0,
            ..r.window.store
        };
        r.window.negative_store = RawStore {
            bins: vec![],
            count: 0,
            min_key: i32::MAX,
            max_key: i32::MIN,
            offset: 0,
            ..r.window.negative_store
        };
        (r.window.zero_count, r.window.min, r.window.max, r.window.sum) = (MAX_COUNT, 0.0, 0.0, 0.0);
        let full = round_trip(&r).expect("at the cap, a reading passes");
        let mut merged = full.clone();
        let refused = (0..1 << 15).find(|_| merged.merge(&full).is_err());
        assert!(refused.is_some(), "2^15 readings of 2^48 samples merged without an error");
        assert!(merged.count() <= 1 << 62);
    }

    #[test]
    fn made_up_sketches_are_refused() {
        type Spoil = Box<dyn Fn(&mut RawPercentiles)>;
        let bad: Vec<(&str, Spoil)> = vec![
            ("huge bin limit", Box::new(|r| r.window.store.bin_limit = usize::MAX)),
            ("keys outside bins", Box::new(|r| r.window.store.max_key = r.window.store.offset + 100_000)),
            (
                "far keys",
                Box::new(|r| {
                    let s = &mut r.window.store;
                    (s.offset, s.min_key, s.max_key) = (1 << 30, 1 << 30, 1 << 30);
                }),
            ),
            ("count not the bins' sum", Box::new(|r| r.window.store.count += 1)),
            ("an empty store that is not", Box::new(|r| r.window.negative_store.min_key = 5)),
            ("NaN minimum", Box::new(|r| r.window.min = f64::NAN)),
            ("too many zeros", Box::new(|r| r.window.zero_count = u64::MAX - 1)),
            ("another min_value", Box::new(|r| r.window.config.min_value = 1.0)),
            ("gamma and bins apart", Box::new(|r| r.window.config.max_num_bins = 1 << 20)),
            ("gamma next to 1", Box::new(|r| r.window.config.gamma = 1.000_000_001)),
            ("a finer error than any node has", Box::new(|r| r.window.config.gamma = 1.0002)),
            ("a lifetime count past the cap", Box::new(|r| r.total_count = MAX_COUNT + 1)),
        ];
        for (what, spoil) in bad {
            let mut r = raw(&reading());
            spoil(&mut r);
            assert!(round_trip(&r).is_err(), "{what} passed");
        }
    }
}
