//! Starting a node: the ractor_cluster node server, seeds, membership, control events.

use foundation_core::sync::{MutexRecover, RwLockRecover};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use foundation_actors::channels::{self, Channels, SystemEvent};
use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::dial::{Dialer, Transport};
use crate::health::{self, ClusterHealth, NodeHealth};
use crate::heartbeat::{self, HeartbeatMsg};
use crate::membership::{Member, MemberStatus, Membership, MembershipEvent, SessionEvent};
use crate::names;

/// Frame bytes ractor_cluster adds around a message (envelope, names, ids), on top of
/// `cluster.max_frame_bytes`, so that every message we allow fits the receiver's inbound limit.
const FRAME_OVERHEAD: u64 = 64 << 10;
/// How long a node that left or was removed still counts towards majorities: the longest lease
/// any node grants, so that a lease recorded only by departed nodes has ended first.
pub const DEPARTED_STILL_COUNT: Duration = crate::coordination::DEFAULT_MAX_LEASE;
/// Why a node that is up is not removed.
pub(crate) const UP: &str = "it is up: stop it first (removing a live node would let two majorities form)";
/// How long [`Cluster::shutdown`] waits for each peer to acknowledge that this node leaves.
pub const LEAVE_TIMEOUT: Duration = Duration::from_millis(500);
/// Membership events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 1024;

/// Why a node must not start as `config` says, if it must not: listening off loopback, or
/// dialling a seed off loopback, with the default cookie or one under
/// [`MIN_COOKIE_BYTES`](foundation_core::config::MIN_COOKIE_BYTES), or without TLS and without
/// `cluster.allow_plaintext`.
fn exposure_refusal(config: &ClusterConfig) -> Option<String> {
    use foundation_core::config::{DEFAULT_COOKIE, MIN_COOKIE_BYTES};
    let exposed =
        std::iter::once(config.listen).chain(config.seeds.iter().copied()).find(|a| !a.ip().is_loopback());
    let exposed = exposed?;
    if config.cookie == DEFAULT_COOKIE || config.cookie.len() < MIN_COOKIE_BYTES {
        return Some(format!(
            "{exposed} (listened on or dialled) is not a loopback address, and the cookie is {}: give the cluster a cookie of your \
             own of at least {MIN_COOKIE_BYTES} bytes (`cluster.cookie`, `FOUNDATION_COOKIE`; e.g. \
             `openssl rand -hex 16`)",
            if config.cookie == DEFAULT_COOKIE {
                "the default one".to_string()
            } else {
                format!("{} bytes long", config.cookie.len())
            }
        ));
    }
    if config.tls.is_none() && !config.allow_plaintext {
        return Some(format!(
            "{exposed} (listened on or dialled) is not a loopback address and `[cluster.tls]` is not set: every message would \
             cross the network in clear. Set `[cluster.tls]` (`cert`, `key`, `ca`: mutual TLS), or \
             `cluster.allow_plaintext = true` (`FOUNDATION_CLUSTER__ALLOW_PLAINTEXT=true`) on a \
             network you trust"
        ));
    }
    None
}

/// Errors of cluster operations.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node server could not start (the port is taken, the name is invalid...).
    #[error("node `{name}` cannot start on {listen}: {source}")]
    Start {
        /// The node.
        name: String,
        /// Its listen address.
        listen: SocketAddr,
        /// Why (the underlying error).
        #[source]
        source: foundation_core::BoxError,
    },
    /// A replicated actor could not start here.
    #[error("replicated actor `{name}` cannot start here: {source}")]
    Replicated {
        /// Its name.
        name: String,
        /// Why (the underlying error).
        #[source]
        source: foundation_core::BoxError,
    },
    /// A member could not be removed.
    #[error("cannot remove node `{name}`: {reason}")]
    Remove {
        /// The node.
        name: String,
        /// Why.
        reason: String,
    },
    /// Waited too long for members.
    #[error("{wanted} members were not up within {waited:?} (up: {up:?})")]
    Timeout {
        /// How many were wanted.
        wanted: usize,
        /// Who was up.
        up: Vec<String>,
        /// How long it waited.
        waited: Duration,
    },
}

/// A running node of a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    listen: SocketAddr,
    server: ActorRef<NodeServerMessage>,
    heartbeat: ActorRef<heartbeat::HeartbeatMsg>,
    seeds: Vec<SocketAddr>,
    membership: Arc<RwLock<Membership>>,
    events: broadcast::Sender<MembershipEvent>,
    tasks: Vec<JoinHandle<()>>,
    resolver: std::sync::OnceLock<ActorRef<names::ResolverMsg>>,
    max_frame_bytes: usize,
    /// `cluster.expected_nodes`: majorities are counted over at least this many nodes.
    expected_nodes: usize,
    /// Peers this node refuses sessions with (the `testkit` partition hook; empty otherwise).
    blocked: Blocked,
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    dialer: Dialer,
    /// This node's coordinator (locks, singleton leases), set once started; taken on shutdown.
    coordinator: std::sync::Mutex<Option<crate::coordination::NodeCoordinator>>,
    /// Singleton managers declared here: told to stop their copies and give their leases back
    /// when the node leaves.
    singletons: crate::singleton::Managers,
    /// Set when this node starts leaving (its heartbeats say so, which confirms its notice).
    leaving: Arc<std::sync::atomic::AtomicBool>,
    /// Into the membership task (for removals asked here).
    events_in: mpsc::UnboundedSender<SessionEvent>,
    /// This process's incarnation.
    incarnation: u64,
    /// The state directory, if any.
    state: Option<Arc<crate::state::NodeState>>,
    /// ractor_cluster's `name@host` of this node: the key of its traffic totals.
    traffic_name: String,
}

/// Names of peers whose sessions are closed as soon as they authenticate.
type Blocked = Arc<RwLock<std::collections::BTreeSet<String>>>;

/// Forwards node-server callbacks (which run inside the node server and must not block) to
/// the membership task. Unbounded because events come one per connection step, never per
/// message.
struct Forward(mpsc::UnboundedSender<SessionEvent>, Blocked);

impl Forward {
    /// Closes the session if its peer is blocked (test hook): `true` if it did.
    fn refuse_blocked(&self, ses: &NodeServerSessionInformation) -> bool {
        let Some(peer) = &ses.peer_name else { return false };
        let name = crate::membership::node_name(&peer.name);
        if self.1.read_or_recover().contains(&name) {
            ses.actor.stop(Some(format!("blocked: {name} is partitioned away (test hook)")));
            return true;
        }
        false
    }
}

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(SessionEvent::Opened((&ses).into()));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(SessionEvent::Disconnected((&ses).into()));
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        // Passed on even when refused: an authenticated session that closes is not a refusal.
        self.refuse_blocked(&ses);
        let _ = self.0.send(SessionEvent::Authenticated((&ses).into()));
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        if !self.refuse_blocked(&ses) {
            let _ = self.0.send(SessionEvent::Ready((&ses).into()));
        }
    }
    fn node_session_refused(&self, _peer_addr: &str, reason: &'static str) {
        // Every refusal is counted here, by reason (a fixed set); the node server logs them at
        // a bounded rate, and the membership task publishes at a bounded rate the ones that
        // became sessions.
        metrics::counter!("foundation_cluster_refused_total", "reason" => reason).increment(1);
    }
}

impl Cluster {
    /// Starts this node: listens on `config.listen`, admits nodes that present the same cookie,
    /// connects to the seeds (and keeps reconnecting to any that is not up), and publishes
    /// the membership events (`node_up`, `node_down`, `node_refused`, ...) on the control channel
    /// if `channels` is given.
    pub async fn start(
        name: &str,
        config: &ClusterConfig,
        channels: Option<Channels>,
    ) -> Result<Self, ClusterError> {
        let start_error = |source: foundation_core::BoxError| ClusterError::Start {
            name: name.to_string(),
            listen: config.listen,
            source,
        };
        // Checked here as well as by the configuration loader: a config built in code must not
        // put a node on the network with a guessable cookie or in clear by accident.
        if let Some(refusal) = exposure_refusal(config) {
            return Err(start_error(refusal.into()));
        }
        if let Some(channels) = &channels {
            channels.set_max_message_bytes(config.max_frame_bytes);
        }
        // Opened first: a discovery port that cannot be used fails the start before anything runs.
        let gossip = match config.gossip {
            false => None,
            true => Some(crate::discovery::open(config).map_err(|e| {
                start_error(
                    format!(
                        "discovery (cluster.gossip) cannot use UDP port {} and group {}: {e}",
                        config.gossip_port, config.gossip_group
                    )
                    .into(),
                )
            })?),
        };
        // What this node remembers from its earlier runs (and the lock that keeps a second
        // process off its directory). Observers keep nothing.
        let state = match &config.state_dir {
            Some(dir) if !name.starts_with(crate::singleton::OBSERVER_PREFIX) => Some(Arc::new(
                crate::state::NodeState::open(dir, &config.cookie).map_err(|e| start_error(e.into()))?,
            )),
            _ => None,
        };
        let incarnation = state.as_ref().map_or_else(crate::state::unix_ms, |s| s.incarnation);
        if let Some(state) = &state {
            let known: Vec<&String> = state.remembered.members.keys().filter(|n| *n != name).collect();
            tracing::info!(node = %name, dir = %state.dir().display(), incarnation, remembered = ?known, "state directory opened");
        }
        if let Some(tls) = &config.tls
            && crate::tls::expected_dns_name(name, &tls.server_name).is_none()
        {
            // Every peer would refuse it (its certificate cannot name it): say so now.
            return Err(start_error(
                format!(
                    "with [cluster.tls], a node name must be one lowercase DNS label (a-z, 0-9 and `-`, at most \
                     63, no dot) so that its certificate can name it as `{name}.{}`: `{name}` is not",
                    tls.server_name
                )
                .into(),
            ));
        }
        let transport = match &config.tls {
            Some(tls) => Transport::Tls(Box::new(crate::tls::load(tls).map_err(|e| start_error(e.into()))?)),
            None => Transport::Plain,
        };
        // ractor_cluster dials its peers' peers in plaintext: with TLS we do it ourselves.
        let (encryption, mode) = match &transport {
            Transport::Tls(tls) => (
                Some(ractor_cluster::IncomingEncryptionMode::Tls(tls.acceptor.clone())),
                ractor_cluster::node::NodeConnectionMode::Isolated,
            ),
            Transport::Plain => (None, ractor_cluster::node::NodeConnectionMode::Transitive),
        };
        // The address peers know this node by (its connection string, what they remember and
        // dial again): the listen address, or, listening on every interface, the address of the
        // interface toward the discovery group (the default route) — `0.0.0.0` would be every
        // such node's address, and this one's on every host.
        // Computed once: discovery announces it, heartbeats skip it among a peer's members.
        let announced = crate::discovery::announced_address(config);
        let advertised = announced.unwrap_or(config.listen);
        let hostname = match advertised.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        // ractor_cluster's name of this node, under which it keeps the traffic totals (and
        // observers' totals under one key)
        let traffic_name = format!("{name}@{hostname}");
        ractor_cluster::set_peer_key(crate::peer_traffic::fork_key);
        let server = NodeServer::new(
            config.listen.port(),
            config.cookie.clone(),
            name.to_string(),
            hostname.clone(),
            encryption,
            Some(mode),
        )
        .with_listen_addr(config.listen.ip())
        .with_max_inbound_frame_size(config.max_frame_bytes as u64 + FRAME_OVERHEAD)
        .with_handshake_timeout(config.handshake_timeout)
        .with_max_pending_connections(config.max_pending_connections);
        // With TLS, a peer's certificate must name the node it claims to be (`tls.rs`).
        let server = match &config.tls {
            Some(tls_config) => {
                server.with_peer_identity_check(crate::tls::identity_check(&tls_config.server_name))
            }
            None => server,
        };
        let (server, _) = Actor::spawn(None, server, ()).await.map_err(|e| start_error(e.into()))?;

        let (tx, mut rx) = mpsc::unbounded_channel();
        let blocked = Blocked::default();
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "foundation-membership".into(),
                subscription: Box::new(Forward(tx.clone(), blocked.clone())),
            })
            .map_err(|e| start_error(e.into()))?;

        let membership = Arc::new(RwLock::new(Membership::new(name, state.clone())));
        let leaving = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dialer = Dialer::new(
            transport,
            server.clone(),
            membership.clone(),
            config.reconnect_interval,
            config.handshake_timeout,
        );
        let own_health = Arc::new(RwLock::new(NodeHealth::default()));
        let peers = Arc::new(RwLock::new(HashMap::new()));
        let heartbeat_args = heartbeat::Args {
            node: name.to_string(),
            config: config.clone(),
            server: server.clone(),
            membership: membership.clone(),
            events: tx.clone(),
            own_health: own_health.clone(),
            peers,
            dialer: dialer.clone(),
            incarnation,
            leaving: leaving.clone(),
            advertised,
        };
        let own_dialer = dialer.clone();
        let (heartbeat, _) = Actor::spawn(None, heartbeat::Heartbeat, heartbeat_args)
            .await
            .map_err(|e| start_error(e.into()))?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut tasks = vec![
            tokio::spawn(health::sample_forever(own_health, channels.clone(), traffic_name.clone())),
            tokio::spawn(crate::peer_traffic::count_forever(traffic_name.clone())),
        ];
        {
            let (membership, events, node) = (membership.clone(), events.clone(), name.to_string());
            tasks.push(tokio::spawn(async move {
                let mut refusals = RefusalGate::default();
                while let Some(event) = rx.recv().await {
                    let changes = membership.write_or_recover().apply(event);
                    for change in changes {
                        let suppressed = match &change {
                            MembershipEvent::Refused { .. } => match refusals.admit(Instant::now()) {
                                Some(suppressed) => suppressed,
                                None => continue,
                            },
                            _ => 0,
                        };
                        announce(&node, &change, channels.as_ref(), suppressed);
                        let _ = events.send(change);
                    }
                }
            }));
        }
        for seed in config.seeds.iter().copied().filter(|s| *s != config.listen && *s != advertised) {
            let (interval, dialer, events) = (config.reconnect_interval, dialer.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut refused = false;
                loop {
                    match dialer.dial(seed).await {
                        // A TLS refusal is reported once per streak, not every retry.
                        Some(Err(e)) if e.refused => {
                            if !refused {
                                tracing::warn!(%seed, error = %e, "TLS handshake with a seed failed");
                                let _ = events.send(SessionEvent::DialRefused { addr: seed.to_string() });
                            }
                            refused = true;
                        }
                        Some(Err(e)) => tracing::debug!(%seed, error = %e, "seed not reachable yet"),
                        Some(Ok(())) => refused = false,
                        None => {} // up, or just dialled by discovery or a heartbeat
                    }
                    tokio::time::sleep(interval).await;
                }
            }));
        }
        {
            // Members remembered from earlier runs are dialled like seeds, until they are up,
            // leave or are removed (a restarted node with no seeds finds its cluster again).
            let (interval, dialer, membership) =
                (config.reconnect_interval, dialer.clone(), membership.clone());
            let seeds: Vec<String> = config.seeds.iter().map(|s| s.to_string()).collect();
            tasks.push(tokio::spawn(async move {
                loop {
                    let remembered = membership.read_or_recover().remembered_down();
                    for addr in remembered.iter().filter(|a| !seeds.contains(&a.to_string())) {
                        dialer.dial_in_background(*addr, "a member remembered from an earlier run");
                    }
                    tokio::time::sleep(interval).await;
                }
            }));
        }
        if let Some(socket) = gossip {
            let discovery = crate::discovery::run(
                socket,
                config.clone(),
                name.to_string(),
                membership.clone(),
                dialer,
                announced,
            );
            tasks.push(tokio::spawn(discovery));
        }
        tracing::info!(node = %name, listen = %config.listen, gossip = config.gossip, "node started");
        let cluster = Cluster {
            inner: Arc::new(Inner {
                name: name.to_string(),
                listen: config.listen,
                server,
                heartbeat,
                seeds: config.seeds.iter().copied().filter(|s| *s != config.listen).collect(),
                membership,
                events,
                tasks,
                resolver: std::sync::OnceLock::new(),
                max_frame_bytes: config.max_frame_bytes,
                expected_nodes: config.expected_nodes,
                blocked,
                dialer: own_dialer,
                coordinator: std::sync::Mutex::new(None),
                singletons: crate::singleton::Managers::default(),
                leaving,
                events_in: tx,
                incarnation,
                state,
                traffic_name,
            }),
        };
        let (resolver, _) =
            Actor::spawn(None, names::Resolver, cluster.clone()).await.map_err(|e| start_error(e.into()))?;
        let _ = cluster.inner.resolver.set(resolver);
        // Every member grants locks and singleton leases, whether or not it uses them: a
        // majority is counted over all of them. Observers count for nothing and run none.
        if !name.starts_with(crate::singleton::OBSERVER_PREFIX) {
            let coordinator = crate::coordination::NodeCoordinator::start(&cluster)
                .await
                .map_err(|e| start_error(format!("coordinator: {e}").into()))?;
            *cluster.node_coordinator() = Some(coordinator);
        }
        Ok(cluster)
    }

    pub(crate) fn server(&self) -> &ActorRef<NodeServerMessage> {
        &self.inner.server
    }

    pub(crate) fn node_coordinator(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<crate::coordination::NodeCoordinator>> {
        self.inner.coordinator.lock_or_recover()
    }

    pub(crate) fn singleton_managers(&self) -> &crate::singleton::Managers {
        &self.inner.singletons
    }

    /// This node's state directory (`cluster.state_dir`), if it has one (observers do not).
    /// Features that keep files of their own (replicated logs) keep them under it.
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        self.inner.state.as_ref().map(|state| state.dir())
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address this node was configured to listen on, as given (`cluster.listen`): with
    /// port 0 the system picks a port that this does not report, so give nodes that others
    /// dial (seeds) a fixed port.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// Every node this node has seen, up or down (not itself).
    pub fn members(&self) -> Vec<Member> {
        self.inner.membership.read_or_recover().members()
    }

    /// The members a majority is counted over, and how many nodes "known" is: this node, every
    /// member that did not leave on purpose (up or down: a partition's both sides must not both
    /// have a majority) and seeds never reached (a node still joining has no majority of its
    /// own), members remembered in the state directory; and, for [`DEPARTED_STILL_COUNT`] after
    /// they went, nodes that left or were removed (a lease only they recorded has ended before
    /// a smaller majority can grant); and never fewer than `cluster.expected_nodes`. Observers
    /// never count. The one rule for singletons, locks and majority reads and writes.
    pub(crate) fn counted_members(&self) -> (Vec<Member>, usize) {
        let all = self.members();
        let membership = self.inner.membership.read_or_recover();
        let removed_addrs = membership.removed_addrs();
        let unreached = self
            .seeds()
            .iter()
            .map(ToString::to_string)
            .filter(|s| !all.iter().any(|m| m.addr == *s) && !removed_addrs.contains(s))
            .count();
        let recently_removed = membership.recently_removed(DEPARTED_STILL_COUNT);
        let departed_recently = |m: &Member| {
            m.status == crate::MemberStatus::Left && membership.left_within(&m.name, DEPARTED_STILL_COUNT)
        };
        let members: Vec<Member> = all
            .into_iter()
            .filter(|m| {
                !m.name.starts_with(crate::singleton::OBSERVER_PREFIX)
                    && (m.status != crate::MemberStatus::Left || departed_recently(m))
            })
            .collect();
        // Never fewer than the cluster is meant to have: a node that knows few others yet
        // (a first start found by discovery) must not make a majority of its own.
        let known = (members.len() + 1 + unreached + recently_removed).max(self.inner.expected_nodes);
        drop(membership);
        (members, known)
    }

    /// Whether `node` is this node or a member that is up and counts towards majorities: a
    /// grant majority is drawn only from these.
    pub(crate) fn counts_up(&self, node: &str) -> bool {
        node == self.name()
            || (!node.starts_with(crate::singleton::OBSERVER_PREFIX)
                && self.members().iter().any(|m| m.name == node && m.status == MemberStatus::Up))
    }

    /// The node `cell` runs on, by the name its session authenticated (never a name the peer
    /// chose for a group): this node's name for a local actor, `None` if its session is gone.
    pub(crate) fn session_node_of(&self, cell: &ractor::ActorCell) -> Option<String> {
        match cell.get_id() {
            ractor::ActorId::Local(_) => Some(self.name().to_string()),
            ractor::ActorId::Remote { node_id, .. } => {
                self.inner.membership.read_or_recover().node_of_session(node_id).map(str::to_string)
            }
        }
    }

    /// Makes sure the state directory covers the fencing token `token` before a commit is
    /// acknowledged (written about once a minute; `true` without a state directory). `false` if
    /// it could not be written: then the commit is not acknowledged.
    pub(crate) fn cover_token(&self, token: u64) -> bool {
        self.inner.state.as_ref().is_none_or(|state| state.cover_token(token))
    }

    /// Whether this process is the first on its state directory (never without one): its empty
    /// lock table is then the truth, even before it has learned (peers that knew an earlier
    /// process of this node do not take it all the same).
    pub(crate) fn is_fresh(&self) -> bool {
        self.inner.membership.read_or_recover().is_fresh()
    }

    /// The incarnation this node last heard (or remembered) of `node`, if it knows the node.
    pub(crate) fn known_incarnation(&self, node: &str) -> Option<u64> {
        self.members().into_iter().find(|m| m.name == node).map(|m| m.incarnation)
    }

    /// A fencing token above every one this node recorded before it restarted (0 without a
    /// state directory).
    pub(crate) fn remembered_max_token(&self) -> u64 {
        self.inner.state.as_ref().map_or(0, |state| state.reserved_token())
    }

    /// The largest message this node sends to another (`cluster.max_frame_bytes`).
    pub fn max_frame_bytes(&self) -> usize {
        self.inner.max_frame_bytes
    }

    /// Whether sessions with `node` are refused (only ever after `block_peers`, a test hook).
    pub(crate) fn is_blocked(&self, node: &str) -> bool {
        self.inner.blocked.read_or_recover().contains(node)
    }

    /// Test hook (feature `testkit`): cuts this node off from the named nodes, as a network
    /// partition would. Their sessions are closed now, and any new session with them (dialled by
    /// either side) is closed as soon as it authenticates, until [`unblock_all`](Self::unblock_all).
    /// Block on both sides (each side blocks the other), as a real partition cuts both ways:
    /// a node blocked by one side only would be seen going up and down on the other.
    #[cfg(feature = "testkit")]
    pub async fn block_peers(&self, nodes: &[&str]) {
        {
            let mut blocked = self.inner.blocked.write_or_recover();
            blocked.extend(nodes.iter().map(|n| n.to_string()));
        }
        let Ok(sessions) = ractor::call_t!(self.inner.server, NodeServerMessage::GetSessions, 2000) else {
            return;
        };
        for ses in sessions.into_values() {
            let name = ses.peer_name.as_ref().map(|p| crate::membership::node_name(&p.name));
            if name.is_some_and(|n| self.is_blocked(&n)) {
                ses.actor.stop(Some("blocked: partitioned away (test hook)".into()));
            }
        }
    }

    /// Test hook (feature `testkit`): plays a lying peer, sending every other node a leave
    /// notice in `node`'s name. They must not believe it (they check with `node` itself over its
    /// own session). Returns how many nodes were told.
    #[cfg(feature = "testkit")]
    pub async fn forge_leaving(&self, node: &str) -> usize {
        let peers =
            ractor::pg::get_scoped_members(&heartbeat::SCOPE.to_string(), &heartbeat::GROUP.to_string());
        let mut told = 0;
        for cell in peers.into_iter().filter(|c| !c.get_id().is_local()) {
            let peer: ActorRef<HeartbeatMsg> = cell.into();
            let name = node.to_string();
            if peer.call(|reply| HeartbeatMsg::Leaving(name, reply), Some(LEAVE_TIMEOUT)).await.is_ok() {
                told += 1;
            }
        }
        told
    }

    /// Test hook (feature `testkit`): plays a lying peer, telling every other node that a
    /// watcher gave up on `node`. They must not believe it (each pings `node` over its own
    /// session, and only silence there would count). Returns how many nodes were told.
    #[cfg(feature = "testkit")]
    pub async fn forge_suspect(&self, node: &str) -> usize {
        let peers =
            ractor::pg::get_scoped_members(&heartbeat::SCOPE.to_string(), &heartbeat::GROUP.to_string());
        let mut told = 0;
        for cell in peers.into_iter().filter(|c| !c.get_id().is_local()) {
            let peer: ActorRef<HeartbeatMsg> = cell.into();
            if let Ok(notice) =
                crate::wire::Wire::encode(&(node.to_string(), true), self.inner.max_frame_bytes)
                && peer.cast(HeartbeatMsg::Suspect(notice)).is_ok()
            {
                told += 1;
            }
        }
        told
    }

    /// Test hook (feature `testkit`): ends [`block_peers`](Self::block_peers) and dials the
    /// nodes that were blocked (seeds are also redialled by their own loop), so the partition
    /// heals once both sides have unblocked.
    #[cfg(feature = "testkit")]
    pub fn unblock_all(&self) {
        let was: std::collections::BTreeSet<String> =
            std::mem::take(&mut *self.inner.blocked.write_or_recover());
        for member in self.members().into_iter().filter(|m| was.contains(&m.name)) {
            if let Ok(addr) = member.addr.parse::<SocketAddr>() {
                self.inner.dialer.dial_in_background(addr, "healed after a test partition");
            }
        }
    }

    /// This process's incarnation: the Unix time in milliseconds when it started (with a state
    /// directory, always above the previous run's). Peers learn it from heartbeats.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// Removes the node `name` from the cluster for good: it no longer counts among the known
    /// nodes of any majority (singletons, locks, majority reads and writes), here and, by
    /// heartbeat gossip, on every node, including nodes that are down now once they return;
    /// state directories forget it. The process removed (the incarnation last heard of) is
    /// refused if it comes back; a new start of that node joins as usual. Refused for a node
    /// that is up here (stop it first: removing a live node would let two majorities form).
    pub async fn remove_member(&self, name: &str) -> Result<(), ClusterError> {
        let refuse = |reason: String| ClusterError::Remove { name: name.to_string(), reason };
        if name == self.name() {
            return Err(refuse(
                "a node cannot remove itself (stop it, then remove it from another node)".into(),
            ));
        }
        if self.up().iter().any(|n| n == name) {
            return Err(refuse(UP.into()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .events_in
            .send(SessionEvent::Remove { name: name.to_string(), done: tx })
            .map_err(|_| refuse("this node is shutting down".into()))?;
        // Decided by the membership task, where "up" is checked again (it may have connected
        // meanwhile) and a node whose clock runs ahead is refused.
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(refuse(reason)),
            Err(_) => Err(refuse("this node is shutting down".into())),
        }
    }

    /// How many seeds (other than itself) this node was configured with.
    pub fn seed_count(&self) -> usize {
        self.inner.seeds.len()
    }

    /// The seeds (other than itself) this node was configured with.
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.inner.seeds
    }

    /// Names of the nodes up now (not itself).
    pub fn up(&self) -> Vec<String> {
        self.members().into_iter().filter(|m| m.status == MemberStatus::Up).map(|m| m.name).collect()
    }

    /// This node's view of the cluster: itself and every node it has seen, with status, latest
    /// health and time since its last heartbeat.
    pub async fn health(&self) -> ClusterHealth {
        match ractor::call_t!(self.inner.heartbeat, HeartbeatMsg::View, 5000) {
            Ok(view) => view.into_inner().map(|(_, v)| v).unwrap_or_default(),
            Err(_) => ClusterHealth::default(),
        }
    }

    /// Every reachable node's view, merged (see [`ClusterHealth::merge`]): nodes that answer
    /// within `timeout` are up; others carry the worst status their peers report.
    pub async fn cluster_health(&self, timeout: Duration) -> ClusterHealth {
        ClusterHealth::merge(self.node_views(timeout).await)
    }

    /// Each reachable node's own view (this node's included), by the name it reports, as
    /// answered within `timeout`.
    pub async fn node_views(&self, timeout: Duration) -> Vec<(String, ClusterHealth)> {
        let mut calls = tokio::task::JoinSet::new();
        let ms = timeout.as_millis().min(u128::from(u64::MAX)) as u64;
        for member in
            ractor::pg::get_scoped_members(&heartbeat::SCOPE.to_string(), &heartbeat::GROUP.to_string())
        {
            let actor: ActorRef<HeartbeatMsg> = member.into();
            calls.spawn(async move { ractor::call_t!(actor, HeartbeatMsg::View, ms) });
        }
        let mut views = Vec::new();
        while let Some(answer) = calls.join_next().await {
            if let Ok(Ok(view)) = answer
                && let Ok(view) = view.into_inner()
            {
                views.push(view);
            }
        }
        views
    }

    /// Membership changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until at least `n` other nodes are up.
    pub async fn wait_for_members(&self, n: usize, timeout: Duration) -> Result<Vec<String>, ClusterError> {
        let mut events = self.subscribe();
        let wait = async {
            loop {
                let up = self.up();
                if up.len() >= n {
                    return up;
                }
                if let Err(broadcast::error::RecvError::Closed) = events.recv().await {
                    return self.up();
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(up) if up.len() >= n => Ok(up),
            _ => Err(ClusterError::Timeout { wanted: n, up: self.up(), waited: timeout }),
        }
    }

    /// Leaves the cluster: tells every reachable node that this one is leaving (they mark it
    /// `left`, not `down`, and stop counting it among the known nodes), then stops the node
    /// server and the background tasks. A peer that does not answer within
    /// [`LEAVE_TIMEOUT`] sees an ordinary disconnection. Singletons running here are stopped
    /// first and their leases given back, so a survivor starts them without waiting a lease.
    pub async fn shutdown(&self) {
        self.inner.singletons.stop_all(LEAVE_TIMEOUT).await;
        // Before the notices: a peer believes one only once this node's heartbeat confirms it.
        self.inner.leaving.store(true, std::sync::atomic::Ordering::Release);
        let peers =
            ractor::pg::get_scoped_members(&heartbeat::SCOPE.to_string(), &heartbeat::GROUP.to_string());
        let mut told = tokio::task::JoinSet::new();
        for cell in peers.into_iter().filter(|c| !c.get_id().is_local()) {
            let (peer, name): (ActorRef<HeartbeatMsg>, String) = (cell.into(), self.inner.name.clone());
            told.spawn(async move {
                peer.call(|reply| HeartbeatMsg::Leaving(name, reply), Some(LEAVE_TIMEOUT)).await
            });
        }
        told.join_all().await;
        for task in &self.inner.tasks {
            task.abort();
        }
        let _ = self.inner.heartbeat.get_cell().stop_and_wait(None, Some(Duration::from_secs(5))).await;
        if let Some(resolver) = self.inner.resolver.get() {
            resolver.stop(None);
        }
        let coordinator = self.node_coordinator().take();
        if let Some(coordinator) = coordinator {
            coordinator.supervisor.stop().await;
        }
        let _ = self.inner.server.get_cell().stop_and_wait(None, Some(Duration::from_secs(5))).await;
        // the last of the traffic (the task counting it every second was stopped above)
        crate::peer_traffic::count(&self.inner.traffic_name);
    }
}

/// Lets refusals through at a bounded rate: anyone who can reach the port can cause one per
/// connection, and each costs a log line, a control-channel event and an event to every
/// subscriber. Beyond [`RefusalGate::PER_WINDOW`] in a [`RefusalGate::WINDOW`] they are only
/// counted (`foundation_cluster_refused_total`, by the node server), and the next one let
/// through says how many were held back.
#[derive(Default)]
struct RefusalGate {
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl RefusalGate {
    const WINDOW: Duration = Duration::from_secs(10);
    const PER_WINDOW: u32 = 10;

    /// `Some(held back since the last one let through)`, or `None` to hold this one back.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.window_start.is_none_or(|start| now.duration_since(start) >= Self::WINDOW) {
            self.window_start = Some(now);
            self.passed = 0;
        }
        if self.passed >= Self::PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.passed += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn announce(node: &str, change: &MembershipEvent, channels: Option<&Channels>, suppressed: u64) {
    let (kind, data) = match change {
        MembershipEvent::Up { name, addr } => {
            tracing::info!(%node, peer = %name, %addr, "node up");
            ("node_up", serde_json::json!({ "node": name, "addr": addr }))
        }
        MembershipEvent::Reconnected { name, addr } => {
            tracing::info!(%node, peer = %name, %addr, "node reconnected (its connection was replaced by another)");
            ("node_reconnected", serde_json::json!({ "node": name, "addr": addr }))
        }
        MembershipEvent::Down { name, reason } => {
            tracing::warn!(%node, peer = %name, %reason, "node down");
            ("node_down", serde_json::json!({ "node": name, "reason": reason }))
        }
        MembershipEvent::Unreachable { name, phi } => {
            tracing::warn!(%node, peer = %name, phi, "node unreachable");
            ("node_unreachable", serde_json::json!({ "node": name, "phi": phi }))
        }
        MembershipEvent::Left { name } => {
            tracing::info!(%node, peer = %name, "node left");
            ("node_left", serde_json::json!({ "node": name }))
        }
        MembershipEvent::Removed { name } => {
            tracing::warn!(%node, peer = %name, "node removed from the cluster for good");
            ("node_removed", serde_json::json!({ "node": name }))
        }
        MembershipEvent::Refused { peer_addr, peer_name } => {
            tracing::warn!(%node, %peer_addr, ?peer_name, suppressed, "refused a connection that did not authenticate");
            (
                "node_refused",
                serde_json::json!({ "peer_addr": peer_addr, "peer_name": peer_name, "suppressed_before": suppressed }),
            )
        }
    };
    metrics::counter!("foundation_cluster_membership_events_total", "kind" => kind).increment(1);
    if let Some(channels) = channels {
        let _ = channels.publish(&channels::control(), SystemEvent::new(kind, node).with_data(data));
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.inner.name).field("listen", &self.inner.listen).finish()
    }
}
