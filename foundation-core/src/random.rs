//! Cheap per-thread randomness for spreading load and jittering retries: xorshift64, seeded
//! per thread from the clock and the thread id. Not for anything that must be unpredictable.

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

#[cfg(test)]
mod tests {
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
