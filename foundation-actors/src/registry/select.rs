//! Choosing one instance among the healthy ones.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// How [`ServiceRegistry::select`](super::ServiceRegistry::select) picks among healthy instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one reporting the lowest load (ties: the earliest registered).
    LeastLoaded,
    /// Two at random, the less loaded of them: close to least-loaded without every caller
    /// piling onto the same instance between load reports.
    PowerOfTwoChoices,
    /// The lowest latency EWMA (see [`LATENCY_EWMA_ALPHA`]); instances with no latency recorded
    /// yet go first, so new instances get tried.
    LowestLatency,
}

/// Weight of the newest sample in the latency EWMA: `ewma = α·sample + (1 − α)·ewma`. At 0.2 a
/// change in latency shows through about 90 % after 10 samples.
pub const LATENCY_EWMA_ALPHA: f64 = 0.2;

/// The figures a strategy looks at, per eligible candidate.
pub(crate) struct Candidate {
    pub(crate) load: f64,
    pub(crate) latency_ns: u64,
}

/// Index (into `candidates`) of the chosen one; `candidates` is non-empty.
pub(crate) fn choose(strategy: Strategy, candidates: &[Candidate], turn: usize) -> usize {
    let n = candidates.len();
    match strategy {
        Strategy::RoundRobin => turn % n,
        Strategy::LeastLoaded => min_by(candidates, |c| c.load),
        Strategy::LowestLatency => min_by(candidates, |c| c.latency_ns as f64),
        Strategy::PowerOfTwoChoices => {
            if n == 1 {
                return 0;
            }
            let a = random_below(n);
            // A second, distinct candidate.
            let b = (a + 1 + random_below(n - 1)) % n;
            if candidates[b].load < candidates[a].load { b } else { a }
        }
    }
}

fn min_by(candidates: &[Candidate], key: impl Fn(&Candidate) -> f64) -> usize {
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate().skip(1) {
        if key(c) < key(&candidates[best]) {
            best = i;
        }
    }
    best
}

/// A per-thread xorshift generator: selection needs spread, not cryptographic randomness, and
/// must not contend on a shared generator.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n as u64) as usize
    })
}

fn seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    (nanos ^ (&local as *const u8 as u64)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(loads: &[f64]) -> Vec<Candidate> {
        loads.iter().map(|l| Candidate { load: *l, latency_ns: 0 }).collect()
    }

    #[test]
    fn strategies_pick_what_they_promise() {
        let c = loads(&[0.5, 0.1, 0.9]);
        assert_eq!(
            (0..6).map(|t| choose(Strategy::RoundRobin, &c, t)).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2]
        );
        assert_eq!(choose(Strategy::LeastLoaded, &c, 0), 1);
        for _ in 0..1000 {
            assert_ne!(
                choose(Strategy::PowerOfTwoChoices, &c, 0),
                2,
                "p2c never picks the most loaded of three"
            );
        }
        let two = loads(&[0.7, 0.2]);
        for _ in 0..100 {
            assert_eq!(choose(Strategy::PowerOfTwoChoices, &two, 0), 1);
        }
        let lat: Vec<Candidate> =
            [30, 10, 20].iter().map(|l| Candidate { load: 0.0, latency_ns: *l }).collect();
        assert_eq!(choose(Strategy::LowestLatency, &lat, 0), 1);
    }

    #[test]
    fn power_of_two_spreads_over_equal_instances() {
        let c = loads(&[0.0; 4]);
        let mut hits = [0; 4];
        for _ in 0..4000 {
            hits[choose(Strategy::PowerOfTwoChoices, &c, 0)] += 1;
        }
        assert!(hits.iter().all(|h| *h > 500), "{hits:?}");
    }
}
