//! A registry's gateway: the remotable actor through which registries on different nodes see
//! each other's services.
//!
//! Each node's gateway is in pg group [`GATEWAYS`]. A gateway **follows** every other node's
//! gateway with a long poll: it asks for that node's registrations (its capabilities, metadata,
//! health and load, and the pid of the actor) newer than the version it holds, and the other
//! gateway answers at once if it has newer ones, else holds the question until its registry
//! changes (checked every [`SYNC_INTERVAL`]) or [`HOLD`] passes (then it answers "unchanged" and
//! is asked again). An idle cluster therefore exchanges nothing but those renewals, one per
//! [`HOLD`] per pair, and a change reaches every follower within [`SYNC_INTERVAL`] plus a round
//! trip. The actor itself is matched among pg's stand-ins for that node, so a remote instance is
//! sent to like a local one. When a node goes, pg reports its actors gone and their instances
//! are removed, and the question waiting on it fails with its session.
//!
//! Pull rather than push: a message does not say which node sent it, but a pull does (the
//! gateway asked is a stand-in carrying that node's session id). A poll that fails ends; the
//! next tick follows every gateway that is not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::{Duration, Instant};

use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use foundation_core::sync::MutexRecover;

use super::{Inner, PG_SCOPE};
use crate::wire::Wire;

/// The pg group (in scope [`PG_SCOPE`]) of every node's registry gateway.
pub const GATEWAYS: &str = "registry-gateways";
/// How often a gateway checks its own registry for changes (health, load, registrations) to
/// answer the questions held for it: a remote instance's reported health is at most this old,
/// plus a round trip.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a gateway holds another node's question when nothing changed.
pub const HOLD: Duration = Duration::from_secs(30);
/// How long a follower waits for an answer beyond [`HOLD`].
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

/// The answer port of a [`GatewayMsg::Records`] question.
type Answer = RpcReplyPort<Wire<Option<Records>>>;

#[derive(RactorClusterMessage)]
pub(crate) enum GatewayMsg {
    /// Local tick: answer the held questions if this registry changed, follow new gateways.
    Sync,
    /// This node's registrations, once its version is not the one given (held up to [`HOLD`];
    /// `None`: unchanged).
    #[rpc]
    Records(u64, RpcReplyPort<Wire<Option<Records>>>),
}

pub(crate) struct Gateway;

pub(crate) struct GatewayState {
    inner: Weak<Inner>,
    /// Other nodes' questions waiting for a change: the version they hold, when they asked.
    held: Vec<(u64, Instant, Answer)>,
}

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = Weak<Inner>;

    async fn pre_start(
        &self,
        myself: ActorRef<GatewayMsg>,
        inner: Weak<Inner>,
    ) -> Result<GatewayState, ActorProcessingErr> {
        ractor::pg::monitor_scope(PG_SCOPE.to_string(), myself.get_cell());
        ractor::pg::join_scoped(PG_SCOPE.to_string(), GATEWAYS.to_string(), vec![myself.get_cell()]);
        myself.send_interval(SYNC_INTERVAL, || GatewayMsg::Sync);
        Ok(GatewayState { inner, held: Vec::new() })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GatewayMsg>,
        _: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor_scope(PG_SCOPE.to_string(), myself.get_id());
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(inner) = state.inner.upgrade() else { return Ok(()) };
        let max_bytes = inner.max_message_bytes();
        match msg {
            GatewayMsg::Sync => {
                let now = Instant::now();
                state.held.retain(|(_, _, reply)| !reply.is_closed());
                for (since, asked, reply) in std::mem::take(&mut state.held) {
                    match inner.local_records(since) {
                        Some(records) => {
                            let _ = reply.send(records_reply(&Some(records), max_bytes));
                        }
                        None if now.duration_since(asked) >= HOLD => {
                            let _ = reply.send(records_reply(&None, max_bytes));
                        }
                        None => state.held.push((since, asked, reply)),
                    }
                }
                for gateway in remote_gateways() {
                    follow(state.inner.clone(), gateway);
                }
            }
            GatewayMsg::Records(since, reply) => match inner.local_records(since) {
                // Nobody waiting (the caller timed out) is not our problem.
                Some(records) => {
                    let _ = reply.send(records_reply(&Some(records), max_bytes));
                }
                None => state.held.push((since, Instant::now(), reply)),
            },
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<GatewayMsg>,
        event: SupervisionEvent,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        let inner = &state.inner;
        let SupervisionEvent::ProcessGroupChanged(change) = event else { return Ok(()) };
        match change {
            GroupChangeMessage::Join(_, group, cells) => {
                let remote: Vec<ActorCell> = cells.into_iter().filter(|c| !c.get_id().is_local()).collect();
                if group == GATEWAYS {
                    // A gateway appeared on another node: follow it now, not at the next tick.
                    for cell in remote {
                        follow(inner.clone(), cell);
                    }
                } else if let Some(i) = inner.upgrade() {
                    // A service joined on a node whose registrations named actors pg had not
                    // announced yet: fetch them again now.
                    let nodes: BTreeSet<u64> = remote.iter().map(|c| c.get_id().node()).collect();
                    for gateway in remote_gateways() {
                        let node = gateway.get_id().node();
                        if nodes.contains(&node) && i.unresolved.lock_or_recover().contains(&node) {
                            pull_again(inner.clone(), gateway);
                        }
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
        Wire::from_encoded(&[])
    })
}

fn remote_gateways() -> Vec<ActorCell> {
    ractor::pg::get_scoped_members(&PG_SCOPE.to_string(), &GATEWAYS.to_string())
        .into_iter()
        .filter(|c| !c.get_id().is_local())
        .collect()
}

/// Follows one node's gateway (unless already followed): asks for its registrations newer than
/// those merged and merges each answer, off the gateway's mailbox so that a slow node delays
/// nobody, until a question fails (its session closed, or no answer within [`HOLD`] plus
/// [`PULL_TIMEOUT`]).
fn follow(inner: Weak<Inner>, gateway: ActorCell) {
    let id = gateway.get_id();
    let node = id.node();
    match inner.upgrade() {
        Some(i) if i.following.lock_or_recover().insert(id) => {}
        _ => return,
    }
    tokio::spawn(async move {
        let gateway: ActorRef<GatewayMsg> = gateway.into();
        // The version last answered, while some of its records could not be resolved (merged
        // again on a pg join from that node, not polled).
        let mut unresolved_at: Option<u64> = None;
        loop {
            let Some(seen) = inner.upgrade().map(|i| i.seen_version(node)) else { return };
            let since = unresolved_at.unwrap_or(seen);
            let asked = tokio::time::Instant::now();
            let reply =
                gateway.call(|port| GatewayMsg::Records(since, port), Some(HOLD + PULL_TIMEOUT)).await;
            let records = match reply {
                Ok(ractor::rpc::CallResult::Success(wire)) => match wire.into_inner() {
                    Ok(records) => records,
                    Err(e) => {
                        tracing::warn!(node, error = %e, "another node's registrations did not decode");
                        tokio::time::sleep(SYNC_INTERVAL).await;
                        continue;
                    }
                },
                Ok(_) | Err(_) => {
                    tracing::debug!(
                        node,
                        "another node's registry did not answer; following it again at the next sync"
                    );
                    break;
                }
            };
            let Some(inner) = inner.upgrade() else { return };
            match records {
                Some(records) => {
                    let version = records.version;
                    // Marked before the merge looks for the actors: a pg join handled meanwhile
                    // fetches them again.
                    inner.unresolved.lock_or_recover().insert(node);
                    inner.merge_remote(node, records);
                    let resolved = inner.seen_version(node) == version;
                    unresolved_at = (!resolved).then_some(version);
                    if resolved {
                        inner.unresolved.lock_or_recover().remove(&node);
                    }
                }
                // "Unchanged" long before the hold ends: a gateway that does not hold questions
                // (an older version): ask at the old pace rather than in a tight loop.
                None if asked.elapsed() < HOLD / 2 => tokio::time::sleep(SYNC_INTERVAL).await,
                None => {}
            }
        }
        if let Some(inner) = inner.upgrade() {
            inner.following.lock_or_recover().remove(&id);
        }
    });
}

/// Fetches a node's registrations once, whatever version this node holds, and merges them (for
/// records whose actors pg had not announced when they were first merged).
fn pull_again(inner: Weak<Inner>, gateway: ActorCell) {
    let node = gateway.get_id().node();
    // One at a time per node (a node's services join in bursts).
    match inner.upgrade() {
        Some(i) if i.pulling.lock_or_recover().insert(node) => {}
        _ => return,
    }
    tokio::spawn(async move {
        let gateway: ActorRef<GatewayMsg> = gateway.into();
        let reply = gateway.call(|port| GatewayMsg::Records(0, port), Some(PULL_TIMEOUT)).await;
        if let Ok(ractor::rpc::CallResult::Success(wire)) = reply
            && let Ok(Some(records)) = wire.into_inner()
            && let Some(inner) = inner.upgrade()
        {
            let version = records.version;
            inner.merge_remote(node, records);
            if inner.seen_version(node) == version {
                inner.unresolved.lock_or_recover().remove(&node);
            }
        }
        if let Some(inner) = inner.upgrade() {
            inner.pulling.lock_or_recover().remove(&node);
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
