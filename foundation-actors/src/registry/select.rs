//! Choosing one instance among the healthy ones, without allocating: round robin and power of
//! two choices look at one or two instances in the common case; least-loaded and
//! lowest-latency make one pass.

/// How [`ServiceRegistry::select`](super::ServiceRegistry::select) picks among healthy instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each in turn (unhealthy or stopped instances are skipped).
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

/// Random probes power-of-two-choices makes for eligible instances before it falls back to a scan
/// (only when most instances are unhealthy).
const PROBES: usize = 8;

/// What a strategy may ask about the instance at an index.
pub(crate) trait Candidates {
    fn len(&self) -> usize;
    fn eligible(&self, i: usize) -> bool;
    fn load(&self, i: usize) -> f64;
    fn latency_ns(&self, i: usize) -> u64;
}

/// The index of the chosen instance, or `None` if none is eligible.
pub(crate) fn choose(strategy: Strategy, c: &impl Candidates, turn: usize) -> Option<usize> {
    let n = c.len();
    if n == 0 {
        return None;
    }
    match strategy {
        Strategy::RoundRobin => (0..n).map(|k| (turn + k) % n).find(|i| c.eligible(*i)),
        Strategy::LeastLoaded => min_by(c, |i| c.load(i)),
        Strategy::LowestLatency => min_by(c, |i| c.latency_ns(i) as f64),
        Strategy::PowerOfTwoChoices => {
            let mut picks = (0..PROBES).map(|_| foundation_core::random::below(n)).filter(|i| c.eligible(*i));
            match (picks.next(), picks.find(|_| true)) {
                (Some(a), Some(b)) if a != b => Some(if c.load(b) < c.load(a) { b } else { a }),
                // Few eligible instances (or the same one drawn twice): compare them all.
                _ => min_by(c, |i| c.load(i)),
            }
        }
    }
}

fn min_by(c: &impl Candidates, key: impl Fn(usize) -> f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for i in (0..c.len()).filter(|i| c.eligible(*i)) {
        let k = key(i);
        if best.is_none_or(|(_, b)| k < b) {
            best = Some((i, k));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<(bool, f64, u64)>);
    impl Candidates for Fixed {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn eligible(&self, i: usize) -> bool {
            self.0[i].0
        }
        fn load(&self, i: usize) -> f64 {
            self.0[i].1
        }
        fn latency_ns(&self, i: usize) -> u64 {
            self.0[i].2
        }
    }

    fn loads(loads: &[f64]) -> Fixed {
        Fixed(loads.iter().map(|l| (true, *l, 0)).collect())
    }

    #[test]
    fn strategies_pick_what_they_promise() {
        let c = loads(&[0.5, 0.1, 0.9]);
        let rr: Vec<_> = (0..6).map(|t| choose(Strategy::RoundRobin, &c, t).unwrap()).collect();
        assert_eq!(rr, [0, 1, 2, 0, 1, 2]);
        assert_eq!(choose(Strategy::LeastLoaded, &c, 0), Some(1));
        for _ in 0..1000 {
            assert_ne!(choose(Strategy::PowerOfTwoChoices, &c, 0), Some(2), "never the most loaded of three");
        }
        let lat = Fixed(vec![(true, 0.0, 30), (true, 0.0, 10), (true, 0.0, 20)]);
        assert_eq!(choose(Strategy::LowestLatency, &lat, 0), Some(1));
    }

    #[test]
    fn ineligible_instances_are_skipped_by_every_strategy() {
        let c = Fixed(vec![(false, 0.0, 1), (true, 0.5, 50), (false, 0.0, 1), (true, 0.7, 70)]);
        for strategy in [
            Strategy::RoundRobin,
            Strategy::LeastLoaded,
            Strategy::PowerOfTwoChoices,
            Strategy::LowestLatency,
        ] {
            for turn in 0..50 {
                let i = choose(strategy, &c, turn).unwrap();
                assert!(i == 1 || i == 3, "{strategy:?} chose {i}");
            }
        }
        let none = Fixed(vec![(false, 0.0, 0); 3]);
        assert_eq!(choose(Strategy::PowerOfTwoChoices, &none, 0), None);
        assert_eq!(choose(Strategy::RoundRobin, &Fixed(vec![]), 0), None);
    }

    #[test]
    fn power_of_two_spreads_over_equal_instances() {
        let c = loads(&[0.0; 4]);
        let mut hits = [0; 4];
        for _ in 0..4000 {
            hits[choose(Strategy::PowerOfTwoChoices, &c, 0).unwrap()] += 1;
        }
        assert!(hits.iter().all(|h| *h > 500), "{hits:?}");
    }
}
