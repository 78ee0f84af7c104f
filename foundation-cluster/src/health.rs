//! Node and cluster health: each node samples its own (load, CPU, memory, actors, tasks, queue
//! depths, runtime lag), sends
//! it with every heartbeat, and so knows every peer's latest health and how long ago it last
//! heard from it. [`Cluster::health`](crate::Cluster::health) is this node's view;
//! [`Cluster::cluster_health`](crate::Cluster::cluster_health) merges every reachable node's view.

use foundation_core::sync::RwLockRecover;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use foundation_actors::channels::Channels;
use serde::{Deserialize, Serialize};

/// How often a node samples its own health.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One node's own measurements. Fields are `None` where the platform does not tell (they are
/// read from `/proc` on Linux).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// One-minute load average of the machine.
    pub load_average: Option<f64>,
    /// CPU used by the node process over the last sample, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the node process, in bytes.
    pub memory_bytes: Option<u64>,
    /// Memory the node process may use on its host, in bytes: the machine's (`MemTotal`), or
    /// its cgroup's limit (`memory.max`) when lower, as in a container.
    pub host_memory_bytes: Option<u64>,
    /// When this health was sampled, in milliseconds since the node's sampler started (its own
    /// monotonic clock): rates from two samples divide by this, not by the reader's clock; lower
    /// than a previous sample's, the node restarted.
    pub uptime_ms: u64,
    /// Frames the node sent to other nodes since it started (every peer; a frame carries one
    /// message or several coalesced).
    pub frames_sent: u64,
    /// Frames it received from other nodes since it started.
    pub frames_received: u64,
    /// Bytes of the frames it sent since it started.
    pub bytes_sent: u64,
    /// Bytes of the frames it received since it started.
    pub bytes_received: u64,
    /// The median of its process's latest heartbeat round trip to each peer (last 30 s), in
    /// milliseconds.
    pub heartbeat_rtt_ms: Option<f64>,
    /// Calls its process made to model providers since it started (`None`: built without the
    /// `llm` feature; several nodes in one process share the count).
    pub provider_calls: Option<u64>,
    /// Of those, answered 429.
    pub provider_rate_limited: Option<u64>,
    /// How late the node's async runtime ran a timer over the last sample, in milliseconds: a
    /// busy or blocked runtime shows here first.
    pub runtime_lag_ms: f64,
    /// Actors alive in the node process (ractor's process-wide actor table).
    pub actors: usize,
    /// Tasks alive on the node's tokio runtime (actors are tasks too).
    pub tasks: usize,
    /// Tasks waiting in the runtime's global queue for a worker thread: the scheduler backlog.
    pub runtime_queue_depth: usize,
    /// Messages waiting in the node's channel subscriber queues, if the node has channels.
    /// (ractor does not expose the length of an actor's mailbox, so these bounded queues are
    /// the mailbox depths a node can report.)
    pub channel_queued: Option<usize>,
    /// The deepest single subscriber queue.
    pub channel_queue_max: Option<usize>,
    /// Messages waiting per channel topic on this node (topics with any waiting): the mailbox
    /// depth of each kind of subscriber.
    pub channel_topics: std::collections::BTreeMap<String, usize>,
}

/// A node as one node (or the merge of several views) sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Where it listens for other nodes.
    pub addr: String,
    /// `"up"`, `"unreachable"`, `"down"` or `"left"` (departed on purpose).
    pub status: String,
    /// Its latest health, if heard from.
    pub health: Option<NodeHealth>,
    /// Milliseconds since its last heartbeat was received (0 for the reporting node itself).
    pub last_heartbeat_ms: Option<u64>,
}

/// Every known node and cluster-wide totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// One row per known node, by name.
    pub nodes: Vec<NodeStatus>,
    /// Nodes up.
    pub up: usize,
    /// Nodes down or unreachable (not those that left on purpose).
    pub down: usize,
    /// Resident memory of all nodes up, in bytes.
    pub memory_bytes: u64,
    /// Mean CPU percent of the nodes up that report it.
    pub mean_cpu_percent: Option<f64>,
    /// Actors alive on all nodes up.
    pub actors: usize,
    /// Messages waiting in the channel subscriber queues of all nodes up.
    pub channel_queued: usize,
}

impl ClusterHealth {
    /// Builds the totals from the rows.
    pub fn from_nodes(mut nodes: Vec<NodeStatus>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let up_rows: Vec<&NodeStatus> = nodes.iter().filter(|n| n.status == "up").collect();
        let cpus: Vec<f64> = up_rows.iter().filter_map(|n| n.health.as_ref()?.cpu_percent).collect();
        ClusterHealth {
            up: up_rows.len(),
            down: nodes.iter().filter(|n| n.status == "down" || n.status == "unreachable").count(),
            memory_bytes: up_rows.iter().filter_map(|n| n.health.as_ref()?.memory_bytes).sum(),
            mean_cpu_percent: (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64),
            actors: up_rows.iter().filter_map(|n| n.health.as_ref()).map(|h| h.actors).sum(),
            channel_queued: up_rows.iter().filter_map(|n| n.health.as_ref()?.channel_queued).sum(),
            nodes,
        }
    }

    /// Merges views from several nodes: a node that answered itself is up with its own health;
    /// any other keeps the most alarming status reported for it (down over unreachable over up)
    /// and the freshest heartbeat.
    pub fn merge(views: Vec<(String, ClusterHealth)>) -> Self {
        let responders: Vec<String> = views.iter().map(|(name, _)| name.clone()).collect();
        let mut rows: std::collections::BTreeMap<String, NodeStatus> = std::collections::BTreeMap::new();
        let rank = |s: &str| match s {
            "down" => 3,
            "unreachable" => 2,
            "left" => 1,
            _ => 0,
        };
        for (responder, view) in views {
            for row in view.nodes {
                let answered = responders.contains(&row.name);
                let entry = rows.entry(row.name.clone()).or_insert_with(|| row.clone());
                if answered {
                    if row.name == responder {
                        *entry = NodeStatus { status: "up".into(), last_heartbeat_ms: Some(0), ..row };
                    }
                } else {
                    if rank(&row.status) > rank(&entry.status) {
                        entry.status = row.status.clone();
                    }
                    if row.last_heartbeat_ms < entry.last_heartbeat_ms || entry.last_heartbeat_ms.is_none() {
                        entry.last_heartbeat_ms = row.last_heartbeat_ms;
                        entry.health = row.health.clone().or(entry.health.take());
                    }
                }
            }
        }
        Self::from_nodes(rows.into_values().collect())
    }
}

/// Samples this process's health every [`SAMPLE_INTERVAL`] into `into`, until aborted.
pub(crate) async fn sample_forever(
    into: Arc<RwLock<NodeHealth>>,
    channels: Option<Channels>,
    traffic_name: String,
) {
    let origin = Instant::now();
    let mut last_cpu = cpu_ticks();
    let mut last_at = Instant::now();
    let mut lag = Duration::ZERO;
    loop {
        // Measure first, so that a node has health to report from its first heartbeat on.
        let cpu = cpu_ticks();
        let elapsed = last_at.elapsed().as_secs_f64();
        let cpu_percent = match (last_cpu, cpu) {
            // /proc reports in clock ticks of 1/100 s on Linux; the first sample has no interval.
            (Some(a), Some(b)) if elapsed > 0.05 => {
                Some((b.saturating_sub(a)) as f64 / 100.0 / elapsed * 100.0)
            }
            _ => None,
        };
        (last_cpu, last_at) = (cpu, Instant::now());
        let runtime = tokio::runtime::Handle::current().metrics();
        let queued = channels.as_ref().map(Channels::queued);
        let traffic = ractor_cluster::peer_traffic(&traffic_name).into_iter().fold([0u64; 4], |t, p| {
            [
                t[0].saturating_add(p.sent_frames),
                t[1].saturating_add(p.received_frames),
                t[2].saturating_add(p.sent_bytes),
                t[3].saturating_add(p.received_bytes),
            ]
        });
        #[cfg(feature = "llm")]
        let calls = Some(foundation_actors::providers::process_call_totals());
        #[cfg(not(feature = "llm"))]
        let calls: Option<CallTotalsStandIn> = None;
        let health = NodeHealth {
            load_average: load_average(),
            cpu_percent,
            memory_bytes: resident_memory(),
            host_memory_bytes: host_memory(),
            uptime_ms: origin.elapsed().as_millis() as u64,
            frames_sent: traffic[0],
            frames_received: traffic[1],
            bytes_sent: traffic[2],
            bytes_received: traffic[3],
            heartbeat_rtt_ms: crate::heartbeat::recent_rtt_median().map(|s| s * 1e3),
            provider_calls: calls.map(|c| c.calls),
            provider_rate_limited: calls.map(|c| c.rate_limited),
            runtime_lag_ms: lag.as_secs_f64() * 1e3,
            actors: ractor::registry::pid_registry::get_all_pids().len(),
            tasks: runtime.num_alive_tasks(),
            runtime_queue_depth: runtime.global_queue_depth(),
            channel_queued: queued.map(|q| q.total),
            channel_queue_max: queued.map(|q| q.deepest),
            channel_topics: channels
                .as_ref()
                .map(|c| c.queued_by_topic().into_iter().map(|(t, d)| (t, d.total)).collect())
                .unwrap_or_default(),
        };
        metrics::gauge!("foundation_node_runtime_lag_seconds").set(lag.as_secs_f64());
        metrics::gauge!("foundation_node_actors").set(health.actors as f64);
        metrics::gauge!("foundation_node_tasks").set(health.tasks as f64);
        if let Some(q) = queued {
            metrics::gauge!("foundation_node_channel_queued").set(q.total as f64);
        }
        if let Some(m) = health.memory_bytes {
            metrics::gauge!("foundation_node_memory_bytes").set(m as f64);
        }
        *into.write_or_recover() = health;

        let asked = Instant::now();
        tokio::time::sleep(SAMPLE_INTERVAL).await;
        lag = asked.elapsed().saturating_sub(SAMPLE_INTERVAL);
    }
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the providers' totals are without the `llm` feature: never any.
#[cfg(not(feature = "llm"))]
#[derive(Clone, Copy)]
struct CallTotalsStandIn {
    calls: u64,
    rate_limited: u64,
}

/// The machine's memory (`MemTotal`), or this process's cgroup (v2) limit when lower.
fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 =
        meminfo.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let total = kb.checked_mul(1024)?;
    // "max" (no limit) or a number of bytes.
    let limit =
        std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|l| l.trim().parse::<u64>().ok());
    Some(limit.map_or(total, |l| l.min(total)))
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, status: &str, last: Option<u64>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            addr: format!("{name}:1"),
            status: status.into(),
            health: None,
            last_heartbeat_ms: last,
        }
    }

    #[test]
    fn merge_trusts_responders_and_keeps_the_worst_news_about_others() {
        let from_a = ClusterHealth::from_nodes(vec![
            row("a", "up", Some(0)),
            row("b", "up", Some(150)),
            row("c", "down", Some(4000)),
        ]);
        let from_b = ClusterHealth::from_nodes(vec![
            row("b", "up", Some(0)),
            row("a", "up", Some(90)),
            row("c", "unreachable", Some(3000)),
        ]);
        let merged = ClusterHealth::merge(vec![("a".into(), from_a), ("b".into(), from_b)]);
        let status: Vec<(&str, &str)> =
            merged.nodes.iter().map(|n| (n.name.as_str(), n.status.as_str())).collect();
        assert_eq!(status, [("a", "up"), ("b", "up"), ("c", "down")]);
        assert_eq!(merged.nodes[2].last_heartbeat_ms, Some(3000));
        assert_eq!((merged.up, merged.down), (2, 1));
    }

    #[test]
    fn this_process_can_be_measured_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_memory().is_some_and(|m| m > 0));
            assert!(cpu_ticks().is_some());
            assert!(load_average().is_some());
        }
    }
}
