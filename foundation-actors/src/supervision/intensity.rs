//! The restart-intensity window: how many restarts happened within the last period.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restart times within the last `period`; at most `max_restarts + 1` are ever kept.
#[derive(Debug)]
pub(crate) struct IntensityWindow {
    max_restarts: u32,
    period: Duration,
    restarts: VecDeque<Instant>,
}

impl IntensityWindow {
    pub(crate) fn new(max_restarts: u32, period: Duration) -> Self {
        Self { max_restarts, period, restarts: VecDeque::new() }
    }

    /// Records a restart at `now`; false if it exceeds the intensity (the supervisor must stop).
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        while self.restarts.front().is_some_and(|t| now.duration_since(*t) >= self.period) {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        if self.restarts.len() > self.max_restarts as usize + 1 {
            self.restarts.pop_front();
        }
        self.restarts.len() <= self.max_restarts as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_max_restarts_within_the_period_is_refused() {
        let t0 = Instant::now();
        let mut w = IntensityWindow::new(3, Duration::from_secs(5));
        assert!(w.allow(t0));
        assert!(w.allow(t0 + Duration::from_secs(1)));
        assert!(w.allow(t0 + Duration::from_secs(2)));
        assert!(!w.allow(t0 + Duration::from_secs(3)), "a fourth restart within 5 s");
    }

    #[test]
    fn restarts_older_than_the_period_do_not_count() {
        let t0 = Instant::now();
        let mut w = IntensityWindow::new(2, Duration::from_secs(5));
        assert!(w.allow(t0));
        assert!(w.allow(t0 + Duration::from_secs(1)));
        // The first restart is exactly one period old: it no longer counts.
        assert!(w.allow(t0 + Duration::from_secs(5)));
        assert!(w.allow(t0 + Duration::from_secs(100)));
        let mut zero = IntensityWindow::new(0, Duration::from_secs(5));
        assert!(!zero.allow(t0), "intensity 0 allows no restart at all");
    }
}
