//! The phi-accrual failure detector (Hayashibara et al., as in Akka and Cassandra).
//!
//! Instead of a fixed timeout, it learns the distribution of heartbeat inter-arrival times and
//! reports `phi = -log10(P(a heartbeat arrives later than now))`: phi 8 means the silence so far
//! would happen by chance once in 10^8. A node whose heartbeats usually arrive every 200 ± 20 ms
//! is suspected sooner than one whose heartbeats jitter by seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Inter-arrival samples kept per peer.
pub const WINDOW: usize = 100;

/// One peer's heartbeat history.
#[derive(Debug, Clone)]
pub struct PhiDetector {
    intervals: VecDeque<f64>,
    last: Option<Instant>,
    min_std_ms: f64,
    pause_ms: f64,
}

impl PhiDetector {
    /// A detector that assumes at least `min_std` of jitter and tolerates `acceptable_pause`
    /// beyond the usual interval (GC pauses, a busy machine) before suspicion starts to grow.
    pub fn new(first_interval: Duration, min_std: Duration, acceptable_pause: Duration) -> Self {
        let mut intervals = VecDeque::with_capacity(WINDOW);
        // Seed with the expected interval so that phi is meaningful from the first heartbeat.
        intervals.push_back(first_interval.as_secs_f64() * 1e3);
        PhiDetector {
            intervals,
            last: None,
            min_std_ms: min_std.as_secs_f64() * 1e3,
            pause_ms: acceptable_pause.as_secs_f64() * 1e3,
        }
    }

    /// Records a heartbeat arriving at `now`.
    pub fn heartbeat(&mut self, now: Instant) {
        if let Some(last) = self.last {
            if self.intervals.len() == WINDOW {
                self.intervals.pop_front();
            }
            self.intervals.push_back(now.saturating_duration_since(last).as_secs_f64() * 1e3);
        }
        self.last = Some(now);
    }

    /// Time since the last heartbeat, at `now`; `None` before the first.
    pub fn silence(&self, now: Instant) -> Option<Duration> {
        self.last.map(|last| now.saturating_duration_since(last))
    }

    /// Suspicion at `now`; 0 before the first heartbeat.
    pub fn phi(&self, now: Instant) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let elapsed = now.saturating_duration_since(last).as_secs_f64() * 1e3;
        let n = self.intervals.len() as f64;
        let mean = self.intervals.iter().sum::<f64>() / n;
        let variance = self.intervals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let std = variance.sqrt().max(self.min_std_ms);
        phi(elapsed, mean + self.pause_ms, std)
    }
}

/// `-log10(1 - F(elapsed))` for a normal distribution, with the logistic approximation of its
/// CDF that Akka uses (accurate to about 1e-4, and numerically stable in the tail).
fn phi(elapsed: f64, mean: f64, std: f64) -> f64 {
    let y = (elapsed - mean) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed > mean { -(e / (1.0 + e)).log10() } else { -(1.0 - 1.0 / (1.0 + e)).log10() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(every_ms: u64, count: u32) -> (PhiDetector, Instant) {
        let mut d =
            PhiDetector::new(Duration::from_millis(every_ms), Duration::from_millis(20), Duration::ZERO);
        let t0 = Instant::now();
        let mut t = t0;
        for _ in 0..count {
            d.heartbeat(t);
            t += Duration::from_millis(every_ms);
        }
        (d, t - Duration::from_millis(every_ms))
    }

    #[test]
    fn phi_grows_with_silence_and_is_low_on_time() {
        let (d, last) = regular(200, 50);
        let at = |ms| d.phi(last + Duration::from_millis(ms));
        assert!(at(200) < 1.0, "on time: {}", at(200));
        assert!(at(260) > at(220));
        assert!(at(400) > 8.0, "a whole interval late with 20 ms jitter: {}", at(400));
        let mut previous = 0.0;
        for ms in (0..2000).step_by(50) {
            assert!(at(ms) >= previous, "phi must not decrease with silence");
            previous = at(ms);
        }
    }

    #[test]
    fn jittery_peers_and_acceptable_pauses_are_suspected_later() {
        let (steady, last) = regular(200, 50);
        let mut jittery =
            PhiDetector::new(Duration::from_millis(200), Duration::from_millis(20), Duration::ZERO);
        let mut t = Instant::now();
        for i in 0..50 {
            jittery.heartbeat(t);
            t += Duration::from_millis(if i % 2 == 0 { 50 } else { 350 });
        }
        let silence = Duration::from_millis(450);
        assert!(jittery.phi(t + silence) < steady.phi(last + silence));

        let mut patient =
            PhiDetector::new(Duration::from_millis(200), Duration::from_millis(20), Duration::from_secs(1));
        patient.heartbeat(last - Duration::from_millis(200));
        patient.heartbeat(last);
        assert!(patient.phi(last + Duration::from_millis(1000)) < 1.0);
        assert!(patient.phi(last + Duration::from_millis(1400)) > 8.0);
        assert_eq!(
            PhiDetector::new(Duration::from_millis(1), Duration::ZERO, Duration::ZERO).phi(Instant::now()),
            0.0
        );
    }
}
