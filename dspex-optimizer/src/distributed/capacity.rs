//! What the scheduler learns of each node's speed, and what it does with it.
//!
//! - **Speed**: an exponentially weighted mean of the seconds a worker of the node spends per
//!   evaluation, from the work time each evaluation task's result reports (builds are left out:
//!   bootstrapping makes many calls). A node with no
//!   result yet is taken to be as fast as the mean of the others.
//! - **Lease size**: a worker is leased tasks until they hold about [`LEASE_SECS`] of its node's
//!   work, counting each task's evaluations (at least one, at most what it asks and
//!   [`MAX_LEASE`], and never more than a sixteenth of what is queued, so a short queue is
//!   spread rather than held by one worker). The n-th task of a lease times out n lease
//!   timeouts after it was leased (it is done after the others).
//! - **Share**: a node's speed per worker over the sum of every node's: nodes size their active
//!   workers by their share of the queue (a node 3× slower per worker runs fewer when the queue
//!   runs short), and a cluster-wide worker target is split by it.
//! - **Backup tasks** (at the tail, when a worker asks and nothing is queued): a task leased to a
//!   slower node is leased again to the asker when the asker would finish it sooner than the
//!   holder is expected to (LATE's rule); whichever result comes first counts, the other is a
//!   duplicate. At most one backup per task.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// How much work a lease holds, about.
pub const LEASE_SECS: f64 = 2.0;
/// Most tasks in one lease.
pub const MAX_LEASE: usize = 16;
/// Weight of a new sample in the mean.
const ALPHA: f64 = 0.2;

/// Every node's speed, as measured (see the [module](self)).
#[derive(Debug, Clone, Default)]
pub(crate) struct Capacity {
    secs_per_eval: BTreeMap<String, f64>,
}

impl Capacity {
    /// A result of `node`'s: `evaluations` done in `work`.
    pub(crate) fn record(&mut self, node: &str, evaluations: f64, work: Duration) {
        let sample = work.as_secs_f64() / evaluations.max(1.0);
        if !sample.is_finite() {
            return;
        }
        let mean = self.secs_per_eval.entry(node.to_string()).or_insert(sample);
        *mean += ALPHA * (sample - *mean);
    }

    /// The nodes heard from.
    pub(crate) fn nodes(&self) -> Vec<String> {
        self.secs_per_eval.keys().cloned().collect()
    }

    /// Seconds per evaluation of a worker of `node` (the others' mean if unknown; `None` if no
    /// node is known).
    pub(crate) fn secs_per_eval(&self, node: &str) -> Option<f64> {
        self.secs_per_eval.get(node).copied().or_else(|| {
            let known: Vec<f64> = self.secs_per_eval.values().copied().collect();
            (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
        })
    }

    /// Whether a lease of `tasks` tasks holding `evaluations` is full for a worker of `node`
    /// asking for up to `max`, with `queued` tasks waiting: about [`LEASE_SECS`] of the node's
    /// work (one task while its speed is unknown), at most `max`, [`MAX_LEASE`] and a sixteenth
    /// of the queue (at least one task).
    pub(crate) fn lease_full(
        &self,
        node: &str,
        tasks: usize,
        evaluations: f64,
        max: usize,
        queued: usize,
    ) -> bool {
        let most = max.min(MAX_LEASE).min(queued / 16).max(1);
        if tasks >= most {
            return true;
        }
        match self.secs_per_eval.get(node) {
            Some(secs) => secs * evaluations >= LEASE_SECS,
            None => true,
        }
    }

    /// `node`'s share of the speed of `nodes` (its own included), from 0 to 1; `1 / nodes` while
    /// nothing is known.
    pub(crate) fn share(&self, node: &str, nodes: &[String]) -> f64 {
        let speed = |n: &str| self.secs_per_eval(n).map(|s| 1.0 / s.max(1e-9));
        let total: f64 = nodes.iter().filter_map(|n| speed(n)).sum();
        match speed(node) {
            Some(mine) if total > 0.0 => (mine / total).clamp(0.0, 1.0),
            _ => 1.0 / nodes.len().max(1) as f64,
        }
    }

    /// Whether a task of `cost` evaluations leased to `holder` at `since` is better leased again
    /// to `asker` now: the asker is expected to finish it before the holder.
    pub(crate) fn worth_backup(&self, holder: &str, since: Instant, asker: &str, cost: f64) -> bool {
        if holder == asker {
            return false;
        }
        let (Some(theirs), Some(mine)) = (self.secs_per_eval(holder), self.secs_per_eval(asker)) else {
            return false;
        };
        let left = (theirs * cost - since.elapsed().as_secs_f64()).max(0.0);
        mine * cost < left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_size_leases_shares_and_backups() {
        let mut c = Capacity::default();
        assert!(c.lease_full("a", 1, 5.0, 8, 1000), "nothing known: one task");
        for _ in 0..20 {
            c.record("fast", 5.0, Duration::from_millis(100));
            c.record("slow", 5.0, Duration::from_millis(300));
        }
        assert!((c.secs_per_eval("fast").unwrap() - 0.02).abs() < 1e-9);
        // Tasks of 5 evaluations taken until full: 2 s at 20 ms is 20 tasks, capped by the ask
        // and MAX_LEASE; 2 s at 60 ms, 7; a short queue is spread; big tasks fill it sooner.
        let fill = |node: &str, cost: f64, max: usize, queued: usize| {
            (1..).find(|n| c.lease_full(node, *n, cost * *n as f64, max, queued)).unwrap()
        };
        assert_eq!(fill("fast", 5.0, 64, 1000), MAX_LEASE);
        assert_eq!(fill("fast", 5.0, 4, 1000), 4);
        assert_eq!(fill("slow", 5.0, 64, 1000), 7);
        assert_eq!(fill("fast", 5.0, 64, 40), 2);
        assert_eq!(fill("fast", 5.0, 64, 3), 1);
        assert_eq!(fill("fast", 50.0, 64, 1000), 2);
        let nodes = ["fast".to_string(), "slow".to_string()];
        assert!((c.share("fast", &nodes) - 0.75).abs() < 1e-9);
        assert!((c.share("slow", &nodes) - 0.25).abs() < 1e-9);
        // A node not heard from yet counts as the mean.
        let three = ["fast".to_string(), "slow".to_string(), "new".to_string()];
        assert!(c.share("new", &three) > c.share("slow", &three));
        // A slow holder just started: the fast asker would finish first; not the other way.
        let now = Instant::now();
        assert!(c.worth_backup("slow", now, "fast", 5.0));
        assert!(!c.worth_backup("fast", now, "slow", 5.0));
        assert!(!c.worth_backup("fast", now, "fast", 5.0));
    }
}
