//! Heartbeats between nodes and the eviction of nodes that fall silent.
//!
//! Every node runs one heartbeat actor, a member of the pg group [`GROUP`] in scope [`SCOPE`].
//! Each interval it sends a beat to every other node's heartbeat actor and checks its
//! phi-accrual detectors: a peer whose phi passes the threshold is declared unreachable and
//! its sessions are stopped. Stopping the session (rather than waiting for TCP, which a frozen
//! process keeps open) makes its actors' stand-ins die, its pg memberships leave and its
//! pending calls fail, everywhere on this node. When the peer comes back it reconnects (as a
//! seed, or through a peer that has it as a seed) and is up again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{NodeServerMessage, RactorClusterMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::dial::Dialer;
use crate::health::{ClusterHealth, NodeHealth, NodeStatus};
use crate::membership::{MemberStatus, Membership, SessionEvent, node_name};
use crate::phi::PhiDetector;
use crate::wire::Wire;

/// The pg scope of cluster-internal groups.
pub const SCOPE: &str = "foundation.cluster";
/// The pg group of heartbeat actors (one per node).
pub const GROUP: &str = "heartbeat";

/// A heartbeat, as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Beat {
    from: String,
    seq: u64,
    health: NodeHealth,
    /// Addresses of the nodes the sender is connected to (a TLS node dials those it is not).
    members: Vec<String>,
}

/// What this node last heard from a peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    pub(crate) health: NodeHealth,
    pub(crate) last: Instant,
}

/// A node's view of the cluster, as its heartbeat actor answers it: (reporter, view).
pub(crate) type View = Wire<(String, ClusterHealth)>;

#[derive(RactorClusterMessage)]
pub(crate) enum HeartbeatMsg {
    /// Another node's heartbeat.
    Beat(Wire<Beat>),
    /// Time to send ours and to check the others'.
    Tick,
    /// This node's view of the cluster (for `cluster status` and `Cluster::cluster_health`).
    #[rpc]
    View(RpcReplyPort<View>),
    /// The named node is leaving the cluster on purpose; answered once noted, so that the
    /// leaver knows before it closes its connections.
    #[rpc]
    Leaving(String, RpcReplyPort<bool>),
}

pub(crate) struct Heartbeat;

pub(crate) struct Args {
    pub(crate) node: String,
    pub(crate) config: ClusterConfig,
    pub(crate) server: ActorRef<NodeServerMessage>,
    pub(crate) membership: Arc<RwLock<Membership>>,
    pub(crate) events: mpsc::UnboundedSender<SessionEvent>,
    pub(crate) own_health: Arc<RwLock<NodeHealth>>,
    pub(crate) peers: Arc<RwLock<HashMap<String, PeerInfo>>>,
    pub(crate) dialer: Dialer,
}

pub(crate) struct State {
    args: Args,
    seq: u64,
    detectors: HashMap<String, PhiDetector>,
}

impl Actor for Heartbeat {
    type Msg = HeartbeatMsg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<HeartbeatMsg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), GROUP.to_string(), vec![myself.get_cell()]);
        myself.send_interval(args.config.heartbeat_interval, || HeartbeatMsg::Tick);
        Ok(State { args, seq: 0, detectors: HashMap::new() })
    }

    async fn handle(
        &self,
        myself: ActorRef<HeartbeatMsg>,
        msg: HeartbeatMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HeartbeatMsg::Beat(beat) => match beat.into_inner() {
                Ok(beat) => {
                    if state.args.dialer.is_tls() {
                        meet_members(state, &beat.members);
                    }
                    let info = PeerInfo { health: beat.health, last: Instant::now() };
                    state
                        .args
                        .peers
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(beat.from.clone(), info);
                    let config = &state.args.config;
                    state
                        .detectors
                        .entry(beat.from)
                        .or_insert_with(|| detector(config))
                        .heartbeat(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "ignored a heartbeat that did not decode"),
            },
            HeartbeatMsg::Tick => {
                send_beats(&myself, state);
                check_peers(state).await;
            }
            HeartbeatMsg::Leaving(name, reply) => {
                let _ = state.args.events.send(SessionEvent::Leaving { name });
                let _ = reply.send(true);
            }
            HeartbeatMsg::View(reply) => {
                let view = local_view(&state.args);
                // A view is small (a row per node); it fits any sane frame limit.
                if let Ok(wire) =
                    Wire::encode(&(state.args.node.clone(), view), state.args.config.max_frame_bytes)
                {
                    let _ = reply.send(wire);
                }
            }
        }
        Ok(())
    }
}

fn send_beats(myself: &ActorRef<HeartbeatMsg>, state: &mut State) {
    state.seq += 1;
    let health = state.args.own_health.read().unwrap_or_else(|p| p.into_inner()).clone();
    // Only TLS nodes use the member list (ractor_cluster meets peers' peers for plain ones).
    let members = match state.args.dialer.is_tls() {
        true => state.args.membership.read().unwrap_or_else(|p| p.into_inner()).up_addrs(),
        false => Vec::new(),
    };
    let beat = Beat { from: state.args.node.clone(), seq: state.seq, health, members };
    for member in ractor::pg::get_scoped_members(&SCOPE.to_string(), &GROUP.to_string()) {
        if member.get_id() == myself.get_id() || member.get_id().is_local() {
            continue;
        }
        // A beat is a few bytes: it always fits the frame limit.
        if let Ok(wire) = Wire::encode(&beat, state.args.config.max_frame_bytes) {
            let _ = ActorRef::<HeartbeatMsg>::from(member).cast(HeartbeatMsg::Beat(wire));
        }
    }
}

/// Dials (with TLS) the nodes a peer is connected to and this node is not: what ractor_cluster's
/// transitive mode would do in plaintext.
fn meet_members(state: &State, members: &[String]) {
    let own = state.args.config.listen;
    for addr in members.iter().filter_map(|a| a.parse::<std::net::SocketAddr>().ok()) {
        if addr != own {
            state.args.dialer.dial_in_background(addr, "a peer's member");
        }
    }
}

async fn check_peers(state: &mut State) {
    let now = Instant::now();
    let up: Vec<String> = state.args.membership.read().unwrap_or_else(|p| p.into_inner()).up_names();
    // Forget peers that are not up: they start afresh when they come back.
    state.detectors.retain(|name, _| up.contains(name));
    // A peer seen up counts as heard from now, so one that freezes before its first beat
    // reaches us is still suspected.
    let config = &state.args.config;
    for name in up {
        state.detectors.entry(name).or_insert_with(|| {
            let mut d = detector(config);
            d.heartbeat(now);
            d
        });
    }
    let threshold = state.args.config.phi_threshold;
    let suspects: Vec<(String, f64)> = state
        .detectors
        .iter()
        .map(|(name, d)| (name.clone(), d.phi(now)))
        .inspect(|(name, phi)| metrics::gauge!("foundation_cluster_phi", "peer" => name.clone()).set(*phi))
        .filter(|(_, phi)| *phi > threshold)
        .collect();
    for (name, phi) in suspects {
        state.detectors.remove(&name);
        let _ = state.args.events.send(SessionEvent::Unreachable { name: name.clone(), phi });
        evict(&state.args.server, &name).await;
    }
}

fn detector(config: &ClusterConfig) -> PhiDetector {
    PhiDetector::new(config.heartbeat_interval, config.min_std_deviation, config.acceptable_pause)
}

/// Stops every session to the node called `name`.
async fn evict(server: &ActorRef<NodeServerMessage>, name: &str) {
    let sessions = match ractor::call_t!(server, NodeServerMessage::GetSessions, 2000) {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::warn!(peer = %name, error = %e, "cannot list sessions to evict an unreachable node");
            return;
        }
    };
    for ses in sessions.into_values() {
        let matches = ses.peer_name.as_ref().is_some_and(|p| node_name(&p.name) == name);
        if matches {
            ses.actor.stop(Some(format!("unreachable: no heartbeat from {name}")));
        }
    }
}

/// How long after its last heartbeat a frozen node is declared unreachable, for `config`
/// (about: the detector's exact moment depends on the observed jitter).
pub fn expected_detection(config: &ClusterConfig) -> Duration {
    // phi = threshold at y standard deviations; for phi 8 the logistic approximation gives y ≈ 5.6.
    let y = (config.phi_threshold / 8.0).sqrt() * 5.6;
    config.heartbeat_interval + config.acceptable_pause + config.min_std_deviation.mul_f64(y)
}

/// This node's view: itself, then every member it has seen, with their latest health.
pub(crate) fn local_view(args: &Args) -> ClusterHealth {
    let own = args.own_health.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut rows = vec![NodeStatus {
        name: args.node.clone(),
        addr: args.config.listen.to_string(),
        status: "up".into(),
        health: Some(own),
        last_heartbeat_ms: Some(0),
    }];
    let peers = args.peers.read().unwrap_or_else(|p| p.into_inner());
    for m in args.membership.read().unwrap_or_else(|p| p.into_inner()).members() {
        let heard = peers.get(&m.name);
        rows.push(NodeStatus {
            status: match m.status {
                MemberStatus::Up => "up",
                MemberStatus::Unreachable => "unreachable",
                MemberStatus::Down => "down",
                MemberStatus::Left => "left",
            }
            .into(),
            health: heard.map(|p| p.health.clone()),
            last_heartbeat_ms: heard.map(|p| p.last.elapsed().as_millis() as u64),
            name: m.name,
            addr: m.addr,
        });
    }
    ClusterHealth::from_nodes(rows)
}
