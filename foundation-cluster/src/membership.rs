//! Who is in the cluster, from ractor_cluster's node-session events.
//!
//! ractor_cluster may hold two sessions to one peer for a moment (both dialled at once) and
//! elects one; a peer is up while it has at least one ready session, and down when its last
//! session closes. A session that closes before it authenticated was refused (wrong cookie, or
//! not a node at all).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use ractor::ActorId;
use ractor_cluster::node::NodeServerSessionInformation;

use crate::state::{NodeState, Remembered, RememberedMember, Removal};

/// A node as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name (`node.name` of its config).
    pub name: String,
    /// The address it listens on for other nodes.
    pub addr: String,
    /// Up or down.
    pub status: MemberStatus,
    /// When it entered this status.
    pub since: SystemTime,
    /// Its process's incarnation, once heard (grows with every start of the node; 0 until a
    /// heartbeat told it, e.g. for a member remembered from before this node restarted).
    pub incarnation: u64,
}

/// A member's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// Connected and authenticated.
    Up,
    /// Silent while still connected: its connection is being closed.
    Unreachable,
    /// Its connection closed.
    Down,
    /// It said it was leaving, then closed its connection: a planned departure. It no longer
    /// counts among the known nodes (for majorities) from `DEPARTED_STILL_COUNT` after it left
    /// until it joins again.
    Left,
}

/// A change in membership.
#[derive(Debug, Clone, PartialEq)]
pub enum MembershipEvent {
    /// A node joined (or rejoined).
    Up {
        /// Its name.
        name: String,
        /// Its address.
        addr: String,
    },
    /// A node left or was lost.
    Down {
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A node stopped answering heartbeats while its connection stayed open (frozen, or a
    /// network partition); its connection is being closed, and a `Down` follows.
    Unreachable {
        /// Its name.
        name: String,
        /// The failure detector's suspicion level when it was declared unreachable; infinite
        /// when this node does not watch it and confirmed a watcher's verdict with a ping of
        /// its own that went unanswered (see `cluster.monitored_peers`).
        phi: f64,
    },
    /// A node's connection closed while another one to it had authenticated, and that one is
    /// now ready: the node stayed up. This happens when two nodes dial each other at once (while
    /// a cluster forms, or a partition heals) and the connection that was ready first loses the
    /// election between the two. Messages in flight on the closed connection are lost, as in any
    /// cut: code that tracks work sent to the node must treat this as a loss (the member's
    /// `since` is now).
    Reconnected {
        /// Its name.
        name: String,
        /// Its address.
        addr: String,
    },
    /// A node left on purpose ([`Cluster::shutdown`](crate::Cluster::shutdown)): it announced it
    /// before closing its connection.
    Left {
        /// Its name.
        name: String,
    },
    /// A node was removed from the cluster for good ([`Cluster::remove_member`](crate::Cluster::remove_member),
    /// here or on another node): it no longer counts among the known nodes, and it is refused
    /// until it restarts.
    Removed {
        /// Its name.
        name: String,
    },
    /// A connection was refused: wrong cookie, or not a node.
    Refused {
        /// Where it came from.
        peer_addr: String,
        /// The node name it gave, if it got that far.
        peer_name: Option<String>,
    },
}

/// How long a member stays up, at most, while a new connection to it replaces the closed one
/// (checked at each membership event: other members' heartbeats bring them every interval; in a
/// cluster where nothing else happens, the failure detector ends the hold).
const REPLACEMENT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What membership reads of a node session (from ractor_cluster's session information).
pub(crate) struct SessionInfo {
    /// The session actor's id.
    pub(crate) id: ActorId,
    /// The name the peer gave (proven once authenticated) and the address it advertises.
    pub(crate) peer: Option<(String, String)>,
    /// An incoming connection.
    pub(crate) is_server: bool,
    /// ractor_cluster's node id of the session.
    pub(crate) node_id: u64,
    /// The socket's peer address (for a connection this node opened, the address it dialled).
    pub(crate) peer_addr: String,
}

impl From<&NodeServerSessionInformation> for SessionInfo {
    fn from(s: &NodeServerSessionInformation) -> Self {
        SessionInfo {
            id: s.actor.get_id(),
            peer: s.peer_name.as_ref().map(|p| (p.name.clone(), p.connection_string.clone())),
            is_server: s.is_server,
            node_id: s.node_id,
            peer_addr: s.peer_addr.clone(),
        }
    }
}

impl SessionInfo {
    /// Our name of the node the peer says it is.
    fn name(&self) -> Option<String> {
        self.peer.as_ref().map(|(name, _)| node_name(name))
    }
}

/// What the node server reported.
pub(crate) enum SessionEvent {
    Opened(SessionInfo),
    Authenticated(SessionInfo),
    Ready(SessionInfo),
    Disconnected(SessionInfo),
    /// Dialling a node failed its TLS handshake.
    DialRefused {
        addr: String,
    },
    /// A node announced that it is leaving.
    Leaving {
        name: String,
    },
    /// The failure detector gave up on a node.
    Unreachable {
        name: String,
        phi: f64,
    },
    /// A node answered a heartbeat over its own session: its incarnation, and the removals it
    /// knows of.
    Heard {
        name: String,
        /// The session (ractor_cluster's node id) the answer came over.
        session: u64,
        incarnation: u64,
        removed: Vec<(String, Removal)>,
    },
    /// This node's operator removes a node for good; told whether it was.
    Remove {
        name: String,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

struct Session {
    authenticated: bool,
    /// The address this node dialled, for a connection it opened (a node's listening address).
    dialled: Option<String>,
    /// The node it authenticated as, until it is ready.
    claimed: Option<String>,
    /// The node, once ready.
    peer: Option<String>,
}

#[derive(Default)]
pub(crate) struct Membership {
    /// What outlives this process (members known, removals, the largest token), written to the
    /// state directory when it changes (if there is one).
    remembered: Remembered,
    state: Option<Arc<NodeState>>,
    sessions: HashMap<ActorId, Session>,
    members: BTreeMap<String, Member>,
    ready_sessions: HashMap<String, usize>,
    /// Why a node is being disconnected, when we are the ones disconnecting it.
    evicting: HashMap<String, String>,
    /// Members whose last ready session closed while another session to them had
    /// authenticated: still up until that one is ready (`Reconnected`) or closes (`Down`).
    replacing: HashMap<String, std::time::Instant>,
    /// Members reported `Reconnected`: the new session's node id, and the incarnation of the
    /// process they were before (if it had answered a heartbeat): the first answer over the new
    /// session tells whether the same process is behind it.
    reconnected: HashMap<String, (u64, Option<u64>)>,
    /// Up members that answered a heartbeat since they came up (their incarnation is known).
    heard_since_up: std::collections::HashSet<String>,
    /// Nodes that announced they are leaving, until their connection closes.
    leaving: std::collections::HashSet<String>,
    /// Ready sessions of nodes with a removal on record, held back (not up, not counted) until
    /// a heartbeat shows a process started after the removal: name → address.
    pending: HashMap<String, String>,
    /// Nodes removed, and when (they still count towards majorities for a while: see
    /// `recently_removed`).
    removed_at: HashMap<String, std::time::Instant>,
    /// ractor_cluster's per-session node ids → the name the session authenticated.
    session_nodes: HashMap<u64, String>,
    /// Whether this process is the first to use its state directory: it can have had no earlier
    /// life that granted anything. (Without a state directory, never.)
    fresh: bool,
    /// Nodes that left on purpose, and when (monotonic: they count for a while, see
    /// `Cluster::counted_members`).
    left_at: HashMap<String, std::time::Instant>,
}

/// Splits ractor_cluster's `name@host` into our node name.
pub(crate) fn node_name(full: &str) -> String {
    full.rsplit_once('@').map_or(full, |(n, _)| n).to_string()
}

impl Membership {
    /// Membership as remembered by `state` (if any): its members count as known, down until
    /// they connect.
    pub(crate) fn new(me: &str, state: Option<Arc<NodeState>>) -> Self {
        // Without a state directory a restart cannot be told from a first start: never fresh.
        let fresh = state.as_ref().is_some_and(|s| s.first_start);
        let mut membership = Membership { fresh, ..Membership::default() };
        if let Some(state) = &state {
            membership.remembered = state.remembered.clone();
            membership.remembered.members.remove(me);
            for (name, remembered) in &membership.remembered.members {
                let member = Member {
                    name: name.clone(),
                    addr: remembered.addr.clone(),
                    status: MemberStatus::Down,
                    since: SystemTime::now(),
                    incarnation: remembered.incarnation,
                };
                membership.members.insert(name.clone(), member);
            }
        }
        membership.state = state;
        membership
    }

    /// Applies `event`; writes the state directory if what it remembers changed.
    pub(crate) fn apply(&mut self, event: SessionEvent) -> Vec<MembershipEvent> {
        let before = self.remembered.clone();
        let mut changes = self.apply_event(event);
        changes.extend(self.release_orphaned_holds());
        changes.extend(self.drop_removed());
        // Removals older than any lease no longer count (see `recently_removed`).
        let window = crate::node::DEPARTED_STILL_COUNT;
        self.removed_at.retain(|_, at| at.elapsed() < window);
        self.remember(&changes);
        if self.remembered != before {
            self.save();
        }
        changes
    }

    fn save(&self) {
        if let Some(state) = &self.state {
            state.save(&self.remembered);
        }
    }

    /// Keeps the remembered members in step with a change.
    fn remember(&mut self, changes: &[MembershipEvent]) {
        for change in changes {
            match change {
                MembershipEvent::Up { name, addr } | MembershipEvent::Reconnected { name, addr }
                    if !name.starts_with(crate::singleton::OBSERVER_PREFIX) =>
                {
                    let incarnation = self.members.get(name).map_or(0, |m| m.incarnation);
                    let member = RememberedMember { addr: addr.clone(), incarnation };
                    self.remembered.members.insert(name.clone(), member);
                }
                MembershipEvent::Left { name } | MembershipEvent::Removed { name } => {
                    self.remembered.members.remove(name);
                }
                _ => {}
            }
        }
    }

    /// Nodes removed for good, as heartbeats gossip them.
    pub(crate) fn removals(&self) -> Vec<(String, Removal)> {
        self.remembered
            .removed
            .iter()
            .map(|(n, r)| (n.clone(), Removal { at_ms: r.at_ms, addr: r.addr.clone() }))
            .collect()
    }

    /// Addresses removed nodes had: a seed at one of them is not a node still joining (a node
    /// back at that address is a member, and counts as one).
    pub(crate) fn removed_addrs(&self) -> Vec<String> {
        self.remembered.removed.values().filter_map(|r| r.addr.clone()).collect()
    }

    /// Whether `name` left on purpose within `window`.
    pub(crate) fn left_within(&self, name: &str, window: std::time::Duration) -> bool {
        self.left_at.get(name).is_some_and(|at| at.elapsed() < window)
    }

    /// Members up here whose process (its incarnation, as heard) a removal covers.
    pub(crate) fn up_but_removed(&self) -> Vec<String> {
        self.members
            .values()
            .filter(|m| m.status == MemberStatus::Up && self.remembered.is_removed(&m.name, m.incarnation))
            .map(|m| m.name.clone())
            .collect()
    }

    /// Whether the process of `name` with `incarnation` was removed for good.
    pub(crate) fn is_removed(&self, name: &str, incarnation: u64) -> bool {
        self.remembered.is_removed(name, incarnation)
    }

    /// Nodes removed within `window`: they still count towards majorities for that long, so
    /// that a lease recorded only by them has ended before a smaller majority can grant.
    pub(crate) fn recently_removed(&self, window: std::time::Duration) -> usize {
        self.removed_at
            .iter()
            .filter(|(n, at)| at.elapsed() < window && !self.members.contains_key(*n))
            .count()
    }

    /// The name the session with ractor_cluster's node id `node_id` authenticated.
    pub(crate) fn node_of_session(&self, node_id: u64) -> Option<&str> {
        self.session_nodes.get(&node_id).map(String::as_str)
    }

    /// Whether this process had no earlier life that could have granted leases (see `fresh`).
    pub(crate) fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// `name` is up (again) at `addr`. A node that rejoins after leaving is a new arrival, not
    /// still leaving.
    fn come_up(&mut self, name: String, addr: String, incarnation: u64) -> MembershipEvent {
        self.leaving.remove(&name);
        self.heard_since_up.remove(&name);
        self.reconnected.remove(&name);
        let member = Member {
            name: name.clone(),
            addr: addr.clone(),
            status: MemberStatus::Up,
            since: SystemTime::now(),
            incarnation,
        };
        self.members.insert(name.clone(), member);
        MembershipEvent::Up { name, addr }
    }

    /// Forgets members (not up) whose process a removal covers.
    fn drop_removed(&mut self) -> Vec<MembershipEvent> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.status != MemberStatus::Up && self.remembered.is_removed(&m.name, m.incarnation))
            .map(|m| m.name.clone())
            .collect();
        gone.into_iter()
            .map(|name| {
                // Its address goes with the removal (and with its gossip), so that a seed there
                // stops counting as a node still joining, on every node.
                if let Some(member) = self.members.remove(&name)
                    && let Some(record) = self.remembered.removed.get_mut(&name)
                    && record.addr.is_none()
                {
                    record.addr = Some(member.addr);
                }
                self.removed_at.insert(name.clone(), std::time::Instant::now());
                MembershipEvent::Removed { name }
            })
            .collect()
    }

    fn apply_event(&mut self, event: SessionEvent) -> Vec<MembershipEvent> {
        match event {
            SessionEvent::Heard { name, session, incarnation, removed } => {
                // The first answer over the new session after a `Reconnected` (a late answer
                // over the old one does not count): a later process than the one the closed
                // connection led to is a restart, reported as one.
                let mut restarted = Vec::new();
                let first_on_new = self.reconnected.get(&name).is_some_and(|(new, _)| *new == session);
                if first_on_new
                    && let Some((_, Some(before))) = self.reconnected.remove(&name)
                    && incarnation > before
                    && let Some(member) = self.members.get(&name)
                    && member.status == MemberStatus::Up
                {
                    let addr = member.addr.clone();
                    self.evicting.insert(
                        name.clone(),
                        "restarted: a new process answered on the new connection".into(),
                    );
                    restarted.extend(self.go_down(name.clone()));
                    restarted.push(self.come_up(name.clone(), addr, incarnation));
                }
                if self.members.get(&name).is_some_and(|m| m.status == MemberStatus::Up) {
                    self.heard_since_up.insert(name.clone());
                }
                // The incarnation first: a removal gossiped in the same beat must not take a
                // member up here for the removed process.
                if let Some(member) = self.members.get_mut(&name) {
                    member.incarnation = member.incarnation.max(incarnation);
                }
                if let Some(remembered) = self.remembered.members.get_mut(&name) {
                    remembered.incarnation = remembered.incarnation.max(incarnation);
                }
                self.remembered.merge_removed(removed);
                // A node held back for its removal: a process started after it joins now.
                match self.pending.get(&name) {
                    Some(addr) if !self.remembered.is_removed(&name, incarnation) => {
                        let addr = addr.clone();
                        self.pending.remove(&name);
                        restarted.push(self.come_up(name, addr, incarnation));
                        restarted
                    }
                    _ => restarted,
                }
            }
            SessionEvent::Remove { name, done } => {
                let at_ms = crate::state::unix_ms();
                let up = self.members.get(&name).is_some_and(|m| m.status == MemberStatus::Up);
                if up || self.pending.contains_key(&name) {
                    let _ = done.send(Err(crate::node::UP.to_string()));
                    return Vec::new();
                }
                if let Some(m) = self.members.get(&name)
                    && m.incarnation >= at_ms
                {
                    // Its last process started "after" the removal by its own clock: its host's
                    // clock runs ahead of this one's, and the removal would not cover it.
                    let _ = done.send(Err(format!(
                        "its last process started at {} ms, after now ({at_ms} ms) by this node's clock: \
                         its host's clock runs ahead; remove it from a node whose clock does not run behind",
                        m.incarnation
                    )));
                    return Vec::new();
                }
                let addr = self.members.get(&name).map(|m| m.addr.clone());
                self.remembered.merge_removed([(name.clone(), Removal { at_ms, addr })]);
                let _ = done.send(Ok(()));
                // Listed as removed even if this node never knew it (its peers may have).
                let mut changes = self.drop_removed();
                if !changes.iter().any(|c| matches!(c, MembershipEvent::Removed { name: n } if *n == name)) {
                    changes.push(MembershipEvent::Removed { name });
                }
                changes
            }
            // A held member declared unreachable: down at once (it has no ready session whose
            // close would say so).
            SessionEvent::Unreachable { name, phi } if self.replacing.contains_key(&name) => {
                let mut changes: Vec<_> = self
                    .apply_session(SessionEvent::Unreachable { name: name.clone(), phi })
                    .into_iter()
                    .collect();
                self.replacing.remove(&name);
                changes.extend(self.go_down(name));
                changes
            }
            // A held member that cannot carry on: the hold ends down, and the new session comes
            // up the usual way.
            SessionEvent::Ready(s) if s.name().is_some_and(|name| self.hold_ends_down(&name)) => {
                let name = s.name().unwrap_or_default();
                self.replacing.remove(&name);
                let mut changes: Vec<_> = self.go_down(name).into_iter().collect();
                changes.extend(self.apply_session(SessionEvent::Ready(s)));
                changes
            }
            other => self.apply_session(other).into_iter().collect(),
        }
    }

    fn apply_session(&mut self, event: SessionEvent) -> Option<MembershipEvent> {
        match event {
            SessionEvent::Heard { .. } | SessionEvent::Remove { .. } => None,
            SessionEvent::Unreachable { name, phi } => {
                let why = match phi.is_finite() {
                    true => format!("unreachable: phi {phi:.1} over the threshold"),
                    false => {
                        "unreachable: a watcher gave up on it and it did not answer this node's check".into()
                    }
                };
                self.evicting.insert(name.clone(), why);
                if let Some(member) = self.members.get_mut(&name) {
                    member.status = MemberStatus::Unreachable;
                    member.since = SystemTime::now();
                }
                Some(MembershipEvent::Unreachable { name, phi })
            }
            SessionEvent::DialRefused { addr } => {
                Some(MembershipEvent::Refused { peer_addr: addr, peer_name: None })
            }
            SessionEvent::Leaving { name } => {
                self.leaving.insert(name);
                None
            }
            SessionEvent::Opened(s) => {
                let dialled = (!s.is_server).then(|| s.peer_addr.clone());
                let session = Session { authenticated: false, dialled, claimed: None, peer: None };
                self.sessions.insert(s.id, session);
                None
            }
            SessionEvent::Authenticated(s) => {
                if let Some(session) = self.sessions.get_mut(&s.id) {
                    session.authenticated = true;
                    session.claimed = s.name();
                }
                None
            }
            SessionEvent::Ready(s) => {
                let (name, addr) = (s.name()?, s.peer.as_ref()?.1.clone());
                let session = self.sessions.entry(s.id).or_insert(Session {
                    authenticated: true,
                    dialled: None,
                    claimed: None,
                    peer: None,
                });
                session.authenticated = true;
                if session.peer.is_some() {
                    return None;
                }
                session.peer = Some(name.clone());
                self.session_nodes.insert(s.node_id, name.clone());
                let count = self.ready_sessions.entry(name.clone()).or_default();
                *count += 1;
                if self.replacing.remove(&name).is_some()
                    && let Some(member) = self.members.get_mut(&name)
                {
                    member.since = SystemTime::now();
                    member.addr = addr.clone();
                    let known = self.heard_since_up.remove(&name).then_some(member.incarnation);
                    self.reconnected.insert(name.clone(), (s.node_id, known));
                    return Some(MembershipEvent::Reconnected { name, addr });
                }
                let was_up = self.members.get(&name).is_some_and(|m| m.status == MemberStatus::Up);
                if was_up {
                    return None;
                }
                // A node with a removal on record is held back until a heartbeat shows which
                // process it is (a removed one is refused without ever counting as up).
                if self.remembered.removed.contains_key(&name) {
                    self.pending.insert(name, addr);
                    return None;
                }
                let incarnation = self.members.get(&name).map_or(0, |m| m.incarnation);
                Some(self.come_up(name, addr, incarnation))
            }
            SessionEvent::Disconnected(s) => {
                let session = self.sessions.remove(&s.id)?;
                match session.peer {
                    None if !session.authenticated => {
                        let peer_name = s.name();
                        // Two nodes that dialled each other at once: one connection loses the
                        // election and may close before this side finished authenticating it.
                        // That is not a refusal while the node is up on another connection.
                        if let Some(name) = &peer_name
                            && (self.ready_sessions.get(name).is_some_and(|n| *n > 0)
                                || self.replacing.contains_key(name))
                        {
                            tracing::debug!(peer = %name, "duplicate connection closed");
                            return None;
                        }
                        Some(MembershipEvent::Refused { peer_addr: s.peer_addr.clone(), peer_name })
                    }
                    // authenticated, not ready: if it was a held member's successor, `apply`
                    // releases the hold
                    None => None,
                    Some(name) => {
                        self.session_nodes.remove(&s.node_id);
                        let count = self.ready_sessions.entry(name.clone()).or_default();
                        *count = count.saturating_sub(1);
                        if *count > 0 {
                            return None; // another session to the same node is still up
                        }
                        if self.pending.remove(&name).is_some() {
                            self.evicting.remove(&name);
                            return None; // never counted as up
                        }
                        // Another session to it authenticated and is about to be ready (the two
                        // dialled each other at once and this one lost the election): held up
                        // until that one is ready or closes. Not a node being evicted or leaving.
                        let departing = self.evicting.contains_key(&name) || self.leaving.contains(&name);
                        if !departing && self.has_successor(&name) {
                            tracing::debug!(peer = %name, "a connection was replaced by another");
                            self.replacing.insert(name, std::time::Instant::now());
                            return None;
                        }
                        self.go_down(name)
                    }
                }
            }
        }
    }

    /// Whether a session to `name` is on its way to ready: authenticated as `name`, or dialled
    /// by this node to `name`'s address and still authenticating (its name is not proven yet,
    /// but this node chose where to dial; a connection from elsewhere that only claims the name
    /// never holds a member up).
    fn has_successor(&self, name: &str) -> bool {
        let addr = self.members.get(name).map(|m| m.addr.as_str());
        self.sessions.values().any(|s| {
            s.peer.is_none()
                && match s.authenticated {
                    true => s.claimed.as_deref() == Some(name),
                    false => s.dialled.is_some() && s.dialled.as_deref() == addr,
                }
        })
    }

    /// Held members whose successors all closed, or that were held for [`REPLACEMENT_GRACE`]:
    /// down (or left) now.
    fn release_orphaned_holds(&mut self) -> Vec<MembershipEvent> {
        let orphaned: Vec<String> = self
            .replacing
            .iter()
            .filter(|(n, since)| since.elapsed() >= REPLACEMENT_GRACE || !self.has_successor(n))
            .map(|(n, _)| n.clone())
            .collect();
        orphaned
            .into_iter()
            .filter_map(|name| {
                self.replacing.remove(&name);
                self.go_down(name)
            })
            .collect()
    }

    /// A held member whose successor is ready but cannot simply carry on: a removal on record
    /// may cover it (its process was never heard since it came up, or the one heard is
    /// removed), so the new session is held back until a heartbeat shows which process it is.
    fn hold_ends_down(&self, name: &str) -> bool {
        let incarnation = self.members.get(name).map_or(0, |m| m.incarnation);
        self.replacing.contains_key(name)
            && self.remembered.removed.contains_key(name)
            && (!self.heard_since_up.contains(name) || self.remembered.is_removed(name, incarnation))
    }

    /// `name`'s last session closed: it left (if it said so) or is down.
    fn go_down(&mut self, name: String) -> Option<MembershipEvent> {
        self.heard_since_up.remove(&name);
        self.reconnected.remove(&name);
        let member = self.members.get_mut(&name)?;
        member.since = SystemTime::now();
        if self.leaving.remove(&name) {
            self.left_at.insert(name.clone(), std::time::Instant::now());
            member.status = MemberStatus::Left;
            self.evicting.remove(&name);
            return Some(MembershipEvent::Left { name });
        }
        member.status = MemberStatus::Down;
        let reason = self.evicting.remove(&name).unwrap_or_else(|| "connection closed".into());
        Some(MembershipEvent::Down { name, reason })
    }

    pub(crate) fn members(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    pub(crate) fn up_names(&self) -> Vec<String> {
        self.members.values().filter(|m| m.status == MemberStatus::Up).map(|m| m.name.clone()).collect()
    }

    pub(crate) fn up_addrs(&self) -> Vec<String> {
        self.members.values().filter(|m| m.status == MemberStatus::Up).map(|m| m.addr.clone()).collect()
    }

    /// Addresses of members remembered from an earlier run (or seen since) that are not up.
    pub(crate) fn remembered_down(&self) -> Vec<std::net::SocketAddr> {
        self.remembered
            .members
            .iter()
            .filter(|(name, _)| self.members.get(*name).is_none_or(|m| m.status != MemberStatus::Up))
            .filter_map(|(_, member)| member.addr.parse().ok())
            .collect()
    }

    pub(crate) fn is_up_named(&self, name: &str) -> bool {
        self.members.get(name).is_some_and(|m| m.status == MemberStatus::Up)
    }

    pub(crate) fn is_up_at(&self, addr: &str) -> bool {
        self.members.values().any(|m| m.status == MemberStatus::Up && m.addr == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session `id` to node `x`, whose advertised address is `x-addr`: `named` says whether its
    /// name is known yet; `dialled` is the address this node dialled (an outgoing connection),
    /// or none for an incoming one.
    fn session(id: u64, named: bool, dialled: Option<&str>) -> SessionInfo {
        SessionInfo {
            id: ActorId::Local(id),
            peer: named.then(|| ("x@host".to_string(), "x-addr".to_string())),
            is_server: dialled.is_none(),
            node_id: id,
            peer_addr: dialled.unwrap_or("10.0.0.9:50000").to_string(),
        }
    }

    /// x answered a heartbeat over session `session`.
    fn heard(session: u64, incarnation: u64) -> SessionEvent {
        SessionEvent::Heard { name: "x".into(), session, incarnation, removed: Vec::new() }
    }

    /// x up on incoming session 1, heard at incarnation 5; then this node dials x (session 2)
    /// and session 1 closes: x is held.
    fn held() -> Membership {
        let mut m = Membership::new("me", None);
        assert!(m.apply(SessionEvent::Opened(session(1, false, None))).is_empty());
        assert!(m.apply(SessionEvent::Authenticated(session(1, true, None))).is_empty());
        let up = m.apply(SessionEvent::Ready(session(1, true, None)));
        assert_eq!(up, vec![MembershipEvent::Up { name: "x".into(), addr: "x-addr".into() }]);
        assert!(m.apply(heard(1, 5)).is_empty());
        assert!(m.apply(SessionEvent::Opened(session(2, false, Some("x-addr")))).is_empty());
        let closed = m.apply(SessionEvent::Disconnected(session(1, true, None)));
        assert!(closed.is_empty(), "held, not down: {closed:?}");
        assert!(m.is_up_named("x"));
        m
    }

    fn down(reason: &str) -> impl Fn(&MembershipEvent) -> bool + '_ {
        move |e| matches!(e, MembershipEvent::Down { name, reason: r } if name == "x" && r.contains(reason))
    }

    #[test]
    fn a_connection_replaced_by_one_this_node_dialled_keeps_the_member_up_and_says_so() {
        let mut m = held();
        assert!(m.apply(SessionEvent::Authenticated(session(2, true, Some("x-addr")))).is_empty());
        let ready = m.apply(SessionEvent::Ready(session(2, true, Some("x-addr"))));
        assert_eq!(ready, vec![MembershipEvent::Reconnected { name: "x".into(), addr: "x-addr".into() }]);
        // the same process answers on the new connection: nothing more
        assert!(m.apply(heard(2, 5)).is_empty());
        assert!(m.is_up_named("x"));
        // its last session closing now is a plain down
        assert!(
            m.apply(SessionEvent::Disconnected(session(2, true, Some("x-addr")))).iter().any(down("closed"))
        );
    }

    #[test]
    fn a_successor_that_closes_before_it_is_ready_ends_the_hold_down() {
        let mut m = held();
        let closed = m.apply(SessionEvent::Disconnected(session(2, false, Some("x-addr"))));
        assert!(closed.iter().any(down("connection closed")), "{closed:?}");
        assert!(!m.is_up_named("x"));
    }

    #[test]
    fn a_connection_that_only_claims_the_name_holds_nothing() {
        let mut m = Membership::new("me", None);
        m.apply(SessionEvent::Opened(session(1, false, None)));
        m.apply(SessionEvent::Authenticated(session(1, true, None)));
        m.apply(SessionEvent::Ready(session(1, true, None)));
        // an incoming connection naming x, not authenticated: anyone can say that
        m.apply(SessionEvent::Opened(session(3, true, None)));
        let closed = m.apply(SessionEvent::Disconnected(session(1, true, None)));
        assert!(closed.iter().any(down("connection closed")), "{closed:?}");
    }

    #[test]
    fn a_held_member_declared_unreachable_goes_down_at_once() {
        let mut m = held();
        let changes = m.apply(SessionEvent::Unreachable { name: "x".into(), phi: 9.0 });
        assert!(matches!(changes[0], MembershipEvent::Unreachable { .. }), "{changes:?}");
        assert!(changes.iter().any(down("unreachable")), "{changes:?}");
        // its new session, ready after all, comes up the usual way
        m.apply(SessionEvent::Authenticated(session(2, true, Some("x-addr"))));
        let ready = m.apply(SessionEvent::Ready(session(2, true, Some("x-addr"))));
        assert_eq!(ready, vec![MembershipEvent::Up { name: "x".into(), addr: "x-addr".into() }]);
    }

    #[test]
    fn a_new_process_behind_the_new_connection_is_a_restart() {
        let mut m = held();
        m.apply(SessionEvent::Authenticated(session(2, true, Some("x-addr"))));
        m.apply(SessionEvent::Ready(session(2, true, Some("x-addr"))));
        // a late answer over the closed connection (the old process) settles nothing
        assert!(m.apply(heard(1, 5)).is_empty());
        let answer = m.apply(heard(2, 9));
        assert_eq!(answer.len(), 2, "{answer:?}");
        assert!(down("restarted")(&answer[0]), "{answer:?}");
        assert_eq!(answer[1], MembershipEvent::Up { name: "x".into(), addr: "x-addr".into() });
        assert!(m.is_up_named("x"));
    }

    #[test]
    fn a_hold_ends_down_after_its_grace() {
        let mut m = held();
        // two seconds ago (white box: a test does not wait for the clock)
        let Some(long_ago) = std::time::Instant::now().checked_sub(REPLACEMENT_GRACE) else { return };
        m.replacing.insert("x".into(), long_ago);
        let next = m.apply(SessionEvent::Heard {
            name: "y".into(),
            session: 3,
            incarnation: 1,
            removed: Vec::new(),
        });
        assert!(next.iter().any(down("connection closed")), "{next:?}");
    }
}
