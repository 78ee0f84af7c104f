//! Cheap per-thread randomness for spreading load and jittering retries: xorshift64, seeded
//! per thread from the clock and the thread id; and [`SplitMix64`], a seeded generator whose
//! stream never changes (a seed that found a bug must find it again on every machine and
//! version). Not for anything that must be unpredictable.

use std::cell::Cell;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    // Only mixes the thread into this process's seed: never compared elsewhere, so `std`'s
    // hasher is fine here (what is compared across processes uses `crate::hash`).
    let mut h = DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    (nanos ^ h.finish()) | 1
}

/// A uniformly distributed `u64`.
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// Uniform in `[0, n)`; `n` must be positive.
pub fn below(n: usize) -> usize {
    (next_u64() % n.max(1) as u64) as usize
}

/// Uniform in `[0, 1)`.
pub fn unit() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// SplitMix64: a deterministic generator, so that a seed reproduces the same schedule or
/// workload. Written here rather than taken from a crate, whose streams may change between
/// versions; its stream is fixed (tested).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next uniformly distributed `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// `k` distinct items of `items`, in random order.
    pub fn sample<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut all = items.to_vec();
        self.shuffle(&mut all);
        all.truncate(k);
        all
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn splitmix_streams_never_change() {
        // The published SplitMix64 stream for seed 0 (a changed stream would change every seed's
        // schedule).
        let mut rng = super::SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert!(rng.below(10) < 10 && (0.0..1.0).contains(&rng.unit()));
    }

    #[test]
    fn values_stay_in_range_and_vary() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let u = super::unit();
            assert!((0.0..1.0).contains(&u));
            assert!(super::below(7) < 7);
            seen.insert(super::below(1000));
        }
        assert!(seen.len() > 500);
    }
}
