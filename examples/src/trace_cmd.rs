//! Tracing on `foundation node --trace-rate R`: the node's trace participant, and a small
//! remotable "hop" actor that forwards a request along a path of nodes, so that a trace can be
//! started on one node, cross others and come back (`trace-hop n2,n3,n1` on stdin), then be
//! collected from every node (`trace-collect TRACE_ID`).

use std::sync::OnceLock;
use std::time::Duration;

use foundation_actors::wire::Wire;
use foundation_cluster::Cluster;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;

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
            say!("trace hop done {trace}");
        } else if let Err(e) = forward(&path, self.max_bytes) {
            say!("trace hop failed at {}: {e}", self.node);
        }
        Ok(())
    }
}

/// Starts the participant and the hop actor of this node.
pub async fn start(cluster: &foundation_cluster::Cluster) -> anyhow::Result<()> {
    scope_tracer::participant::start_participant(cluster, scope_tracer::buffer().clone()).await?;
    let max_bytes = cluster.max_frame_bytes();
    let _ = MAX_FRAME_BYTES.set(max_bytes);
    Actor::spawn(None, HopActor { node: cluster.name().to_string(), max_bytes }, ()).await?;
    Ok(())
}

/// `trace-hop PATH`: a new trace, starting here, along `path`.
pub fn hop(node: &str, path: &[String]) {
    let root = tracing::info_span!("request", trace_root = true, node = %node);
    let _in = root.enter();
    let trace = scope_tracer::current_context().map(|c| c.trace_hex()).unwrap_or_default();
    match forward(path, max_frame_bytes()) {
        Ok(()) => say!("trace started {trace}"),
        Err(e) => say!("trace hop failed at {node}: {e}"),
    }
}

/// `trace-collect TRACE_ID`: the trace from every node, printed as one JSON line with its
/// timeline and its Chrome trace export.
pub async fn collect(cluster: &Cluster, trace_id: &str) {
    let timeline = scope_tracer::participant::collect(cluster, trace_id, Duration::from_secs(1)).await;
    let report = serde_json::json!({
        "timeline": timeline,
        "chrome": scope_tracer::export::chrome_trace(&timeline),
    });
    say!("trace collected {report}");
}

/// `profile`: every node's profile and what `analyze` finds, as one JSON line.
pub async fn profile(cluster: &Cluster) {
    let health = cluster.cluster_health(Duration::from_secs(1)).await;
    let profiles = scope_tracer::participant::profiles(Duration::from_secs(1)).await;
    let analysis = scope_tracer::profiler::analyze(
        &health,
        None,
        &profiles,
        &scope_tracer::profiler::Thresholds::default(),
    );
    let nodes: Vec<&str> = profiles.iter().map(|p| p.node.as_str()).collect();
    let runs: std::collections::BTreeMap<&str, std::collections::BTreeMap<&str, u64>> = profiles
        .iter()
        .map(|p| (p.node.as_str(), p.kinds.iter().map(|(k, s)| (k.as_str(), s.count)).collect()))
        .collect();
    say!("profile {}", serde_json::json!({"nodes": nodes, "runs": runs, "analysis": analysis}));
}

/// `trace-start [RATE] [NODES]`: a cluster trace over `nodes` (all if empty) at `rate`.
pub async fn start_session(cluster: &Cluster, rate: f64, nodes: Vec<String>) {
    let scope = scope_tracer::TraceScope { rate, nodes, ..Default::default() };
    match scope_tracer::start_cluster_trace(cluster, scope).await {
        Ok(id) => say!("cluster trace started {id}"),
        Err(e) => say!("cluster trace not started: {e}"),
    }
}

/// `trace-stop ID` / `trace-report ID`: the cluster trace's report as one JSON line (each
/// trace's spans by name, node and parent, the nodes missing, the coordinator's node); with
/// `otlp`, the stopped trace is also sent to that collector.
pub async fn session_report(id: &str, stop: bool, otlp: Option<String>) {
    let timeout = Duration::from_secs(10);
    let report = if stop {
        scope_tracer::stop_cluster_trace(id, timeout).await
    } else {
        scope_tracer::collect_cluster_trace(id, timeout).await
    };
    match report {
        Ok(report) => {
            say!("cluster trace report {}", serde_json::to_string(&report).unwrap_or_default());
            if let Some(endpoint) = otlp {
                match scope_tracer::otlp::export(&endpoint, &report.traces).await {
                    Ok(()) => say!("cluster trace exported to {endpoint}: {} spans", report.span_count()),
                    Err(e) => say!("cluster trace not exported: {e}"),
                }
            }
        }
        Err(e) => say!("cluster trace report failed: {e}"),
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
