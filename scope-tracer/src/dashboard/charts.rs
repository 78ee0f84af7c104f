//! The dashboard's charts: the last minutes of the cluster, sampled every [`SAMPLE_EVERY`] by
//! one task per dashboard from what the page already shows (cluster health, run progress), kept
//! in memory (the newest [`KEEP`] samples: five minutes), served as `/api/series` and pushed
//! with the page's events, and drawn by the page as inline SVG (no external service, no npm).
//!
//! Per node, from the health every node reports (`NodeHealth`): frames and bytes per second
//! between it and the other nodes (sent and received together), its heartbeat round trip
//! (the median over its peers), its process's provider calls and 429s per second, and its
//! queue depth (channel subscribers' queues plus the runtime's global queue). Per run: the
//! evaluations per second its scheduler last reported. A rate is the difference of a node's
//! totals between two of its own samples over the time between them on its own clock
//! (`NodeHealth::uptime_ms`: the reader's clock and the age of a snapshot do not skew it); a
//! node that restarted (its clock went back), whose snapshot did not change since the last look,
//! or that is not up has no point for that step. A node's figures are its latest health, as its
//! own answer or its heartbeats carry it. Observers are marked; nodes no longer listed are
//! forgotten.

use foundation_core::sync::MutexRecover;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_cluster::Cluster;
use foundation_cluster::health::NodeHealth;
use serde::Serialize;

/// How often the history takes a sample.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept: five minutes at [`SAMPLE_EVERY`].
pub const KEEP: usize = 150;

/// One node at one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodePoint {
    /// Frames per second sent and received (a frame carries one message or several).
    pub frames_per_sec: Option<f64>,
    /// Bytes per second sent and received.
    pub bytes_per_sec: Option<f64>,
    /// Median heartbeat round trip to its peers, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Calls per second to model providers.
    pub calls_per_sec: Option<f64>,
    /// 429 answers per second.
    pub rate_limited_per_sec: Option<f64>,
    /// Messages waiting in channel subscriber queues plus tasks in the runtime's global queue.
    pub queued: Option<f64>,
    /// Whether the node is an observer (named `status-…`).
    pub observer: bool,
}

/// The cluster at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Its place in this dashboard's history (1, 2, …): what an event stream resumes after,
    /// whatever the wall clock does.
    pub seq: u64,
    /// This dashboard's run (random): a page that sees another one starts its history anew.
    pub run: u64,
    /// When, in milliseconds since the Unix epoch (this node's clock).
    pub at_unix_ms: u64,
    /// Each node up that answered, by name.
    pub nodes: BTreeMap<String, NodePoint>,
    /// Evaluations per second of each running optimization run, by run.
    pub runs: BTreeMap<String, f64>,
}

/// The samples, oldest first.
#[derive(Debug)]
pub(super) struct History {
    samples: Mutex<VecDeque<Sample>>,
    run: u64,
    next: std::sync::atomic::AtomicU64,
}

impl Default for History {
    fn default() -> Self {
        History {
            samples: Mutex::default(),
            run: foundation_core::random::next_u64() >> 12,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl History {
    pub(super) fn samples(&self) -> Vec<Sample> {
        self.samples.lock_or_recover().iter().cloned().collect()
    }

    /// The samples after `seq` (what an event stream has not sent yet).
    pub(super) fn since(&self, seq: u64) -> Vec<Sample> {
        self.samples.lock_or_recover().iter().filter(|s| s.seq > seq).cloned().collect()
    }

    fn push(&self, mut sample: Sample) {
        sample.seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sample.run = self.run;
        let mut samples = self.samples.lock_or_recover();
        samples.push_back(sample);
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }
}

/// A node's running totals: frames, bytes, provider calls, 429s.
type Totals = [Option<u64>; 4];

fn totals(h: &NodeHealth) -> Totals {
    [
        Some(h.frames_sent.saturating_add(h.frames_received)),
        Some(h.bytes_sent.saturating_add(h.bytes_received)),
        h.provider_calls,
        h.provider_rate_limited,
    ]
}

/// Per second between `before` and `now`, `secs` apart; none if either is missing or it went
/// back.
fn per_sec(before: Option<u64>, now: Option<u64>, secs: f64) -> Option<f64> {
    let (b, n) = (before?, now?);
    (n >= b && secs > 0.0).then(|| (n - b) as f64 / secs)
}

/// The sample made from `health` and `runs`, given the totals of the previous sample (updated).
fn sample(
    health: &foundation_cluster::health::ClusterHealth,
    runs: &BTreeMap<String, serde_json::Value>,
    previous: &mut BTreeMap<String, (u64, Totals)>,
    at_unix_ms: u64,
) -> Sample {
    let mut nodes = BTreeMap::new();
    let mut seen = BTreeMap::new();
    for n in health.nodes.iter().filter(|n| n.status == "up") {
        let Some(h) = &n.health else { continue };
        let now_totals = totals(h);
        let mut point = NodePoint {
            rtt_ms: h.heartbeat_rtt_ms,
            queued: Some((h.channel_queued.unwrap_or(0) + h.runtime_queue_depth) as f64),
            observer: n.name.starts_with(foundation_cluster::singleton::OBSERVER_PREFIX),
            ..Default::default()
        };
        // On the node's own clock: a later snapshot of the same process only.
        if let Some((at, before)) = previous.get(&n.name).filter(|(at, _)| h.uptime_ms > *at) {
            let secs = (h.uptime_ms - at) as f64 / 1e3;
            point.frames_per_sec = per_sec(before[0], now_totals[0], secs);
            point.bytes_per_sec = per_sec(before[1], now_totals[1], secs);
            point.calls_per_sec = per_sec(before[2], now_totals[2], secs);
            point.rate_limited_per_sec = per_sec(before[3], now_totals[3], secs);
        }
        seen.insert(n.name.clone(), (h.uptime_ms, now_totals));
        nodes.insert(n.name.clone(), point);
    }
    // Nodes still listed but not up keep their last totals (a rate over the gap when they are
    // up again, unless they restarted); nodes no longer listed (observers come and go, each
    // under a new name) are forgotten.
    previous.retain(|name, _| health.nodes.iter().any(|n| &n.name == name));
    for (name, totals) in seen {
        previous.insert(name, totals);
    }
    let runs = runs
        .iter()
        .filter(|(_, r)| r["result"].is_null() && r["failed"].is_null() && r["stopped"] != true)
        .filter_map(|(id, r)| Some((id.clone(), r["evals_per_sec"].as_f64()?)))
        .collect();
    Sample { seq: 0, run: 0, at_unix_ms, nodes, runs }
}

/// Samples the cluster into `history` every [`SAMPLE_EVERY`], until aborted.
pub(super) async fn sample_forever(
    history: Arc<History>,
    cluster: Cluster,
    runs: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
) {
    let mut previous = BTreeMap::new();
    loop {
        let started = tokio::time::Instant::now();
        let health = super::health(&cluster).await;
        let runs = runs.lock_or_recover().clone();
        let at_unix_ms = crate::recorder::now_unix_ns() / 1_000_000;
        history.push(sample(&health, &runs, &mut previous, at_unix_ms));
        tokio::time::sleep_until(started + SAMPLE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_cluster::health::{ClusterHealth, NodeStatus};

    fn node(name: &str, uptime_ms: u64, frames: u64, calls: Option<u64>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            addr: "127.0.0.1:1".into(),
            status: "up".into(),
            health: Some(NodeHealth {
                uptime_ms,
                frames_sent: frames,
                frames_received: frames,
                bytes_sent: frames * 100,
                provider_calls: calls,
                provider_rate_limited: calls.map(|c| c / 10),
                heartbeat_rtt_ms: Some(0.4),
                channel_queued: Some(3),
                runtime_queue_depth: 1,
                ..Default::default()
            }),
            last_heartbeat_ms: Some(0),
        }
    }

    #[test]
    fn rates_come_from_successive_totals_on_the_nodes_clock_and_a_restart_leaves_a_gap() {
        let mut previous = BTreeMap::new();
        let runs = BTreeMap::from([
            ("running".to_string(), serde_json::json!({"evals_per_sec": 12.5})),
            ("done".to_string(), serde_json::json!({"evals_per_sec": 3.0, "result": {"best": 1}})),
        ]);
        let health = |uptime, frames, calls| {
            ClusterHealth::from_nodes(vec![
                node("n1", uptime, frames, calls),
                node("status-9", uptime, 0, None),
            ])
        };
        let first = sample(&health(10_000, 100, Some(10)), &runs, &mut previous, 0);
        assert_eq!(first.nodes["n1"].frames_per_sec, None, "no rate without a previous sample");
        assert_eq!(first.nodes["n1"].queued, Some(4.0));
        assert!(first.nodes["status-9"].observer);
        assert_eq!(first.runs, BTreeMap::from([("running".to_string(), 12.5)]));

        // 2 s later on the node's clock, whenever the dashboard looked.
        let second = sample(&health(12_000, 300, Some(50)), &runs, &mut previous, 9_999);
        let n1 = &second.nodes["n1"];
        // 200 more each way in 2 s: 200 frames/s, 10 000 bytes/s (sent only here), 20 calls/s.
        assert_eq!((n1.frames_per_sec, n1.bytes_per_sec), (Some(200.0), Some(10_000.0)));
        assert_eq!((n1.calls_per_sec, n1.rate_limited_per_sec), (Some(20.0), Some(2.0)));
        assert_eq!(n1.rtt_ms, Some(0.4));

        // The same snapshot seen again: no point (not a rate of 0).
        let again = sample(&health(12_000, 300, Some(50)), &runs, &mut previous, 11_000);
        assert_eq!(again.nodes["n1"].frames_per_sec, None);
        // Restarted (its clock went back, whatever its totals): no point this step; the next
        // one has a rate again.
        let third = sample(&health(1_000, 500, Some(1)), &runs, &mut previous, 13_000);
        assert_eq!(third.nodes["n1"].frames_per_sec, None);
        let fourth = sample(&health(2_000, 510, Some(1)), &runs, &mut previous, 15_000);
        assert_eq!(fourth.nodes["n1"].frames_per_sec, Some(20.0));
        assert_eq!(fourth.nodes["status-9"].calls_per_sec, None, "no provider totals: no rate");
        // A node no longer listed is forgotten.
        let only_n1 = ClusterHealth::from_nodes(vec![node("n1", 3_000, 520, Some(1))]);
        sample(&only_n1, &runs, &mut previous, 17_000);
        assert!(!previous.contains_key("status-9"));

        let history = History::default();
        for i in 0..(KEEP + 10) {
            // (a wall clock that stepped back half way: the order is the history's own)
            let at_unix_ms = if i < 80 { 1_000_000 + i as u64 } else { i as u64 };
            history.push(Sample {
                seq: 0,
                run: 0,
                at_unix_ms,
                nodes: BTreeMap::new(),
                runs: BTreeMap::new(),
            });
        }
        let kept = history.samples();
        assert_eq!((kept.len(), kept[0].seq, kept[KEEP - 1].seq), (KEEP, 11, KEEP as u64 + 10));
        assert_eq!(history.since(KEEP as u64 + 8).len(), 2, "only the samples after a cursor");
    }
}
