//! A registry's gateway: the remotable actor through which registries on different nodes see
//! each other's services.
//!
//! Each node's gateway is in pg group [`GATEWAYS`]. A gateway pulls the registrations of every
//! other node's gateway (its capabilities, metadata, health and load, and the pid of the actor)
//! when a service actor of that node joins pg, and every [`SYNC_INTERVAL`] when that node's
//! registry has changed (a version number makes an unchanged pull a few bytes). The actor
//! itself is matched among pg's stand-ins for that node, so a remote instance is sent to like a
//! local one. When a node goes, pg reports its actors gone and their instances are removed.
//!
//! Pull rather than push: a message does not say which node sent it, but a pull does (the
//! gateway asked is a stand-in carrying that node's session id), and a pull that fails is
//! simply repeated at the next tick.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use foundation_core::config::DEFAULT_MAX_FRAME_BYTES;

use super::{Inner, PG_SCOPE};
use crate::wire::Wire;

/// The pg group (in scope [`PG_SCOPE`]) of every node's registry gateway.
pub const GATEWAYS: &str = "registry-gateways";
/// How often a registry checks the other nodes' registries for changes (health, load,
/// registrations): a remote instance's reported health is at most this old, plus a round trip.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// How long a pull waits for another node's gateway.
const PULL_TIMEOUT: Duration = Duration::from_secs(2);

/// One local registration, as another node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: u64,
    pub(crate) service: String,
    /// The actor's pid on its node.
    pub(crate) pid: u64,
    pub(crate) capabilities: BTreeSet<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) healthy: bool,
    pub(crate) load: f64,
}

/// A node's registrations at one version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Records {
    pub(crate) version: u64,
    pub(crate) records: Vec<Record>,
}

#[derive(RactorClusterMessage)]
pub(crate) enum GatewayMsg {
    /// Local tick: pull from the other nodes.
    Sync,
    /// This node's registrations, unless its version is still the one given.
    #[rpc]
    Records(u64, RpcReplyPort<Wire<Option<Records>>>),
}

pub(crate) struct Gateway;

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = Weak<Inner>;
    type Arguments = Weak<Inner>;

    async fn pre_start(
        &self,
        myself: ActorRef<GatewayMsg>,
        inner: Weak<Inner>,
    ) -> Result<Weak<Inner>, ActorProcessingErr> {
        ractor::pg::monitor_scope(PG_SCOPE.to_string(), myself.get_cell());
        ractor::pg::join_scoped(PG_SCOPE.to_string(), GATEWAYS.to_string(), vec![myself.get_cell()]);
        myself.send_interval(SYNC_INTERVAL, || GatewayMsg::Sync);
        Ok(inner)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GatewayMsg>,
        _: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor_scope(PG_SCOPE.to_string(), myself.get_id());
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        inner: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GatewayMsg::Sync => {
                for gateway in remote_gateways() {
                    pull(inner.clone(), gateway);
                }
            }
            GatewayMsg::Records(since, reply) => {
                let inner = inner.upgrade();
                let records = inner.as_ref().and_then(|i| i.local_records(since));
                let max_bytes = inner.as_ref().map_or(DEFAULT_MAX_FRAME_BYTES, |i| i.max_message_bytes());
                // Nobody waiting (the caller timed out) is not our problem.
                let _ = reply.send(records_reply(&records, max_bytes));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<GatewayMsg>,
        event: SupervisionEvent,
        inner: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ProcessGroupChanged(change) = event else { return Ok(()) };
        match change {
            GroupChangeMessage::Join(_, _, cells) => {
                // A service (or registry) appeared on other nodes: fetch their registrations now.
                let mut nodes: Vec<u64> = cells
                    .iter()
                    .map(|c| c.get_id())
                    .filter(|id| !id.is_local())
                    .map(|id| id.node())
                    .collect();
                nodes.dedup();
                for gateway in remote_gateways() {
                    if nodes.contains(&gateway.get_id().node()) {
                        pull(inner.clone(), gateway);
                    }
                }
            }
            GroupChangeMessage::Leave(_, group, cells) => {
                if let Some(inner) = inner.upgrade() {
                    if group == GATEWAYS {
                        inner.forget_nodes(cells.iter().map(|c| c.get_id().node()));
                    } else {
                        inner.forget_actors(&group, &cells);
                    }
                }
            }
        }
        Ok(())
    }
}

/// This node's registrations as the answer to another node's pull (only other nodes pull),
/// within `max_bytes` (the cluster's frame limit). If they do not fit (or cannot be encoded):
/// an empty frame, logged here, which the puller reports as not decoding and asks again at its
/// next sync, rather than a frame over its node's limit, which would drop the connection.
fn records_reply(records: &Option<Records>, max_bytes: usize) -> Wire<Option<Records>> {
    Wire::encode(records, max_bytes).unwrap_or_else(|e| {
        let count = records.as_ref().map_or(0, |r| r.records.len());
        tracing::warn!(registrations = count, error = %e, "cannot send this node's registrations to another node");
        Wire::from_encoded(Vec::new())
    })
}

fn remote_gateways() -> Vec<ActorCell> {
    ractor::pg::get_scoped_members(&PG_SCOPE.to_string(), &GATEWAYS.to_string())
        .into_iter()
        .filter(|c| !c.get_id().is_local())
        .collect()
}

/// Fetches one node's registrations (if they changed) and merges them, off the gateway's
/// mailbox so that a slow node delays nobody.
fn pull(inner: Weak<Inner>, gateway: ActorCell) {
    let node = gateway.get_id().node();
    let Some(since) = inner.upgrade().map(|i| i.seen_version(node)) else { return };
    tokio::spawn(async move {
        let gateway: ActorRef<GatewayMsg> = gateway.into();
        let reply = gateway.call(|port| GatewayMsg::Records(since, port), Some(PULL_TIMEOUT)).await;
        let records = match reply {
            Ok(ractor::rpc::CallResult::Success(wire)) => match wire.into_inner() {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(node, error = %e, "another node's registrations did not decode");
                    return;
                }
            },
            Ok(_) | Err(_) => {
                tracing::debug!(node, "another node's registry did not answer; retrying at the next sync");
                return;
            }
        };
        if let (Some(records), Some(inner)) = (records, inner.upgrade()) {
            inner.merge_remote(node, records);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_over_the_frame_limit_are_not_sent() {
        let record = |id: u64| Record {
            id,
            service: format!("service-{id}"),
            pid: id,
            capabilities: BTreeSet::from(["summarize".to_string()]),
            metadata: BTreeMap::from([("node".to_string(), "n1".to_string())]),
            healthy: true,
            load: 0.0,
        };
        let records = Some(Records { version: 3, records: (0..100).map(record).collect() });
        let sent = records_reply(&records, 1 << 20).into_inner().unwrap().unwrap();
        assert_eq!((sent.version, sent.records.len()), (3, 100));
        // 100 registrations take more than 1 KiB: an empty frame, which the puller reads as an
        // error, not an oversized one.
        let refused = records_reply(&records, 1024);
        assert!(refused.into_inner().is_err());
        assert!(records_reply(&None, 1024).into_inner().unwrap().is_none(), "unchanged: a few bytes");
    }
}
