//! Heartbeats between nodes and the eviction of nodes that fall silent.
//!
//! Every node runs one heartbeat actor, a member of the pg group [`GROUP`] in scope [`SCOPE`].
//!
//! **Bounded monitoring.** Each interval a node **pings** the `cluster.monitored_peers` nodes
//! after it in the ring of up nodes sorted by name (every other node while the cluster is that
//! small), so every node is watched by that many and an idle node's cost does not grow with the
//! cluster. It also pings, once, every node it has not heard from since that node came up (its
//! first answer carries its incarnation and the removals it knows of). The answers feed a
//! phi-accrual detector per watched peer.
//!
//! **Suspicion, checked by everyone.** When a watched peer has been silent for
//! [`suspect_after`], its watcher asks every other node to check it (a suspect notice); when
//! its detector's phi passes the threshold, the watcher declares it unreachable and tells the
//! others it gave up (a second notice). A node that receives a notice pings the suspect itself,
//! over its own session, and waits up to [`check_timeout`]: it declares the suspect unreachable
//! only when both hold: its own ping went unanswered, and a watcher gave up. An answer (to any
//! ping) clears the suspect here. With the defaults a frozen node is declared unreachable about
//! 1.8 s after its last heartbeat on every node, as when every node watched every other. A
//! notice is only a reason to ping: a lying peer cannot get a node that answers evicted, it can
//! only make others ping it (one check at a time per suspect, a new one at most once per
//! interval).
//!
//! **The sweep.** Besides its watched peers, a node pings one more up peer each interval, in
//! turn round the ring, and watches one that does not answer within [`check_timeout`] until it
//! does: a node nobody watches (views that
//! disagree, its watchers cut off from it while others still reach it), or one whose notices
//! this node missed, is found within about `nodes × heartbeat_interval` plus the usual
//! detection, for one ping per interval whatever the cluster's size.
//!
//! **Cost.** A frozen node this node does not watch is found through its watchers' notices, or
//! later through the sweep; a killed node is seen by all at once (its connections close). A
//! lying peer (it holds the cookie) can make a live node's check wait only `check_timeout`
//! instead of the detector's ≈1.8 s. Gossip carried by beats (removals, TLS members) travels
//! the ring and the sweep: at most about `nodes / monitored_peers` intervals to reach every
//! node; a member up here that a removal gossiped later may cover is pinged again and judged
//! on its answer.
//!
//! Declaring a peer unreachable stops its sessions (rather than waiting for TCP, which a frozen
//! process keeps open): its actors' stand-ins die, its pg memberships leave and its pending calls
//! fail, everywhere on this node. When the peer comes back it reconnects (as a seed, or through a
//! peer that has it as a seed) and is up again.
//!
//! **The control lane.** Pings, their answers and suspect notices travel on the fork's control lane
//! (`ractor_cluster::use_control_lane`): they go ahead of whatever else is queued for the peer,
//! so a heartbeat waits for at most one large frame being written, never for megabytes queued
//! behind it (which on a slow network would look like a freeze).
//!
//! **Identity comes from the session, never from a payload.** An answer is credited to the
//! node at the other end of the session the ping went out on (ractor_cluster's per-session node
//! id, mapped to the name that session authenticated), so a peer cannot keep another node
//! looking alive by sending beats in its name. A leave notice names a node, but it is only
//! believed once that node, pinged over its own session, confirms it is leaving; a suspect
//! notice likewise.

use foundation_core::sync::{MutexRecover, RwLockRecover};
use std::collections::{BTreeMap, HashMap, HashSet};
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
/// The messages of the heartbeat actors that travel on ractor_cluster's control lane (ahead of
/// bulk traffic): pings, their answers and suspect notices. Not `Leaving`: a leave notice must
/// not overtake what the leaver sent before it (its leases' releases).
const CONTROL_LANE: &[&str] = &["Ping", "Suspect"];
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
    /// A watcher finds the named node silent (`false`) or gave up on it (`true`): check it with
    /// a ping of this node's own.
    Suspect(Wire<(String, bool)>),
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
    /// One per watched peer.
    detectors: Mutex<HashMap<String, PhiDetector>>,
    /// Peers with a ping waiting for its answer (one at a time per session).
    in_flight: Mutex<HashSet<ActorId>>,
    /// Peers that answered a ping over their current session (the others are pinged once), by
    /// their heartbeat stand-in (one per session: a peer that reconnects is pinged again).
    heard_once: Mutex<HashSet<ActorId>>,
    /// The sweep: the last peer pinged beyond the watched ones (one per interval, round the ring
    /// by name), and the peers that did not answer such a ping (watched until they do).
    sweep_last: Mutex<Option<String>>,
    sweeping: Mutex<HashSet<String>>,
    /// Watched peers this node has sent a suspect notice for (cleared when they answer).
    suspected: Mutex<HashSet<String>>,
    /// This node's own checks of suspects, started on notices.
    checks: Mutex<HashMap<String, Check>>,
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
        // Answers to other nodes' pings skip ahead of bulk traffic (and so do pings: see
        // `peer_heartbeats`): a heartbeat behind megabytes of payload would look like a freeze.
        ractor_cluster::use_control_lane(&myself.get_cell(), CONTROL_LANE);
        myself.send_interval(args.config.heartbeat_interval, || HeartbeatMsg::Tick);
        let shared = Shared {
            args,
            detectors: Mutex::default(),
            in_flight: Mutex::default(),
            heard_once: Mutex::default(),
            sweep_last: Mutex::default(),
            sweeping: Mutex::default(),
            suspected: Mutex::default(),
            checks: Mutex::default(),
        };
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
                let peers = peer_heartbeats(&state.shared);
                // Observers (`cluster status`, `cluster remove` and other tools) come and go:
                // outside the ring (they would displace a watcher), but watched by every node
                // (a removal made on one travels with its beats).
                let (observers, up): (Vec<String>, Vec<String>) = args
                    .membership
                    .read_or_recover()
                    .up_names()
                    .into_iter()
                    .partition(|n| n.starts_with(crate::singleton::OBSERVER_PREFIX));
                let mut watched = watched_peers(&args.node, &up, args.config.monitored_peers);
                watched.extend(observers);
                let swept = sweep(&state.shared, &peers, &up, &watched);
                watched.extend(swept);
                reping_removed(&state.shared, &peers);
                ping_peers(&state.shared, &peers, &watched);
                check_peers(&state.shared, &peers, &watched).await;
            }
            HeartbeatMsg::Suspect(notice) => match notice.into_inner() {
                Ok((name, gave_up)) => check_suspect(&state.shared, name, gave_up),
                Err(e) => tracing::warn!(error = %e, "ignored a suspect notice that did not decode"),
            },
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
                ractor_cluster::use_control_lane(&member, CONTROL_LANE);
                Some((name, ActorRef::<HeartbeatMsg>::from(member)))
            }
            ActorId::Local(_) => None,
        })
        .collect()
}

/// The peers `own` watches among the up nodes `up` (itself not included): the `count` after it
/// in the ring of `up` and `own` sorted by name. Every node is watched by `count` others when
/// all agree on who is up (each watches its successors, so each is watched by its predecessors).
pub(crate) fn watched_peers(own: &str, up: &[String], count: usize) -> HashSet<String> {
    let mut ring: Vec<&str> = up.iter().map(String::as_str).filter(|n| *n != own).collect();
    ring.sort_unstable();
    ring.dedup();
    // The first after `own` in name order, wrapping around.
    let start = ring.partition_point(|n| *n < own);
    (0..count.min(ring.len())).map(|i| ring[(start + i) % ring.len()].to_string()).collect()
}

/// Pings every watched peer, and every peer not yet heard from, that has no ping waiting; an
/// answer is credited to the session's node.
fn ping_peers(shared: &Arc<Shared>, peers: &[(String, ActorRef<HeartbeatMsg>)], watched: &HashSet<String>) {
    let heard_once = shared.heard_once.lock_or_recover().clone();
    for (name, peer) in peers {
        let id = peer.get_id();
        if !watched.contains(name) && heard_once.contains(&id) {
            continue;
        }
        if !shared.in_flight.lock_or_recover().insert(id) {
            continue;
        }
        let (shared, name, peer) = (shared.clone(), name.clone(), peer.clone());
        let first = !watched.contains(&name);
        tokio::spawn(async move {
            let answer = ping(&peer, &name, shared.args.config.max_frame_bytes, PING_TIMEOUT).await;
            shared.in_flight.lock_or_recover().remove(&id);
            match answer {
                Some(beat) => {
                    shared.heard_once.lock_or_recover().insert(id);
                    heard(&shared, &name, session_of(&peer), beat).await;
                }
                // A peer that never answered its first ping is watched until it does.
                None if first => {
                    shared.sweeping.lock_or_recover().insert(name);
                }
                None => {}
            }
        });
    }
}

/// The sweep, so that no up node goes unwatched for long whatever the views: each interval one
/// more up peer (in turn, round the ring) is pinged, and one that does not answer within
/// [`check_timeout`] is watched from then until it answers. Nodes whose watchers all lost them
/// (views that disagree, a watcher cut off from a live node), and nodes this node missed the
/// notices about, are found within about `nodes × heartbeat_interval` (10 s at 50 nodes with the
/// defaults) plus [`check_timeout`] plus the usual detection, at the cost of one ping per
/// interval whatever the cluster's size. Returns the peers watched because of the sweep.
fn sweep(
    shared: &Arc<Shared>,
    peers: &[(String, ActorRef<HeartbeatMsg>)],
    up: &[String],
    watched: &HashSet<String>,
) -> HashSet<String> {
    let swept = {
        let mut sweeping = shared.sweeping.lock_or_recover();
        sweeping.retain(|n| up.contains(n));
        sweeping.clone()
    };
    let mut others: Vec<&String> =
        up.iter().filter(|n| !watched.contains(*n) && !swept.contains(*n)).collect();
    others.sort_unstable();
    others.dedup();
    if others.is_empty() {
        return swept;
    }
    // The first name after the last one swept, round the ring (by name: the list changes).
    let target = {
        let last = shared.sweep_last.lock_or_recover();
        let next = others.iter().find(|n| last.as_ref().is_none_or(|l| n.as_str() > l.as_str()));
        next.or(others.first()).map(|n| (*n).clone())
    };
    let Some(target) = target else { return swept };
    let Some((_, peer)) = peers.iter().find(|(n, _)| *n == target) else { return swept };
    let id = peer.get_id();
    // A ping to it is waiting already: its turn comes at the next interval.
    if !shared.in_flight.lock_or_recover().insert(id) {
        return swept;
    }
    *shared.sweep_last.lock_or_recover() = Some(target.clone());
    let (shared, peer) = (shared.clone(), peer.clone());
    tokio::spawn(async move {
        let answer =
            ping(&peer, &target, shared.args.config.max_frame_bytes, check_timeout(&shared.args.config))
                .await;
        shared.in_flight.lock_or_recover().remove(&id);
        match answer {
            Some(beat) => {
                shared.heard_once.lock_or_recover().insert(id);
                heard(&shared, &target, session_of(&peer), beat).await;
            }
            None => {
                tracing::info!(peer = %target, "a node swept did not answer: watching it");
                shared.sweeping.lock_or_recover().insert(target);
            }
        }
    });
    swept
}

/// This node's check of a suspect: one ping over the suspect's own session.
struct Check {
    started: Instant,
    /// `None` while the ping waits; then whether it was answered within [`check_timeout`].
    answered: Option<bool>,
    /// A watcher gave up on the suspect: silence here makes it unreachable.
    condemned: bool,
    /// This node declared it unreachable on this check (once).
    done: bool,
}

/// A suspect notice for `name` (`gave_up`: its watcher declared it unreachable). Joins this
/// node's recent check of it, or starts one (a ping over its own session, waiting up to
/// [`check_timeout`]); the suspect is declared unreachable here once a check went unanswered
/// and a watcher gave up, in either order.
fn check_suspect(shared: &Arc<Shared>, name: String, gave_up: bool) {
    let args = &shared.args;
    if name == args.node || !args.membership.read_or_recover().up_names().contains(&name) {
        return;
    }
    let now = Instant::now();
    let timeout = check_timeout(&args.config);
    let (start, condemn_now) = {
        let mut checks = shared.checks.lock_or_recover();
        match checks.get_mut(&name) {
            // A recent check, waiting or unanswered: the notice joins it.
            Some(check)
                if now.duration_since(check.started) < timeout * 2 && check.answered != Some(true) =>
            {
                check.condemned |= gave_up;
                let condemn = check.condemned && check.answered == Some(false) && !check.done;
                check.done |= condemn;
                (false, condemn)
            }
            // Answered within the last interval: that answer stands (a new check at most once
            // per interval, whoever sends notices).
            Some(check)
                if check.answered == Some(true)
                    && now.duration_since(check.started) < args.config.heartbeat_interval =>
            {
                (false, false)
            }
            _ => {
                checks.insert(
                    name.clone(),
                    Check { started: now, answered: None, condemned: gave_up, done: false },
                );
                (true, false)
            }
        }
    };
    if condemn_now {
        let shared = shared.clone();
        tokio::spawn(async move { condemned(&shared, &name, timeout).await });
        return;
    }
    if !start {
        return;
    }
    let Some((_, peer)) = peer_heartbeats(shared).into_iter().find(|(n, _)| *n == name) else {
        shared.checks.lock_or_recover().remove(&name);
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let answer = ping(&peer, &name, shared.args.config.max_frame_bytes, timeout).await;
        let condemn = {
            let mut checks = shared.checks.lock_or_recover();
            match checks.get_mut(&name) {
                // (An answer to another ping may have come first: it counts.)
                Some(check) if check.answered.is_none() => {
                    check.answered = Some(answer.is_some());
                    let condemn = answer.is_none() && check.condemned && !check.done;
                    check.done |= condemn;
                    condemn
                }
                _ => false,
            }
        };
        if let Some(beat) = answer {
            shared.heard_once.lock_or_recover().insert(peer.get_id());
            heard(&shared, &name, session_of(&peer), beat).await;
        } else if condemn {
            condemned(&shared, &name, timeout).await;
        }
    });
}

/// A suspect this node's own check found silent and a watcher gave up on: unreachable here
/// (unless this node already evicted it).
async fn condemned(shared: &Shared, name: &str, timeout: Duration) {
    if !shared.args.membership.read_or_recover().up_names().iter().any(|n| n == name) {
        return;
    }
    tracing::info!(peer = %name, ?timeout, "a watcher gave up on a node and it did not answer this node's check either");
    shared.checks.lock_or_recover().remove(name);
    shared.detectors.lock_or_recover().remove(name);
    unreachable(shared, name, f64::INFINITY);
}

/// How long a node's own check of a suspect waits for its answer: the pause the detector
/// tolerates beyond the usual interval, and at least one heartbeat interval.
pub fn check_timeout(config: &ClusterConfig) -> Duration {
    config.acceptable_pause.max(config.heartbeat_interval)
}

/// How long a watched peer is silent before its watcher asks the others to check it:
/// [`expected_detection`] minus [`check_timeout`], so that their checks end when its own
/// detector gives up, and never before two heartbeat intervals (one late answer is no reason to
/// alarm everyone; with intervals that long the others conclude up to an interval after the
/// watcher).
pub fn suspect_after(config: &ClusterConfig) -> Duration {
    expected_detection(config).saturating_sub(check_timeout(config)).max(config.heartbeat_interval * 2)
}

/// The latest heartbeat round trip to each peer this process pinged, and when (seconds): what
/// [`recent_rtt_median`] reads. At most [`MAX_RTT_PEERS`] peers (the stalest goes).
static LATEST_RTT: Mutex<BTreeMap<String, (Instant, f64)>> = Mutex::new(BTreeMap::new());
/// Peers [`LATEST_RTT`] keeps.
const MAX_RTT_PEERS: usize = 1024;
/// How old a round trip may be and still count in [`recent_rtt_median`]: longer than the
/// longest heartbeat interval (10 s) and a ping's timeout, so a slow schedule never flickers.
const RTT_FRESH: Duration = Duration::from_secs(30);

fn note_rtt(peer: &str, rtt: f64) {
    let mut latest = LATEST_RTT.lock_or_recover();
    if latest.len() >= MAX_RTT_PEERS
        && !latest.contains_key(peer)
        && let Some(stalest) = latest.iter().min_by_key(|(_, (at, _))| *at).map(|(p, _)| p.clone())
    {
        latest.remove(&stalest);
    }
    latest.insert(peer.to_string(), (Instant::now(), rtt));
}

/// The median of the latest heartbeat round trip to each peer pinged in the last 30 s, in
/// seconds (process-wide: one node per process is the rule); `None` before any.
pub(crate) fn recent_rtt_median() -> Option<f64> {
    let latest = LATEST_RTT.lock_or_recover();
    let mut fresh: Vec<f64> =
        latest.values().filter(|(at, _)| at.elapsed() <= RTT_FRESH).map(|(_, rtt)| *rtt).collect();
    if fresh.is_empty() {
        return None;
    }
    fresh.sort_by(f64::total_cmp);
    Some(fresh[fresh.len() / 2])
}

/// One ping to `name` (its session's name); the decoded answer, if it came within `timeout`.
/// The round trip of an answered ping is recorded in `foundation_cluster_heartbeat_rtt_seconds`
/// (by peer: names from membership, labelled by `peer_traffic::peer_label`).
async fn ping(
    peer: &ActorRef<HeartbeatMsg>,
    name: &str,
    max_bytes: usize,
    timeout: Duration,
) -> Option<Beat> {
    let request = Wire::encode(&0u64, max_bytes).ok()?;
    let sent = Instant::now();
    match peer.call(|reply| HeartbeatMsg::Ping(request, reply), Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(wire)) => match wire.into_inner() {
            Ok(beat) => {
                let rtt = sent.elapsed().as_secs_f64();
                metrics::histogram!(
                    "foundation_cluster_heartbeat_rtt_seconds",
                    "peer" => crate::peer_traffic::peer_label(name)
                )
                .record(rtt);
                note_rtt(name, rtt);
                Some(beat)
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignored a heartbeat that did not decode");
                None
            }
        },
        _ => None,
    }
}

/// The node session a peer's heartbeat actor is reached over (ractor_cluster's node id).
fn session_of(peer: &ActorRef<HeartbeatMsg>) -> u64 {
    match peer.get_id() {
        ActorId::Remote { node_id, .. } => node_id,
        ActorId::Local(_) => 0,
    }
}

/// Takes in `name`'s beat (its session's name, not anything the beat says), answered over
/// `session`.
async fn heard(shared: &Shared, name: &str, session: u64, beat: Beat) {
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
    shared.suspected.lock_or_recover().remove(name);
    shared.sweeping.lock_or_recover().remove(name);
    // An answer here outweighs an earlier check that went unanswered.
    if let Some(check) = shared.checks.lock_or_recover().get_mut(name) {
        check.answered = Some(true);
        check.started = Instant::now();
    }
    if args.dialer.is_tls() {
        meet_members(args, &beat.members);
    }
    let _ = args.events.send(SessionEvent::Heard {
        name: name.to_string(),
        session,
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
            && let Some(beat) = ping(&peer, name, shared.args.config.max_frame_bytes, PING_TIMEOUT).await
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

/// Checks the detectors of the watched peers: a peer silent for [`suspect_after`] is reported to
/// every other node (once per silence), one whose phi passes the threshold is unreachable.
async fn check_peers(shared: &Shared, peers: &[(String, ActorRef<HeartbeatMsg>)], watched: &HashSet<String>) {
    let args = &shared.args;
    let now = Instant::now();
    let up: Vec<String> = args.membership.read_or_recover().up_names();
    // Sessions that closed: forget them (a peer's next session is pinged once again).
    let sessions: HashSet<ActorId> = peers.iter().map(|(_, p)| p.get_id()).collect();
    shared.heard_once.lock_or_recover().retain(|id| sessions.contains(id));
    shared.checks.lock_or_recover().retain(|n, _| up.contains(n));
    let suspect_after = suspect_after(&args.config);
    let (silent, suspects) = {
        let mut detectors = shared.detectors.lock_or_recover();
        // Forget peers that are not up and watched: they start afresh when they are again.
        detectors.retain(|name, _| up.contains(name) && watched.contains(name));
        // A peer newly watched counts as heard from now, so one that freezes before its first
        // answer reaches us is still suspected.
        for name in watched {
            detectors.entry(name.clone()).or_insert_with(|| {
                let mut d = detector(&args.config);
                d.heartbeat(now);
                d
            });
        }
        let threshold = args.config.phi_threshold;
        let silent: Vec<String> = detectors
            .iter()
            .filter(|(_, d)| d.silence(now).is_some_and(|s| s >= suspect_after))
            .map(|(name, _)| name.clone())
            .collect();
        let suspects: Vec<(String, f64)> = detectors
            .iter()
            .map(|(name, d)| (name.clone(), d.phi(now)))
            .inspect(|(name, phi)| {
                metrics::gauge!("foundation_cluster_phi", "peer" => crate::peer_traffic::peer_label(name))
                    .set(*phi)
            })
            .filter(|(_, phi)| *phi > threshold)
            .collect();
        for (name, _) in &suspects {
            detectors.remove(name);
        }
        // A suspicion ends with the watch (a peer watched again is announced afresh).
        shared.suspected.lock_or_recover().retain(|n| detectors.contains_key(n));
        (silent, suspects)
    };
    for name in silent.into_iter().filter(|n| !suspects.iter().any(|(s, _)| s == n)) {
        if shared.suspected.lock_or_recover().insert(name.clone()) {
            tracing::info!(peer = %name, silence = ?suspect_after, "a watched node is silent: asking the others to check it");
            notify_suspect(shared, peers, &name, false);
        }
    }
    for (name, phi) in suspects {
        notify_suspect(shared, peers, &name, true);
        unreachable(shared, &name, phi);
    }
}

/// Pings again the members that are up here although a removal may cover their process (a
/// removal gossiped after this node last heard them): their answer tells which process they
/// are, and one the removal covers is evicted then ([`heard`]). (Not evicted on this node's
/// record alone: the incarnation it holds may be an earlier process's until the first answer
/// is taken in.)
fn reping_removed(shared: &Shared, peers: &[(String, ActorRef<HeartbeatMsg>)]) {
    let removed = shared.args.membership.read_or_recover().up_but_removed();
    if removed.is_empty() {
        return;
    }
    let ids: HashSet<ActorId> =
        peers.iter().filter(|(n, _)| removed.contains(n)).map(|(_, p)| p.get_id()).collect();
    shared.heard_once.lock_or_recover().retain(|id| !ids.contains(id));
}

/// Asks every other node's heartbeat actor to check `name` (`gave_up`: this watcher declares it
/// unreachable).
fn notify_suspect(shared: &Shared, peers: &[(String, ActorRef<HeartbeatMsg>)], name: &str, gave_up: bool) {
    for (peer_name, peer) in peers {
        if peer_name != name
            && let Ok(notice) = Wire::encode(&(name.to_string(), gave_up), shared.args.config.max_frame_bytes)
        {
            let _ = peer.cast(HeartbeatMsg::Suspect(notice));
        }
    }
}

/// Declares `name` unreachable here: membership hears why, and its sessions are stopped (by a
/// task: the heartbeat actor goes on answering pings meanwhile).
fn unreachable(shared: &Shared, name: &str, phi: f64) {
    let args = &shared.args;
    shared.suspected.lock_or_recover().remove(name);
    let _ = args.events.send(SessionEvent::Unreachable { name: name.to_string(), phi });
    let (server, name) = (args.server.clone(), name.to_string());
    tokio::spawn(
        async move { evict(&server, &name, &format!("unreachable: no heartbeat from {name}")).await },
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i:02}")).collect()
    }

    #[test]
    fn each_node_watches_its_successors_and_is_watched_by_as_many() {
        let all = names(12);
        let mut watchers: HashMap<String, usize> = HashMap::new();
        for own in &all {
            let watched = watched_peers(own, &all, 3);
            assert_eq!(watched.len(), 3, "{own}: {watched:?}");
            assert!(!watched.contains(own), "a node does not watch itself");
            for peer in watched {
                *watchers.entry(peer).or_default() += 1;
            }
        }
        assert!(all.iter().all(|n| watchers[n] == 3), "{watchers:?}");
        // The ring wraps: the last watches the first ones.
        let last = watched_peers("n11", &all, 2);
        assert_eq!(last, HashSet::from(["n00".to_string(), "n01".to_string()]));
    }

    #[test]
    fn a_small_cluster_is_watched_in_full_and_the_own_name_need_not_be_listed() {
        let up = names(4);
        // `up` lists the other nodes only (membership does not list itself).
        let others: Vec<String> = up.iter().filter(|n| *n != "n02").cloned().collect();
        assert_eq!(watched_peers("n02", &others, 5), others.iter().cloned().collect());
        assert!(watched_peers("n02", &[], 5).is_empty());
        // Duplicates (two sessions to one node) count once.
        let twice = vec!["n01".to_string(), "n01".to_string(), "n03".to_string()];
        assert_eq!(watched_peers("n02", &twice, 5).len(), 2);
    }

    #[test]
    fn suspicion_starts_early_enough_for_the_checks_to_end_with_the_watchers_verdict() {
        let config = ClusterConfig::default();
        // 200 ms heartbeats, 1 s pause: detection at about 1.76 s, checks of 1 s.
        assert_eq!(check_timeout(&config), Duration::from_secs(1));
        assert_eq!(suspect_after(&config) + check_timeout(&config), expected_detection(&config));
        // A pause shorter than an interval: the check still waits an interval.
        let quick = ClusterConfig { acceptable_pause: Duration::ZERO, ..ClusterConfig::default() };
        assert_eq!(check_timeout(&quick), quick.heartbeat_interval);
        assert!(suspect_after(&quick) >= quick.heartbeat_interval * 2);
    }
}
