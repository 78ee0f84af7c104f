//! The usage and cost ledger summed across the cluster, on request (feature `llm`).
//!
//! Each node that calls models keeps its own [`UsageLedger`] (per provider, model and tenant;
//! persisted with [`UsageLedger::save`]). [`ClusterLedger::start`] shares this node's ledger
//! with the cluster: a small actor in the pg group `ledger@NODE` of scope [`SCOPE`] answers
//! with the ledger's rows. [`ClusterLedger::sum`] asks every node that shares one, at once, and
//! adds their rows up.
//!
//! - **A snapshot, not a transaction**: each node answers with its rows as they stand when the
//!   question reaches it; calls finishing meanwhile may be in one node's answer and not in
//!   another's. Rows are summed per key, so the sum's totals are exactly the answering nodes'.
//! - **Nodes that do not answer are named, not waited for**: a node that shares a ledger and
//!   does not answer within the timeout, answers with rows that do not fit one frame or are not
//!   plausible (a cost that is negative or not finite), and a known member that is down are
//!   listed in [`ClusterUsage::missing`] (with why), and their usage is not in the sum. A member
//!   that is up but shares no ledger seen here (it shares none, or its sharing is not visible
//!   yet) is listed in [`ClusterUsage::unshared`]. Observers (`foundation cluster status`) are
//!   neither.
//! - **Identity from the session**: a node's answer is counted under the node whose session
//!   it came over ([`ClusterUsage::by_node`]); a peer cannot answer for another node. What a
//!   node claims about its own usage is taken as it says (within the plausibility check).
//! - **One ledger per node**: a second [`ClusterLedger::start`] on a node is refused (share one
//!   ledger among the node's routers with [`LlmRouter::usage_ledger`](foundation_actors::providers::LlmRouter::usage_ledger)).
//!
//! *Cost*: one message to each node and its rows back (about 100 bytes per row); nothing runs
//! between questions.

use std::time::Duration;

use foundation_actors::providers::{UsageFilter, UsageKey, UsageLedger, UsageTotals};
use foundation_actors::wire::Wire;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use crate::Cluster;

/// The pg scope of shared ledgers (groups `ledger@NODE`).
pub const SCOPE: &str = foundation_actors::pg_scopes::LEDGERS;
/// How long [`ClusterLedger::sum`] waits for the nodes by default.
pub const DEFAULT_SUM_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's rows, or why they cannot be sent.
type Rows = Result<Vec<(UsageKey, UsageTotals)>, String>;

#[derive(RactorClusterMessage)]
enum LedgerMsg {
    /// This node's rows, or why they cannot be sent.
    #[rpc]
    Rows(Wire<()>, RpcReplyPort<Wire<Rows>>),
}

struct Responder {
    ledger: UsageLedger,
    group: String,
    max_bytes: usize,
}

impl Actor for Responder {
    type Msg = LedgerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<LedgerMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), self.group.clone(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<LedgerMsg>,
        msg: LedgerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let LedgerMsg::Rows(_, reply) = msg;
        let rows = self.ledger.summary(&UsageFilter::default());
        let count = rows.len();
        let wire = Wire::encode_or(&Ok(rows), self.max_bytes, |e| {
            tracing::error!(error = %e, rows = count, "this node's usage ledger does not fit one frame");
            Err(format!("its {count} rows do not fit one frame: {e}"))
        });
        let _ = reply.send(wire);
        Ok(())
    }
}

/// The ledger summed over the nodes that answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterUsage {
    /// The rows that match the filter, summed per key over the answering nodes, in key order.
    pub rows: Vec<(UsageKey, UsageTotals)>,
    /// The sum of those rows.
    pub totals: UsageTotals,
    /// The nodes whose ledgers are in the sum, sorted.
    pub answered: Vec<String>,
    /// Each answering node's own totals (of the rows that match), by node.
    pub by_node: Vec<(String, UsageTotals)>,
    /// Nodes whose usage is not in the sum, with why: sharing a ledger but silent or
    /// implausible, or known members that are down.
    pub missing: Vec<(String, String)>,
    /// Members up that share no ledger seen from here (none, or not visible yet).
    pub unshared: Vec<String>,
}

/// Why a ledger could not be shared.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// This node shares a ledger already.
    #[error("node `{0}` shares a usage ledger already (one per node: share one ledger among its routers)")]
    AlreadyShared(String),
    /// The responder actor did not start.
    #[error("cannot start the usage ledger's responder: {0}")]
    Spawn(#[source] ractor::SpawnErr),
}

/// Rows a peer sent, if plausible: every cost finite and not negative.
fn plausible(rows: &[(UsageKey, UsageTotals)]) -> Result<(), String> {
    match rows.iter().find(|(_, t)| !(t.cost_usd.is_finite() && t.cost_usd >= 0.0)) {
        Some((key, t)) => Err(format!(
            "implausible rows: a cost of {} for {}/{}/{}",
            t.cost_usd, key.provider, key.model, key.tenant
        )),
        None => Ok(()),
    }
}

/// This node's ledger, shared with the cluster. Dropping it stops sharing.
pub struct ClusterLedger {
    cluster: Cluster,
    ledger: UsageLedger,
    responder: ActorRef<LedgerMsg>,
}

impl Drop for ClusterLedger {
    fn drop(&mut self) {
        self.responder.stop(None);
    }
}

impl std::fmt::Debug for ClusterLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLedger").field("node", &self.cluster.name()).finish_non_exhaustive()
    }
}

impl ClusterLedger {
    /// Shares `ledger` (a router's [`usage`](foundation_actors::providers::LlmRouter::usage), or
    /// one several routers share) with the cluster.
    pub async fn start(cluster: &Cluster, ledger: UsageLedger) -> Result<ClusterLedger, ShareError> {
        let group = format!("ledger@{}", cluster.name());
        let shared = ractor::pg::get_scoped_members(&SCOPE.to_string(), &group);
        if shared.iter().any(|c| c.get_id().is_local()) {
            return Err(ShareError::AlreadyShared(cluster.name().to_string()));
        }
        let responder = Responder { ledger: ledger.clone(), group, max_bytes: cluster.max_frame_bytes() };
        let (responder, _) = Actor::spawn(None, responder, ()).await.map_err(ShareError::Spawn)?;
        Ok(ClusterLedger { cluster: cluster.clone(), ledger, responder })
    }

    /// This node's ledger.
    pub fn ledger(&self) -> &UsageLedger {
        &self.ledger
    }

    /// Asks every node that shares a ledger for its rows (waiting at most `timeout`) and sums
    /// those that match `filter`; this node's own rows are read directly.
    pub async fn sum(&self, filter: &UsageFilter, timeout: Duration) -> ClusterUsage {
        let merged = UsageLedger::new();
        let me = self.cluster.name().to_string();
        let own = self.ledger.summary(&UsageFilter::default());
        let total = |rows: &[(UsageKey, UsageTotals)]| {
            let one = UsageLedger::new();
            one.merge(rows);
            one.totals(filter)
        };
        let mut by_node = vec![(me.clone(), total(&own))];
        let mut answered = vec![me.clone()];
        let mut missing = Vec::new();
        merged.merge(&own);
        let others: Vec<(String, ActorRef<LedgerMsg>)> =
            crate::pg_nodes::live_by_node(&self.cluster, SCOPE, "ledger@")
                .into_iter()
                .filter(|(node, _)| node != self.cluster.name())
                .map(|(node, cell)| (node, cell.into()))
                .collect();
        let asked: Vec<String> = others.iter().map(|(n, _)| n.clone()).collect();
        let calls = others.into_iter().map(|(node, actor)| async move {
            let answer = match Wire::encode(&(), usize::MAX) {
                Ok(wire) => actor.call(|port| LedgerMsg::Rows(wire, port), Some(timeout)).await,
                Err(e) => return (node, Err(e.to_string())),
            };
            let rows = match answer {
                Ok(ractor::rpc::CallResult::Success(rows)) => rows
                    .into_inner()
                    .map_err(|e| format!("its answer did not decode: {e}"))
                    .and_then(|rows| rows)
                    .and_then(|rows| plausible(&rows).map(|()| rows)),
                Ok(ractor::rpc::CallResult::Timeout) => Err(format!("no answer within {timeout:?}")),
                Ok(ractor::rpc::CallResult::SenderError) => Err("it dropped the question".to_string()),
                Err(e) => Err(format!("not reachable: {e}")),
            };
            (node, rows)
        });
        for (node, rows) in futures::future::join_all(calls).await {
            match rows {
                Ok(rows) => {
                    merged.merge(&rows);
                    by_node.push((node.clone(), total(&rows)));
                    answered.push(node);
                }
                Err(why) => missing.push((node, why)),
            }
        }
        let (unshared, down) = crate::pg_nodes::not_asked(&self.cluster, &asked);
        missing.extend(down);
        answered.sort();
        by_node.sort_by(|a, b| a.0.cmp(&b.0));
        missing.sort();
        let rows = merged.summary(filter);
        ClusterUsage { totals: merged.totals(filter), rows, answered, by_node, missing, unshared }
    }
}
