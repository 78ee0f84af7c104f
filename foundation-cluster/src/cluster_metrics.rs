//! Cluster-wide percentiles: every node's histogram readings, merged on request.
//!
//! A node whose program has a [`Telemetry`] shares it with [`MetricsReader::start`]: a small
//! actor in the pg group `metrics@NODE` of scope [`SCOPE`] answers with the node's histogram
//! readings (its DDSketches over the telemetry window, lifetime count and sum). [`collect`] asks
//! every node that shares one, at once, and merges the readings of each histogram (same name,
//! same labels) into one: its quantiles are cluster-wide, within the same relative error as
//! each node's (DDSketch merges exactly). `foundation cluster metrics --seeds ADDR` prints them.
//!
//! - **A snapshot, not a transaction**: each node answers with its window as it stands when the
//!   question reaches it.
//! - **Nodes that do not answer are named, not waited for**: a node that shares its readings and
//!   does not answer within the timeout, answers with readings that do not fit one frame, do not
//!   decode (a reading is decoded only if it is a sketch this version could have made: checked
//!   field by field, so a made-up one cannot make the merge allocate without bound), or cannot
//!   be merged (a different `max_relative_error`), is listed in [`ClusterMetrics::missing`] with
//!   why, and none of its readings is in the merge. Members up that share none seen from here
//!   are [`ClusterMetrics::unshared`]; observers are neither.
//! - **Identity from the session**: a node's answer is counted under the node whose session it
//!   came over; a peer cannot answer for another node.
//!
//! *Cost*: one message to each node and its sketches back (a few hundred bytes to a few KiB per
//! histogram); nothing runs between questions.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_actors::wire::Wire;
use foundation_core::Telemetry;
use foundation_core::telemetry::Percentiles;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use crate::Cluster;

/// The pg scope of shared readings (groups `metrics@NODE`).
pub const SCOPE: &str = foundation_actors::pg_scopes::METRICS;

/// One histogram's reading on one node.
#[derive(Clone, Serialize, Deserialize)]
pub struct HistogramReading {
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// The reading.
    pub reading: Percentiles,
}

/// A node's readings, or why they cannot be sent.
type Readings = Result<Vec<HistogramReading>, String>;

#[derive(RactorClusterMessage)]
enum ReaderMsg {
    /// This node's readings, or why they cannot be sent.
    #[rpc]
    Read(Wire<()>, RpcReplyPort<Wire<Readings>>),
}

struct Responder {
    telemetry: Telemetry,
    group: String,
    max_bytes: usize,
}

/// This node's histogram readings, labels sorted.
fn readings(telemetry: &Telemetry) -> Vec<HistogramReading> {
    telemetry
        .histograms()
        .into_iter()
        .map(|(key, reading)| {
            let mut labels: Vec<(String, String)> =
                key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect();
            labels.sort();
            HistogramReading { name: key.name().to_string(), labels, reading }
        })
        .collect()
}

impl Actor for Responder {
    type Msg = ReaderMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ReaderMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), self.group.clone(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ReaderMsg>,
        msg: ReaderMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let ReaderMsg::Read(_, reply) = msg;
        let readings = readings(&self.telemetry);
        let count = readings.len();
        let wire = Wire::encode_or(&Ok(readings), self.max_bytes, |e| {
            tracing::error!(error = %e, histograms = count, "this node's histogram readings do not fit one frame");
            Err(format!("its {count} histograms do not fit one frame: {e}"))
        });
        let _ = reply.send(wire);
        Ok(())
    }
}

/// Why readings could not be shared.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// This node shares its readings already.
    #[error("node `{0}` shares its histogram readings already (one reader per node)")]
    AlreadyShared(String),
    /// The responder actor did not start.
    #[error("cannot start the metrics reader: {0}")]
    Spawn(#[source] ractor::SpawnErr),
}

/// This node's histogram readings, shared with the cluster. Dropping it stops sharing.
pub struct MetricsReader {
    responder: ActorRef<ReaderMsg>,
}

impl Drop for MetricsReader {
    fn drop(&mut self) {
        self.responder.stop(None);
    }
}

impl std::fmt::Debug for MetricsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsReader").finish_non_exhaustive()
    }
}

impl MetricsReader {
    /// Shares `telemetry`'s histogram readings with the cluster.
    pub async fn start(cluster: &Cluster, telemetry: Telemetry) -> Result<MetricsReader, ShareError> {
        let group = format!("metrics@{}", cluster.name());
        let shared = ractor::pg::get_scoped_members(&SCOPE.to_string(), &group);
        if shared.iter().any(|c| c.get_id().is_local()) {
            return Err(ShareError::AlreadyShared(cluster.name().to_string()));
        }
        let responder = Responder { telemetry, group, max_bytes: cluster.max_frame_bytes() };
        let (responder, _) = Actor::spawn(None, responder, ()).await.map_err(ShareError::Spawn)?;
        Ok(MetricsReader { responder })
    }
}

/// One histogram across the cluster.
#[derive(Clone)]
pub struct ClusterHistogram {
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// Each answering node's reading of it, by node name.
    pub by_node: Vec<(String, Percentiles)>,
    /// Their merge: cluster-wide quantiles, counts and sums.
    pub merged: Percentiles,
}

/// Every shared histogram, merged over the nodes that answered.
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    /// The histograms, by name then labels.
    pub histograms: Vec<ClusterHistogram>,
    /// The nodes whose readings are in the merge, sorted.
    pub answered: Vec<String>,
    /// Nodes whose readings are not, with why.
    pub missing: Vec<(String, String)>,
    /// Members up that share no readings seen from here.
    pub unshared: Vec<String>,
}

/// Asks one node for its readings.
async fn ask(node: String, actor: ActorRef<ReaderMsg>, timeout: Duration) -> (String, Readings) {
    let answer = match Wire::encode(&(), usize::MAX) {
        Ok(wire) => actor.call(|port| ReaderMsg::Read(wire, port), Some(timeout)).await,
        Err(e) => return (node, Err(e.to_string())),
    };
    let readings = match answer {
        Ok(ractor::rpc::CallResult::Success(readings)) => readings
            .into_inner()
            .map_err(|e| format!("its answer did not decode: {e}"))
            .and_then(|readings| readings),
        Ok(ractor::rpc::CallResult::Timeout) => Err(format!("no answer within {timeout:?}")),
        Ok(ractor::rpc::CallResult::SenderError) => Err("it dropped the question".to_string()),
        Err(e) => Err(format!("not reachable: {e}")),
    };
    (node, readings)
}

type Merged = BTreeMap<(String, Vec<(String, String)>), ClusterHistogram>;

/// `node`'s readings merged into copies of the histograms of `merged` they touch (new ones
/// added), or why one does not merge.
fn merge_all(merged: &Merged, node: &str, readings: Vec<HistogramReading>) -> Result<Merged, String> {
    let mut staged = Merged::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in readings {
        let key = (r.name.clone(), r.labels.clone());
        // a node reads each histogram once: a repeat is no reading of ours
        if !seen.insert(key.clone()) {
            return Err(format!("{} is in its answer twice", r.name));
        }
        let entry = match staged.remove(&key).or_else(|| merged.get(&key).cloned()) {
            Some(mut h) => {
                h.merged.merge(&r.reading).map_err(|e| format!("{}: {e}", r.name))?;
                h.by_node.push((node.to_string(), r.reading));
                h
            }
            None => ClusterHistogram {
                name: r.name,
                labels: r.labels,
                by_node: vec![(node.to_string(), r.reading.clone())],
                merged: r.reading,
            },
        };
        staged.insert(key, entry);
    }
    Ok(staged)
}

/// Asks every node that shares its readings/// Asks every node that shares its readings (this one too, if it does), waiting at most
/// `timeout`, and merges each histogram's readings.
pub async fn collect(cluster: &Cluster, timeout: Duration) -> ClusterMetrics {
    let nodes: Vec<(String, ActorRef<ReaderMsg>)> = crate::pg_nodes::live_by_node(cluster, SCOPE, "metrics@")
        .into_iter()
        .map(|(node, cell)| (node, cell.into()))
        .collect();
    let asked: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let mut calls = tokio::task::JoinSet::new();
    for (node, actor) in nodes {
        calls.spawn(ask(node, actor, timeout));
    }
    let mut merged = Merged::new();
    let mut answered = Vec::new();
    let mut missing = Vec::new();
    while let Some(joined) = calls.join_next().await {
        // (a question's task cannot panic but through the runtime: nothing to name then)
        let Ok((node, readings)) = joined else { continue };
        let readings = match readings {
            Ok(readings) => readings,
            Err(why) => {
                missing.push((node, why));
                continue;
            }
        };
        // All of a node's readings or none: each histogram it touches is merged into a copy,
        // kept only if all merged. (Its sketches were checked when they were decoded, so a
        // merge fails only for another configuration: `max_relative_error`.)
        match merge_all(&merged, &node, readings) {
            Ok(staged) => {
                merged.extend(staged);
                answered.push(node);
            }
            Err(why) => missing.push((node, format!("its readings cannot be merged: {why}"))),
        }
    }
    let (unshared, down) = crate::pg_nodes::not_asked(cluster, &asked);
    missing.extend(down);
    answered.sort();
    missing.sort();
    let mut histograms: Vec<ClusterHistogram> = merged.into_values().collect();
    for h in &mut histograms {
        h.by_node.sort_by(|a, b| a.0.cmp(&b.0));
    }
    ClusterMetrics { histograms, answered, missing, unshared }
}
