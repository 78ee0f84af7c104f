//! Heartbeats between nodes and the eviction of nodes that fall silent.
//!
//! Every node runs one heartbeat actor, a member of the pg group [`GROUP`] in scope [`SCOPE`].
//! Each interval it **pings** every other node's heartbeat actor and feeds the answers to a
//! phi-accrual detector per peer: a peer whose phi passes the threshold is declared unreachable
//! and its sessions are stopped. Stopping the session (rather than waiting for TCP, which a
//! frozen process keeps open) makes its actors' stand-ins die, its pg memberships leave and its
//! pending calls fail, everywhere on this node. When the peer comes back it reconnects (as a
//! seed, or through a peer that has it as a seed) and is up again.
//!
//! **Identity comes from the session, never from a payload.** An answer is credited to the
//! node at the other end of the session the ping went out on (ractor_cluster's per-session node
//! id, mapped to the name that session authenticated), so a peer cannot keep another node
//! looking alive by sending beats in its name. A leave notice names a node, but it is only
//! believed once that node, pinged over its own session, confirms it is leaving.

use foundation_core::sync::{MutexRecover, RwLockRecover};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{NodeServerMessage, RactorClusterMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::dial::Dialer;
use crate::health::{ClusterHealth, NodeHealth, NodeStatus};
use crate::membership::{MemberStatus, Membership, SessionEvent, node_name};
use crate::phi::PhiDetector;
use crate::state::Removal;
use crate::wire::Wire;

/// The pg scope of cluster-internal groups.
pub const SCOPE: &str = foundation_actors::pg_scopes::CLUSTER;
/// The pg group of heartbeat actors (one per node).
pub const GROUP: &str = "heartbeat";
/// Longest wait for a ping's answer (a later answer is not counted).
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A heartbeat: what a node answers to a ping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Beat {
    seq: u64,
    /// The answering process's incarnation (grows with every start of the node).
    incarnation: u64,
    health: NodeHealth,
    /// Addresses of the nodes the sender is connected to (a TLS node dials those it is not).
    members: Vec<String>,
    /// The sender is leaving the cluster on purpose.
    leaving: bool,
    /// Nodes removed for good, as the sender knows them (gossip).
    removed: Vec<(String, Removal)>,
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
    /// Time to ping the others and check their detectors.
    Tick,
    /// Another node's ping: answered with this node's beat.
    #[rpc]
    Ping(Wire<u64>, RpcReplyPort<Wire<Beat>>),
    /// This node's view of the cluster (for `cluster status` and `Cluster::cluster_health`).
    #[rpc]
    View(RpcReplyPort<View>),
    /// A leave notice for the named node; answered once checked with that node over its own
    /// session (`true`: it confirmed), so that the leaver knows before it closes its connections.
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
    /// This process's incarnation.
    pub(crate) incarnation: u64,
    /// Set when this node starts leaving: its beats say so.
    pub(crate) leaving: Arc<AtomicBool>,
    /// The address peers know this node by (its listen address, or for `0.0.0.0` the one it
    /// announces): never dialled as a peer's member.
    pub(crate) advertised: std::net::SocketAddr,
}

/// What ping tasks and the actor share.
struct Shared {
    args: Args,
    detectors: Mutex<HashMap<String, PhiDetector>>,
    /// Peers with a ping waiting for its answer (one at a time per peer).
    in_flight: Mutex<HashSet<String>>,
}

pub(crate) struct State {
    shared: Arc<Shared>,
    seq: u64,
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
        let shared = Shared { args, detectors: Mutex::default(), in_flight: Mutex::default() };
        Ok(State { shared: Arc::new(shared), seq: 0 })
    }

    async fn handle(
        &self,
        _: ActorRef<HeartbeatMsg>,
        msg: HeartbeatMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let args = &state.shared.args;
        match msg {
            HeartbeatMsg::Tick => {
                ping_peers(&state.shared);
                check_peers(&state.shared).await;
            }
            HeartbeatMsg::Ping(_, reply) => {
                state.seq += 1;
                if let Ok(wire) = Wire::encode(&own_beat(args, state.seq), args.config.max_frame_bytes) {
                    let _ = reply.send(wire);
                }
            }
            HeartbeatMsg::Leaving(name, reply) => {
                let shared = state.shared.clone();
                tokio::spawn(async move {
                    let confirmed = confirm_leaving(&shared, &name).await;
                    if confirmed {
                        let _ = shared.args.events.send(SessionEvent::Leaving { name });
                    } else {
                        tracing::warn!(peer = %name, "ignored a leave notice that the node itself does not confirm");
                    }
                    let _ = reply.send(confirmed);
                });
            }
            HeartbeatMsg::View(reply) => {
                let view = local_view(args);
                // A view is small (a row per node); it fits any sane frame limit.
                if let Ok(wire) = Wire::encode(&(args.node.clone(), view), args.config.max_frame_bytes) {
                    let _ = reply.send(wire);
                }
            }
        }
        Ok(())
    }
}

/// This node's beat.
fn own_beat(args: &Args, seq: u64) -> Beat {
    let health = args.own_health.read_or_recover().clone();
    let membership = args.membership.read_or_recover();
    // Only TLS nodes use the member list (ractor_cluster meets peers' peers for plain ones).
    let members = match args.dialer.is_tls() {
        true => membership.up_addrs(),
        false => Vec::new(),
    };
    Beat {
        seq,
        incarnation: args.incarnation,
        health,
        members,
        leaving: args.leaving.load(Ordering::Acquire),
        removed: membership.removals(),
    }
}

/// Every other node's heartbeat actor, named by the session it is reached over (membership
/// keeps each ready session's authenticated name: no call to the node server per tick).
fn peer_heartbeats(shared: &Shared) -> Vec<(String, ActorRef<HeartbeatMsg>)> {
    let membership = shared.args.membership.read_or_recover();
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &GROUP.to_string())
        .into_iter()
        .filter_map(|member| match member.get_id() {
            ActorId::Remote { node_id, .. } => {
                let name = membership.node_of_session(node_id)?.to_string();
                Some((name, ActorRef::<HeartbeatMsg>::from(member)))
            }
            ActorId::Local(_) => None,
        })
        .collect()
}

/// Pings every peer that has no ping waiting; an answer is credited to the session's node.
fn ping_peers(shared: &Arc<Shared>) {
    for (name, peer) in peer_heartbeats(shared) {
        if !shared.in_flight.lock_or_recover().insert(name.clone()) {
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let answer = ping(&peer, shared.args.config.max_frame_bytes).await;
            shared.in_flight.lock_or_recover().remove(&name);
            if let Some(beat) = answer {
                heard(&shared, &name, beat).await;
            }
        });
    }
}

/// One ping; the decoded answer, if it came within [`PING_TIMEOUT`].
async fn ping(peer: &ActorRef<HeartbeatMsg>, max_bytes: usize) -> Option<Beat> {
    let request = Wire::encode(&0u64, max_bytes).ok()?;
    match peer.call(|reply| HeartbeatMsg::Ping(request, reply), Some(PING_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(wire)) => match wire.into_inner() {
            Ok(beat) => Some(beat),
            Err(e) => {
                tracing::warn!(error = %e, "ignored a heartbeat that did not decode");
                None
            }
        },
        _ => None,
    }
}

/// Takes in `name`'s beat (its session's name, not anything the beat says).
async fn heard(shared: &Shared, name: &str, beat: Beat) {
    let args = &shared.args;
    let removed = {
        let membership = args.membership.read_or_recover();
        membership.is_removed(name, beat.incarnation)
    };
    if removed {
        // Removed for good at this incarnation or a later one: refused until it restarts.
        tracing::warn!(peer = %name, incarnation = beat.incarnation, "refused a node removed for good (restart it to rejoin)");
        evict(&args.server, name, &format!("{name} was removed from the cluster for good")).await;
        return;
    }
    if args.dialer.is_tls() {
        meet_members(args, &beat.members);
    }
    let _ = args.events.send(SessionEvent::Heard {
        name: name.to_string(),
        incarnation: beat.incarnation,
        removed: beat.removed,
    });
    if beat.leaving {
        let _ = args.events.send(SessionEvent::Leaving { name: name.to_string() });
    }
    let now = Instant::now();
    args.peers.write_or_recover().insert(name.to_string(), PeerInfo { health: beat.health, last: now });
    let up = args.membership.read_or_recover().up_names();
    // Only for a peer that is up: an answer that arrives after it was evicted starts nothing.
    if up.iter().any(|n| n == name) {
        shared
            .detectors
            .lock_or_recover()
            .entry(name.to_string())
            .or_insert_with(|| detector(&args.config))
            .heartbeat(now);
    }
}

/// Whether `name`, pinged over its own session, says it is leaving.
async fn confirm_leaving(shared: &Shared, name: &str) -> bool {
    for (peer_name, peer) in peer_heartbeats(shared) {
        if peer_name == name
            && let Some(beat) = ping(&peer, shared.args.config.max_frame_bytes).await
            && beat.leaving
        {
            return true;
        }
    }
    false
}

/// Dials (with TLS) the nodes a peer is connected to and this node is not: what ractor_cluster's
/// transitive mode would do in plaintext.
fn meet_members(args: &Args, members: &[String]) {
    for addr in members.iter().filter_map(|a| a.parse::<std::net::SocketAddr>().ok()) {
        if addr != args.config.listen && addr != args.advertised {
            args.dialer.dial_in_background(addr, "a peer's member");
        }
    }
}

async fn check_peers(shared: &Shared) {
    let args = &shared.args;
    let now = Instant::now();
    let up: Vec<String> = args.membership.read_or_recover().up_names();
    let suspects: Vec<(String, f64)> = {
        let mut detectors = shared.detectors.lock_or_recover();
        // Forget peers that are not up: they start afresh when they come back.
        detectors.retain(|name, _| up.contains(name));
        // A peer seen up counts as heard from now, so one that freezes before its first
        // answer reaches us is still suspected.
        for name in up {
            detectors.entry(name).or_insert_with(|| {
                let mut d = detector(&args.config);
                d.heartbeat(now);
                d
            });
        }
        let threshold = args.config.phi_threshold;
        let suspects: Vec<(String, f64)> = detectors
            .iter()
            .map(|(name, d)| (name.clone(), d.phi(now)))
            .inspect(|(name, phi)| {
                metrics::gauge!("foundation_cluster_phi", "peer" => foundation_core::telemetry::bounded_label("peer", name)).set(*phi)
            })
            .filter(|(_, phi)| *phi > threshold)
            .collect();
        for (name, _) in &suspects {
            detectors.remove(name);
        }
        suspects
    };
    for (name, phi) in suspects {
        let _ = args.events.send(SessionEvent::Unreachable { name: name.clone(), phi });
        evict(&args.server, &name, &format!("unreachable: no heartbeat from {name}")).await;
    }
}

fn detector(config: &ClusterConfig) -> PhiDetector {
    PhiDetector::new(config.heartbeat_interval, config.min_std_deviation, config.acceptable_pause)
}

/// Stops every session to the node called `name`, saying why.
pub(crate) async fn evict(server: &ActorRef<NodeServerMessage>, name: &str, why: &str) {
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
            ses.actor.stop(Some(why.to_string()));
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
    let own = args.own_health.read_or_recover().clone();
    let mut rows = vec![NodeStatus {
        name: args.node.clone(),
        addr: args.config.listen.to_string(),
        status: "up".into(),
        health: Some(own),
        last_heartbeat_ms: Some(0),
    }];
    let peers = args.peers.read_or_recover();
    for m in args.membership.read_or_recover().members() {
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
