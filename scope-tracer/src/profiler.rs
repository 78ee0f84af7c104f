//! The cluster profiler: per node and per kind of work (a span name, e.g. an actor's handler
//! span), how often it runs and how long it takes; with the nodes' CPU, memory and queue depths
//! from cluster health, [`analyze`] names the bottlenecks and the hotspots, merged across nodes.
//!
//! [`ProfileLayer`] times every span it sees (sampled or not: it is a profile, not a trace)
//! into per-name counts, total time and a DDSketch of durations (`foundation_core`'s
//! [`Percentiles`], within [`RELATIVE_ERROR`]: p50 and p99 within 1 % of the exact values,
//! not bucket edges). Two views are kept:
//!
//! - **lifetime**, since the profiler started;
//! - **a window**, between [`Profiler::start_window`] and [`Profiler::stop_window`] (one at a
//!   time: starting another replaces it; stopped, it keeps its figures until the next start).
//!   `participant::start_profile` / `stop_profile` open and close one on every node at once
//!   (`profile start|stop` on a node's stdin, the dashboard's buttons, its API).
//!
//! Each node's participant answers with its [`NodeProfile`] (both views); [`analyze`] works on
//! the window most working nodes report (nodes without it are named in
//! [`Analysis::outside_window`] and left out), or on lifetimes when no node has a window. A
//! node's figures are its own word: decoded as checked sketches, summed without overflow, but
//! a node holding the cluster's cookie can still report made-up durations.
//! **Observers** (processes named `status-…`: a dashboard, a CLI that joined to look) are
//! marked in every table and left out of load analysis. Memory thresholds are shares of the
//! host's memory.
//!
//! Memory: one sketch per span name and view (a few KiB each: the bins between the shortest and
//! the longest duration seen); span names are static strings, so their number is bounded by the
//! program's code.

use foundation_core::sync::MutexRecover;
use foundation_core::telemetry::Percentiles;
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
use foundation_cluster::singleton::OBSERVER_PREFIX;

/// The relative error of the duration sketches (1 %: `Percentiles::default`).
pub const RELATIVE_ERROR: f64 = foundation_core::config::DEFAULT_MAX_RELATIVE_ERROR;

/// What one kind of work did on one node (or, merged, on several).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindStats {
    /// Times it ran.
    pub count: u64,
    /// Time spent in it, summed.
    pub total: Duration,
    /// Its durations in seconds, a DDSketch within [`RELATIVE_ERROR`].
    pub durations: Percentiles,
}

impl Default for KindStats {
    fn default() -> Self {
        KindStats { count: 0, total: Duration::ZERO, durations: Percentiles::default() }
    }
}

impl KindStats {
    /// Records one run of `d`.
    pub fn record(&mut self, d: Duration) {
        self.count = self.count.saturating_add(1);
        self.total = self.total.saturating_add(d);
        self.durations.record(d.as_secs_f64());
    }

    /// The duration at quantile `q` (0–1), within [`RELATIVE_ERROR`] of the exact one and
    /// never outside the shortest and longest run; zero when it never ran.
    pub fn quantile(&self, q: f64) -> Duration {
        // A reading from another node is checked as a sketch, not as sensible durations: a huge
        // or negative value saturates rather than panics.
        self.durations
            .quantile(q.clamp(0.0, 1.0))
            .map_or(Duration::ZERO, |s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
    }

    /// Folds another node's figures for the same kind in.
    pub fn merge(&mut self, other: &KindStats) -> Result<(), foundation_core::telemetry::TelemetryError> {
        self.durations.merge(&other.durations)?;
        self.count = self.count.saturating_add(other.count);
        self.total = self.total.saturating_add(other.total);
        Ok(())
    }
}

/// A profile window as one node recorded it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileWindow {
    /// The window's id (16 hex digits).
    pub id: String,
    /// When it was started, on the clock of the node that started it (ns since the Unix epoch):
    /// every node reports the same value for one window.
    pub started_unix_ns: u64,
    /// Whether it is still recording.
    pub running: bool,
    /// How long it has recorded (until its stop, if stopped).
    pub elapsed: Duration,
    /// Per kind of work (span name), within the window.
    pub kinds: BTreeMap<String, KindStats>,
}

/// One node's profile: since its profiler started, and over the current window if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeProfile {
    /// The node.
    pub node: String,
    /// Whether it is an observer (named `status-…`), left out of load analysis.
    pub observer: bool,
    /// How long it has been profiling.
    pub elapsed: Duration,
    /// Per kind of work (span name), since it started.
    pub kinds: BTreeMap<String, KindStats>,
    /// The latest window it heard of, running or stopped.
    pub window: Option<ProfileWindow>,
}

impl NodeProfile {
    /// Runs per second of every kind together, since it started.
    pub fn rate(&self) -> f64 {
        rate(&self.kinds, self.elapsed)
    }
}

fn rate(kinds: &BTreeMap<String, KindStats>, elapsed: Duration) -> f64 {
    kinds.values().fold(0u64, |n, k| n.saturating_add(k.count)) as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Whether `node` is an observer: judged by its name (as membership has it), not by what it
/// says of itself.
fn is_observer(node: &str) -> bool {
    node.starts_with(OBSERVER_PREFIX)
}

/// A window being recorded (or stopped, kept until the next).
#[derive(Debug)]
struct Window {
    id: String,
    started_unix_ns: u64,
    started: Instant,
    stopped: Option<Instant>,
    kinds: BTreeMap<&'static str, KindStats>,
}

#[derive(Debug, Default)]
struct State {
    lifetime: BTreeMap<&'static str, KindStats>,
    window: Option<Window>,
}

/// Aggregated per-kind statistics of a process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Profiler {
    started: Instant,
    state: Arc<Mutex<State>>,
}

impl Default for Profiler {
    fn default() -> Self {
        Profiler { started: Instant::now(), state: Arc::default() }
    }
}

impl Profiler {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }

    /// Records one run of `kind` lasting `d` (what [`ProfileLayer`] does when a span closes).
    pub fn record(&self, kind: &'static str, d: Duration) {
        let mut state = self.lock();
        state.lifetime.entry(kind).or_default().record(d);
        if let Some(w) = state.window.as_mut().filter(|w| w.stopped.is_none()) {
            w.kinds.entry(kind).or_default().record(d);
        }
    }

    /// Starts recording window `id`, started at `started_unix_ns` on the starting node's clock.
    /// It replaces the window this process has unless that one was started later (two starts
    /// from different nodes, arriving in either order, leave every node on the later one);
    /// false if it was not taken. Starting the current window again changes nothing.
    pub fn start_window(&self, id: &str, started_unix_ns: u64) -> bool {
        let mut state = self.lock();
        if let Some(w) = &state.window
            && (w.id == id || (w.started_unix_ns, w.id.as_str()) > (started_unix_ns, id))
        {
            return w.id == id;
        }
        state.window = Some(Window {
            id: id.to_string(),
            started_unix_ns,
            started: Instant::now(),
            stopped: None,
            kinds: BTreeMap::new(),
        });
        true
    }

    /// Stops window `id` (its figures stay until the next start); false if it is not the
    /// current window or already stopped.
    pub fn stop_window(&self, id: &str) -> bool {
        let mut state = self.lock();
        match state.window.as_mut().filter(|w| w.id == id && w.stopped.is_none()) {
            Some(w) => {
                w.stopped = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// The window this process records or last recorded: its id and whether it still runs.
    pub fn window(&self) -> Option<(String, bool)> {
        self.lock().window.as_ref().map(|w| (w.id.clone(), w.stopped.is_none()))
    }

    /// This process's profile, as `node`.
    pub fn snapshot(&self, node: &str) -> NodeProfile {
        let state = self.lock();
        let own = |kinds: &BTreeMap<&'static str, KindStats>| {
            kinds.iter().map(|(k, s)| (k.to_string(), s.clone())).collect::<BTreeMap<_, _>>()
        };
        NodeProfile {
            node: node.to_string(),
            observer: is_observer(node),
            elapsed: self.started.elapsed(),
            kinds: own(&state.lifetime),
            window: state.window.as_ref().map(|w| ProfileWindow {
                id: w.id.clone(),
                started_unix_ns: w.started_unix_ns,
                running: w.stopped.is_none(),
                elapsed: w.stopped.unwrap_or_else(Instant::now).saturating_duration_since(w.started),
                kinds: own(&w.kinds),
            }),
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
        self.profiler.record(span.name(), at.elapsed());
    }
}

/// When [`analyze`] calls something a bottleneck.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A node over this CPU percent (of one core). Default 80.
    pub cpu_percent: f64,
    /// A node whose resident memory is over this share of its host's memory (0–1). Default 0.5
    /// (a node that does not know its host's memory is not judged on memory).
    pub memory_share: f64,
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
        Thresholds { cpu_percent: 80.0, memory_share: 0.5, queued: 1_000, imbalance: 2.0, hotspots: 5 }
    }
}

/// One node's part in a hotspot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeShare {
    /// The node.
    pub node: String,
    /// Whether it is an observer.
    pub observer: bool,
    /// Runs on it.
    pub count: u64,
    /// Time spent in it there.
    pub total: Duration,
    /// Its median there.
    pub p50: Duration,
    /// Its 99th percentile there.
    pub p99: Duration,
}

/// A kind of work that takes much of the time, over every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hotspot {
    /// The kind (span name).
    pub kind: String,
    /// Runs on every node.
    pub count: u64,
    /// Time spent in it on every node.
    pub total: Duration,
    /// Its median over every node's runs (merged sketches, within [`RELATIVE_ERROR`]).
    pub p50: Duration,
    /// Its 99th percentile over every node's runs.
    pub p99: Duration,
    /// Per node, the most time first.
    pub nodes: Vec<NodeShare>,
}

/// What [`analyze`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Bottlenecks, each said in a sentence that names the node.
    pub bottlenecks: Vec<String>,
    /// The kinds of work with the most total time, most first.
    pub hotspots: Vec<Hotspot>,
    /// The window the figures are over (`None`: since each node started).
    pub window: Option<String>,
    /// Whether that window is still recording on some node.
    pub window_running: bool,
    /// Nodes that answered without that window (they did not hear of its start): left out.
    pub outside_window: Vec<String>,
    /// Observers among the nodes (marked, left out of load analysis).
    pub observers: Vec<String>,
}

/// The window to analyze: the one most working nodes report (observers do not vote), ties
/// going to the later start (on the starting node's clock, the same on every node). One node
/// claiming a window nobody else has cannot take the analysis over.
pub fn chosen_window(profiles: &[NodeProfile]) -> Option<&ProfileWindow> {
    let mut votes: BTreeMap<&str, (usize, &ProfileWindow)> = BTreeMap::new();
    for p in profiles.iter().filter(|p| !is_observer(&p.node)) {
        if let Some(w) = &p.window {
            votes.entry(w.id.as_str()).or_insert((0, w)).0 += 1;
        }
    }
    votes.into_values().max_by_key(|(n, w)| (*n, w.started_unix_ns)).map(|(_, w)| w)
}

/// Bottlenecks and hotspots from the nodes' health (and, to see queues grow, the health at the
/// previous look) and their profiles: over the newest window when any node has one (see the
/// module docs), else since each node started.
pub fn analyze(
    health: &ClusterHealth,
    previous: Option<&ClusterHealth>,
    profiles: &[NodeProfile],
    t: &Thresholds,
) -> Analysis {
    let mut bottlenecks = Vec::new();
    let observer = |name: &str| name.starts_with(OBSERVER_PREFIX);
    for n in health.nodes.iter().filter(|n| n.status == "up" && !observer(&n.name)) {
        let Some(h) = &n.health else { continue };
        if let Some(cpu) = h.cpu_percent.filter(|c| *c > t.cpu_percent) {
            bottlenecks.push(format!("{}: CPU at {cpu:.0} % (over {:.0} %)", n.name, t.cpu_percent));
        }
        if let (Some(mem), Some(host)) = (h.memory_bytes, h.host_memory_bytes)
            && host > 0
            && mem as f64 > t.memory_share * host as f64
        {
            bottlenecks.push(format!(
                "{}: {} MiB resident, {:.0} % of its host's {} MiB (over {:.0} %)",
                n.name,
                mem >> 20,
                100.0 * mem as f64 / host as f64,
                host >> 20,
                100.0 * t.memory_share
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

    // The figures each node contributes: the shared window's, or its lifetime's.
    let window = chosen_window(profiles).map(|w| w.id.clone());
    let mut outside_window = Vec::new();
    let mut window_running = false;
    let mut views: Vec<(&NodeProfile, &BTreeMap<String, KindStats>, Duration)> = Vec::new();
    for p in profiles {
        match (&window, &p.window) {
            (None, _) => views.push((p, &p.kinds, p.elapsed)),
            (Some(id), Some(w)) if &w.id == id => {
                window_running |= w.running;
                views.push((p, &w.kinds, w.elapsed));
            }
            // An observer without the window is no news: it only looks.
            (Some(_), _) if is_observer(&p.node) => {}
            (Some(_), _) => outside_window.push(p.node.clone()),
        }
    }
    let observers: Vec<String> =
        profiles.iter().filter(|p| is_observer(&p.node)).map(|p| p.node.clone()).collect();

    // Uneven load among the nodes that work (observers only look).
    let rates: Vec<(&str, f64)> = views
        .iter()
        .filter(|(p, ..)| !is_observer(&p.node))
        .map(|(p, kinds, elapsed)| (p.node.as_str(), rate(kinds, *elapsed)))
        .collect();
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

    // Hotspots: per kind, every node's figures merged.
    let mut by_kind: BTreeMap<&str, (KindStats, Vec<NodeShare>)> = BTreeMap::new();
    for (p, kinds, _) in &views {
        for (kind, s) in *kinds {
            let (merged, shares) = by_kind.entry(kind.as_str()).or_default();
            if merged.merge(s).is_err() {
                // Another error bound (a node of another version): its counts still add up.
                merged.count = merged.count.saturating_add(s.count);
                merged.total = merged.total.saturating_add(s.total);
            }
            shares.push(NodeShare {
                node: p.node.clone(),
                observer: is_observer(&p.node),
                count: s.count,
                total: s.total,
                p50: s.quantile(0.5),
                p99: s.quantile(0.99),
            });
        }
    }
    let mut hotspots: Vec<Hotspot> = by_kind
        .into_iter()
        .map(|(kind, (merged, mut nodes))| {
            nodes.sort_by(|a, b| b.total.cmp(&a.total).then(a.node.cmp(&b.node)));
            Hotspot {
                kind: kind.to_string(),
                count: merged.count,
                total: merged.total,
                p50: merged.quantile(0.5),
                p99: merged.quantile(0.99),
                nodes,
            }
        })
        .collect();
    hotspots.sort_by(|a, b| b.total.cmp(&a.total).then(a.kind.cmp(&b.kind)));
    hotspots.truncate(t.hotspots);
    Analysis { bottlenecks, hotspots, window, window_running, outside_window, observers }
}
