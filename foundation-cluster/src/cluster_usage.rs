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
//!   does not answer within the timeout, a known member that is down, and a node whose rows do
//!   not fit one frame are listed in [`ClusterUsage::missing`] (with why), and their usage is
//!   not in the sum. A member that shares no ledger is not missing (it is not asked).
//! - **Identity from the session**: a node's answer is counted under the node whose session
//!   it came over; a peer cannot answer for another node.
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

#[derive(RactorClusterMessage)]
enum LedgerMsg {
    #[rpc]
    Rows(Wire<()>, RpcReplyPort<Wire<Vec<(UsageKey, UsageTotals)>>>),
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
        match Wire::encode(&rows, self.max_bytes) {
            Ok(wire) => drop(reply.send(wire)),
            // The asker times out and names this node with the reason it logs here.
            Err(e) => {
                tracing::error!(error = %e, rows = rows.len(), "this node's usage ledger does not fit one frame")
            }
        }
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
    /// Nodes whose usage is not in the sum, with why: sharing a ledger but silent, or known
    /// members that are down.
    pub missing: Vec<(String, String)>,
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
    pub async fn start(cluster: &Cluster, ledger: UsageLedger) -> Result<ClusterLedger, ractor::SpawnErr> {
        let responder = Responder {
            ledger: ledger.clone(),
            group: format!("ledger@{}", cluster.name()),
            max_bytes: cluster.max_frame_bytes(),
        };
        let (responder, _) = Actor::spawn(None, responder, ()).await?;
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
        let mut answered = vec![self.cluster.name().to_string()];
        let mut missing = Vec::new();
        merged.merge(&self.ledger.summary(&UsageFilter::default()));
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
                Ok(ractor::rpc::CallResult::Success(rows)) => rows.into_inner().map_err(|e| e.to_string()),
                Ok(ractor::rpc::CallResult::Timeout) => Err(format!("no answer within {timeout:?}")),
                Ok(ractor::rpc::CallResult::SenderError) => {
                    Err("it dropped the question (its rows may not fit a frame)".to_string())
                }
                Err(e) => Err(format!("not reachable: {e}")),
            };
            (node, rows)
        });
        for (node, rows) in futures::future::join_all(calls).await {
            match rows {
                Ok(rows) => {
                    merged.merge(&rows);
                    answered.push(node);
                }
                Err(why) => missing.push((node, why)),
            }
        }
        for member in self.cluster.members() {
            let known = member.name == self.cluster.name() || asked.contains(&member.name);
            if !known && member.status != crate::MemberStatus::Up {
                missing.push((member.name.clone(), format!("{:?}", member.status).to_lowercase()));
            }
        }
        answered.sort();
        missing.sort();
        let rows = merged.summary(filter);
        ClusterUsage { totals: merged.totals(filter), rows, answered, missing }
    }
}
