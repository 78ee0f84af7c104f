//! The cluster profiler: per node and per kind of work (a span name, e.g. an actor's handler
//! span), how often it runs and how long it takes; with the nodes' CPU, memory and queue depths
//! from cluster health, [`analyze`] names the bottlenecks and the hotspots.
//!
//! [`ProfileLayer`] times every span it sees (sampled or not: it is a profile, not a trace)
//! into per-name counters and a log-scale histogram (buckets of ×2, from 1 µs). Each node's
//! participant answers with its [`NodeProfile`]; [`profile`] collects them.

use foundation_core::sync::MutexRecover;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use foundation_cluster::health::ClusterHealth;

/// Histogram buckets: bucket `i` holds durations below 2^i µs (the last one: the rest).
const BUCKETS: usize = 32;

/// What one kind of work did on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindStats {
    /// Times it ran.
    pub count: u64,
    /// Time spent in it, summed.
    pub total: Duration,
    /// Durations by bucket (below 1 µs, 2 µs, 4 µs, …).
    pub buckets: Vec<u64>,
}

impl KindStats {
    fn record(&mut self, d: Duration) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        self.count += 1;
        self.total += d;
        let micros = d.as_micros().max(1) as u64;
        let i = (64 - micros.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[i] += 1;
    }

    /// The duration below which `q` (0–1) of the runs fell (the upper edge of its bucket).
    pub fn quantile(&self, q: f64) -> Duration {
        let target = (self.count as f64 * q.clamp(0.0, 1.0)).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return Duration::from_micros(1u64 << i);
            }
        }
        Duration::ZERO
    }
}

/// One node's profile since its profiler started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeProfile {
    /// The node.
    pub node: String,
    /// How long it has been profiling.
    pub elapsed: Duration,
    /// Per kind of work (span name).
    pub kinds: BTreeMap<String, KindStats>,
}

impl NodeProfile {
    /// Runs per second of every kind together.
    pub fn rate(&self) -> f64 {
        self.kinds.values().map(|k| k.count).sum::<u64>() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Aggregated per-kind statistics of a process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Profiler {
    started: Instant,
    kinds: Arc<Mutex<BTreeMap<&'static str, KindStats>>>,
}

impl Default for Profiler {
    fn default() -> Self {
        Profiler { started: Instant::now(), kinds: Arc::default() }
    }
}

impl Profiler {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, KindStats>> {
        self.kinds.lock_or_recover()
    }

    /// This process's profile, as `node`.
    pub fn snapshot(&self, node: &str) -> NodeProfile {
        NodeProfile {
            node: node.to_string(),
            elapsed: self.started.elapsed(),
            kinds: self.lock().iter().map(|(k, s)| (k.to_string(), s.clone())).collect(),
        }
    }
}

/// The layer that feeds a [`Profiler`].
#[derive(Debug, Clone)]
pub struct ProfileLayer {
    profiler: Profiler,
}

impl ProfileLayer {
    /// A layer recording into `profiler`.
    pub fn new(profiler: Profiler) -> Self {
        ProfileLayer { profiler }
    }
}

struct Opened(Instant);

impl<S> Layer<S> for ProfileLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(Opened(at)) = span.extensions_mut().remove::<Opened>() else { return };
        self.profiler.lock().entry(span.name()).or_default().record(at.elapsed());
    }
}

/// When [`analyze`] calls something a bottleneck.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A node over this CPU percent (of one core). Default 80.
    pub cpu_percent: f64,
    /// A node over this resident memory. Default 1 GiB.
    pub memory_bytes: u64,
    /// Messages waiting in a node's queues above this, and more than at the previous look.
    /// Default 1 000.
    pub queued: usize,
    /// The busiest node's rate over the least busy node's above this. Default 2.
    pub imbalance: f64,
    /// Hotspots reported. Default 5.
    pub hotspots: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { cpu_percent: 80.0, memory_bytes: 1 << 30, queued: 1_000, imbalance: 2.0, hotspots: 5 }
    }
}

/// A kind of work that takes much of the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hotspot {
    /// The node.
    pub node: String,
    /// The kind (span name).
    pub kind: String,
    /// Time spent in it.
    pub total: Duration,
    /// Runs.
    pub count: u64,
    /// Its 99th percentile (bucket edge).
    pub p99: Duration,
}

/// What [`analyze`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Bottlenecks, each said in a sentence that names the node.
    pub bottlenecks: Vec<String>,
    /// The kinds of work with the most total time, most first.
    pub hotspots: Vec<Hotspot>,
}

/// Bottlenecks and hotspots from the nodes' health (and, to see queues grow, the health at the
/// previous look) and their profiles.
pub fn analyze(
    health: &ClusterHealth,
    previous: Option<&ClusterHealth>,
    profiles: &[NodeProfile],
    t: &Thresholds,
) -> Analysis {
    let mut bottlenecks = Vec::new();
    for n in health.nodes.iter().filter(|n| n.status == "up") {
        let Some(h) = &n.health else { continue };
        if let Some(cpu) = h.cpu_percent.filter(|c| *c > t.cpu_percent) {
            bottlenecks.push(format!("{}: CPU at {cpu:.0} % (over {:.0} %)", n.name, t.cpu_percent));
        }
        if let Some(mem) = h.memory_bytes.filter(|m| *m > t.memory_bytes) {
            bottlenecks.push(format!(
                "{}: {} MiB resident (over {} MiB)",
                n.name,
                mem >> 20,
                t.memory_bytes >> 20
            ));
        }
        let was =
            previous.and_then(|p| p.nodes.iter().find(|x| x.name == n.name)).and_then(|x| x.health.as_ref());
        // Per kind of subscriber (channel topic) where the node says, else the node's total.
        let mut growing = false;
        for (topic, now) in &h.channel_topics {
            let before = was.and_then(|w| w.channel_topics.get(topic)).copied().unwrap_or(0);
            if *now > t.queued && *now > before {
                growing = true;
                bottlenecks.push(format!(
                    "{}: {now} messages waiting for subscribers of `{topic}` and growing (was {before})",
                    n.name
                ));
            }
        }
        if let (Some(now), Some(before)) = (h.channel_queued, was.and_then(|w| w.channel_queued))
            && !growing
            && now > t.queued
            && now > before
        {
            bottlenecks.push(format!("{}: {now} messages queued and growing (was {before})", n.name));
        }
    }
    let rates: Vec<(&str, f64)> = profiles.iter().map(|p| (p.node.as_str(), p.rate())).collect();
    if let (Some(max), Some(min)) =
        (rates.iter().max_by(|a, b| a.1.total_cmp(&b.1)), rates.iter().min_by(|a, b| a.1.total_cmp(&b.1)))
        && rates.len() > 1
        && max.1 > t.imbalance * min.1.max(1e-9)
    {
        bottlenecks.push(format!(
            "uneven load: {} runs {:.0} spans/s, {} {:.0} (more than {:.1}×)",
            max.0, max.1, min.0, min.1, t.imbalance
        ));
    }
    let mut hotspots: Vec<Hotspot> = profiles
        .iter()
        .flat_map(|p| {
            p.kinds.iter().map(|(kind, s)| Hotspot {
                node: p.node.clone(),
                kind: kind.clone(),
                total: s.total,
                count: s.count,
                p99: s.quantile(0.99),
            })
        })
        .collect();
    hotspots.sort_by(|a, b| b.total.cmp(&a.total).then(a.node.cmp(&b.node)));
    hotspots.truncate(t.hotspots);
    Analysis { bottlenecks, hotspots }
}
