//! Tracing on `foundation node --trace-rate R`: the node's trace participant, and a small
//! remotable "hop" actor that forwards a request along a path of nodes, so that a trace can be
//! started on one node, cross others and come back (`trace-hop n2,n3,n1` on stdin), then be
//! collected from every node (`trace-collect TRACE_ID`); and cluster traces (`trace-start`,
//! `trace-stop`, `trace-report`) and profiles (`profile`).

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use foundation_actors::wire::Wire;
use foundation_cluster::Cluster;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;
use serde::Serialize;

use super::reply::{Usage, emit};

const NEEDS: Option<&str> = Some("--trace-rate");

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "trace-hop",
        usage: "trace-hop NODE,NODE,...",
        what: "start a trace here and send it along these nodes",
        needs: NEEDS,
    },
    Usage {
        command: "trace-collect",
        usage: "trace-collect TRACE_ID",
        what: "collect a trace from every node: its timeline and Chrome trace export",
        needs: NEEDS,
    },
    Usage {
        command: "profile",
        usage: "profile [start|stop]",
        what: "every traced node's profile, with the bottlenecks and hotspots found; start or stop a profile window on every node",
        needs: NEEDS,
    },
    Usage {
        command: "trace-start",
        usage: "trace-start [RATE] [NODE,NODE,...]",
        what: "start a cluster trace (default: every node, rate 1)",
        needs: NEEDS,
    },
    Usage {
        command: "trace-stop",
        usage: "trace-stop ID",
        what: "stop a cluster trace and print its report (and send it to --otlp, if given)",
        needs: NEEDS,
    },
    Usage {
        command: "trace-report",
        usage: "trace-report ID",
        what: "a cluster trace's report so far",
        needs: NEEDS,
    },
];

/// A tracing command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `trace-hop NODE,NODE,...`.
    Hop { path: Vec<String> },
    /// `trace-collect TRACE_ID`.
    Collect { trace_id: String },
    /// `profile`.
    Profile,
    /// `profile start`.
    ProfileStart,
    /// `profile stop`.
    ProfileStop,
    /// `trace-start [RATE] [NODE,NODE,...]`.
    Start { rate: f64, nodes: Vec<String> },
    /// `trace-stop ID`.
    Stop { id: String },
    /// `trace-report ID`.
    Report { id: String },
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        let list = |nodes: &str| nodes.split(',').map(str::to_string).collect::<Vec<_>>();
        Some(Ok(match (op, args) {
            ("trace-hop", [path]) => Command::Hop { path: list(path) },
            ("trace-collect", [id]) => Command::Collect { trace_id: id.to_string() },
            ("profile", []) => Command::Profile,
            ("profile", ["start"]) => Command::ProfileStart,
            ("profile", ["stop"]) => Command::ProfileStop,
            ("trace-start", rest) if rest.len() <= 2 => {
                let rate = match rest.first().map(|r| r.parse::<f64>()) {
                    None => 1.0,
                    Some(Ok(rate)) => rate,
                    Some(Err(_)) => return bad("`trace-start` takes a rate from 0 to 1"),
                };
                Command::Start { rate, nodes: rest.get(1).map(|n| list(n)).unwrap_or_default() }
            }
            ("trace-stop", [id]) => Command::Stop { id: id.to_string() },
            ("trace-report", [id]) => Command::Report { id: id.to_string() },
            (
                "trace-hop" | "trace-collect" | "profile" | "trace-start" | "trace-stop" | "trace-report",
                _,
            ) => {
                return bad(&format!("wrong arguments for `{op}`"));
            }
            _ => return None,
        }))
    }
}

/// What a tracing command (or a hop arriving here) printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// A trace started here and was sent along its path.
    TraceStarted { trace: String },
    /// A hop's path ended here: the round trip of `trace` is done.
    TraceHopDone { trace: String },
    /// A hop could not go on from `node`.
    TraceHopFailed { node: String, error: String },
    /// A trace collected from every node.
    TraceCollected { trace: String, timeline: serde_json::Value, chrome: serde_json::Value },
    /// Every traced node's profile (runs per kind, over the analysis' window or since each
    /// node started) and what the analysis found.
    Profile { nodes: Vec<String>, runs: serde_json::Value, analysis: serde_json::Value },
    /// A profile window started on these nodes.
    ProfileWindowStarted { id: String, nodes: Vec<String> },
    /// A profile window stopped on these nodes.
    ProfileWindowStopped { id: String, nodes: Vec<String> },
    /// A profile window could not be stopped.
    ProfileWindowFailed { error: String },
    /// A cluster trace started.
    ClusterTraceStarted { id: String },
    /// A cluster trace did not start.
    ClusterTraceFailed { error: String },
    /// A cluster trace's report.
    ClusterTraceReport { id: String, report: serde_json::Value },
    /// A cluster trace's report could not be made.
    ClusterTraceReportFailed { id: String, error: String },
    /// A stopped cluster trace was sent to the OTLP collector.
    ClusterTraceExported { id: String, endpoint: String, spans: usize },
    /// A stopped cluster trace could not be sent to the OTLP collector.
    ClusterTraceExportFailed { id: String, endpoint: String, error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::TraceStarted { trace } => write!(f, "trace started {trace}"),
            Reply::TraceHopDone { trace } => write!(f, "trace hop done {trace}"),
            Reply::TraceHopFailed { node, error } => write!(f, "trace hop failed at {node}: {error}"),
            Reply::TraceCollected { timeline, chrome, .. } => {
                write!(f, "trace collected {}", serde_json::json!({"timeline": timeline, "chrome": chrome}))
            }
            Reply::Profile { nodes, runs, analysis } => {
                write!(
                    f,
                    "profile {}",
                    serde_json::json!({"nodes": nodes, "runs": runs, "analysis": analysis})
                )
            }
            Reply::ProfileWindowStarted { id, nodes } => {
                write!(f, "profile window {id} started on {}", nodes.join(","))
            }
            Reply::ProfileWindowStopped { id, nodes } => {
                write!(f, "profile window {id} stopped on {}", nodes.join(","))
            }
            Reply::ProfileWindowFailed { error } => write!(f, "profile window not stopped: {error}"),
            Reply::ClusterTraceStarted { id } => write!(f, "cluster trace started {id}"),
            Reply::ClusterTraceFailed { error } => write!(f, "cluster trace not started: {error}"),
            Reply::ClusterTraceReport { report, .. } => write!(f, "cluster trace report {report}"),
            Reply::ClusterTraceReportFailed { error, .. } => {
                write!(f, "cluster trace report failed: {error}")
            }
            Reply::ClusterTraceExported { endpoint, spans, .. } => {
                write!(f, "cluster trace exported to {endpoint}: {spans} spans")
            }
            Reply::ClusterTraceExportFailed { error, .. } => write!(f, "cluster trace not exported: {error}"),
        }
    }
}

/// How long `profile`, `profile start` and `stop` wait for each node (commands typed by hand:
/// a loaded node answers late rather than not at all).
const PROFILE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pg scope of hop actors (group `hop@NODE`).
const SCOPE: &str = foundation_actors::pg_scopes::HOPS;

#[derive(RactorClusterMessage)]
pub enum HopMsg {
    /// The rest of the path.
    Hop(Wire<Vec<String>>),
}

struct HopActor {
    node: String,
    /// The cluster's frame limit (`cluster.max_frame_bytes`) for the path it forwards.
    max_bytes: usize,
}

/// This node's frame limit, set by [`start`] (one node per process).
static MAX_FRAME_BYTES: OnceLock<usize> = OnceLock::new();

/// The smallest `cluster.max_frame_bytes` a node accepts: the limit if [`start`] did not run.
const SMALLEST_FRAME_LIMIT: usize = 1024;

fn max_frame_bytes() -> usize {
    MAX_FRAME_BYTES.get().copied().unwrap_or(SMALLEST_FRAME_LIMIT)
}

fn hop_actor(node: &str) -> Option<ActorRef<HopMsg>> {
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &format!("hop@{node}"))
        .into_iter()
        .next()
        .map(Into::into)
}

/// Sends the rest of `path` to its first node, from inside the current span (whose context the
/// message carries); refused if it is larger than `max_bytes` (the cluster's frame limit).
fn forward(path: &[String], max_bytes: usize) -> Result<(), String> {
    let (next, rest) = path.split_first().ok_or("empty path")?;
    let wire = Wire::encode(&rest.to_vec(), max_bytes).map_err(|e| {
        tracing::warn!(%next, hops = rest.len(), error = %e, "trace hop path too large to send");
        e.to_string()
    })?;
    let actor = hop_actor(next).ok_or_else(|| format!("no hop actor on {next}"))?;
    actor.cast(HopMsg::Hop(wire)).map_err(|e| e.to_string())
}

impl Actor for HopActor {
    type Msg = HopMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<HopMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), format!("hop@{}", self.node), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(&self, _: ActorRef<HopMsg>, msg: HopMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let HopMsg::Hop(wire) = msg;
        // The sender's trace continues here (no await while inside the spans).
        let received = wire.span();
        let _in_trace = received.enter();
        let Ok(path) = wire.into_inner() else { return Ok(()) };
        let _hop = tracing::info_span!("hop", node = %self.node, remaining = path.len()).entered();
        let trace = scope_tracer::current_context().map(|c| c.trace_hex()).unwrap_or_default();
        if path.is_empty() {
            emit(&Reply::TraceHopDone { trace });
        } else if let Err(error) = forward(&path, self.max_bytes) {
            // Inside the hop's span: the trace shows the hop ended in error, and why.
            tracing::error!(next = %path[0], %error, "the hop could not go on");
            emit(&Reply::TraceHopFailed { node: self.node.clone(), error });
        }
        Ok(())
    }
}

/// Starts the participant and the hop actor of this node.
pub async fn start(cluster: &foundation_cluster::Cluster) -> anyhow::Result<()> {
    scope_tracer::participant::start(cluster, scope_tracer::buffer().clone()).await?;
    let max_bytes = cluster.max_frame_bytes();
    let _ = MAX_FRAME_BYTES.set(max_bytes);
    Actor::spawn(None, HopActor { node: cluster.name().to_string(), max_bytes }, ()).await?;
    Ok(())
}

/// Runs a tracing command (in the background if it waits for other nodes).
pub fn run(cluster: &Cluster, otlp: Option<&str>, command: Command) {
    let cluster = cluster.clone();
    let otlp = otlp.map(str::to_string);
    match command {
        Command::Hop { path } => hop(cluster.name(), &path),
        Command::Collect { trace_id } => {
            tokio::spawn(async move { emit(&collect(&cluster, &trace_id).await) });
        }
        Command::Profile => {
            tokio::spawn(async move { emit(&profile(&cluster).await) });
        }
        Command::ProfileStart => {
            tokio::spawn(async move {
                let started = scope_tracer::participant::start_profile(&cluster, PROFILE_TIMEOUT).await;
                emit(&Reply::ProfileWindowStarted { id: started.id, nodes: started.nodes });
            });
        }
        Command::ProfileStop => {
            tokio::spawn(async move {
                emit(&match scope_tracer::participant::stop_profile(&cluster, None, PROFILE_TIMEOUT).await {
                    Ok(stopped) => Reply::ProfileWindowStopped { id: stopped.id, nodes: stopped.nodes },
                    Err(e) => Reply::ProfileWindowFailed { error: e.to_string() },
                });
            });
        }
        Command::Start { rate, nodes } => {
            tokio::spawn(async move { emit(&start_session(&cluster, rate, nodes).await) });
        }
        Command::Stop { id } => {
            tokio::spawn(session_report(id, true, otlp));
        }
        Command::Report { id } => {
            tokio::spawn(session_report(id, false, None));
        }
    }
}

/// `trace-hop PATH`: a new trace, starting here, along `path`.
fn hop(node: &str, path: &[String]) {
    let root = tracing::info_span!("request", trace_root = true, node = %node);
    let _in = root.enter();
    let trace = scope_tracer::current_context().map(|c| c.trace_hex()).unwrap_or_default();
    emit(&match forward(path, max_frame_bytes()) {
        Ok(()) => Reply::TraceStarted { trace },
        Err(error) => {
            tracing::error!(%error, "the hop could not start");
            Reply::TraceHopFailed { node: node.to_string(), error }
        }
    });
}

/// `trace-collect TRACE_ID`: the trace from every node, with its timeline and its Chrome trace
/// export.
async fn collect(cluster: &Cluster, trace_id: &str) -> Reply {
    let timeline = scope_tracer::participant::collect(cluster, trace_id, Duration::from_secs(1)).await;
    let chrome = scope_tracer::export::chrome_trace(&timeline);
    Reply::TraceCollected {
        trace: trace_id.to_string(),
        timeline: serde_json::json!(timeline),
        chrome: serde_json::json!(chrome),
    }
}

/// `profile`: every node's profile and what `analyze` finds.
async fn profile(cluster: &Cluster) -> Reply {
    let health = cluster.cluster_health(PROFILE_TIMEOUT).await;
    let profiles = scope_tracer::participant::profiles(PROFILE_TIMEOUT).await;
    // Every kind of work up to 20 (a table on stdout, not a page).
    let thresholds = scope_tracer::profiler::Thresholds { hotspots: 20, ..Default::default() };
    let analysis = scope_tracer::profiler::analyze(&health, None, &profiles, &thresholds);
    let nodes = profiles.iter().map(|p| p.node.clone()).collect();
    // Each node's runs per kind over what the analysis looked at: the window, or its lifetime.
    let runs: std::collections::BTreeMap<&str, std::collections::BTreeMap<&str, u64>> = profiles
        .iter()
        .filter_map(|p| {
            let kinds = match (&analysis.window, &p.window) {
                (None, _) => &p.kinds,
                (Some(id), Some(w)) if &w.id == id => &w.kinds,
                _ => return None,
            };
            Some((p.node.as_str(), kinds.iter().map(|(k, s)| (k.as_str(), s.count)).collect()))
        })
        .collect();
    Reply::Profile { nodes, runs: serde_json::json!(runs), analysis: serde_json::json!(analysis) }
}

/// `trace-start [RATE] [NODES]`: a cluster trace over `nodes` (all if empty) at `rate`.
async fn start_session(cluster: &Cluster, rate: f64, nodes: Vec<String>) -> Reply {
    let scope = scope_tracer::TraceScope { rate, nodes, ..Default::default() };
    match scope_tracer::start_cluster_trace(cluster, scope).await {
        Ok(id) => Reply::ClusterTraceStarted { id: id.to_string() },
        Err(e) => Reply::ClusterTraceFailed { error: e.to_string() },
    }
}

/// `trace-stop ID` / `trace-report ID`: the cluster trace's report (each trace's spans by name,
/// node and parent, the nodes missing, the coordinator's node); with `otlp`, the stopped trace
/// is also sent to that collector.
async fn session_report(id: String, stop: bool, otlp: Option<String>) {
    let timeout = Duration::from_secs(10);
    let report = if stop {
        scope_tracer::stop_cluster_trace(&id, timeout).await
    } else {
        scope_tracer::collect_cluster_trace(&id, timeout).await
    };
    match report {
        Ok(report) => {
            emit(&Reply::ClusterTraceReport { id: id.clone(), report: serde_json::json!(report) });
            if let Some(endpoint) = otlp {
                emit(&match scope_tracer::otlp::export(&endpoint, &report.traces).await {
                    Ok(()) => Reply::ClusterTraceExported { id, endpoint, spans: report.span_count() },
                    Err(e) => Reply::ClusterTraceExportFailed { id, endpoint, error: e.to_string() },
                });
            }
        }
        Err(e) => emit(&Reply::ClusterTraceReportFailed { id, error: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_over_the_frame_limit_is_refused_before_sending() {
        let path = vec!["n2".to_string(), "n".repeat(2000)];
        let err = forward(&path, 1024).unwrap_err();
        assert!(err.contains("exceeds the 1024-byte frame limit"), "{err}");
        // Within the limit, it goes on to look for the next node's hop actor (none here).
        assert_eq!(forward(&path[..1], 1024).unwrap_err(), "no hop actor on n2");
    }
}
