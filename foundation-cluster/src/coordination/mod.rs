//! Cluster-wide coordination: a distributed lock with a lease and a fencing token, leader
//! election, barriers, and contract-net task allocation.
//!
//! Every node runs a coordinator from [`Cluster::start`] (a supervised, remotable actor in the pg
//! group `coordinator@NODE`, scope [`SCOPE`]; observers excepted): it grants the other nodes'
//! locks and the leases of [singletons](crate::singleton). [`Coordination::start`]
//! returns a [`Coordination`] handle on it, whose locks use the given [`CoordinationConfig`].
//!
//! - **Locks** ([`Coordination::lock`]): granted by a majority of the cluster's known nodes
//!   (the rule singletons use: down nodes count, so two sides of a partition cannot both grant
//!   one). Each grant is a lease; the holder keeps it alive in the background and learns
//!   through [`LockGuard::lost`] if it could not. Every acquisition gets a **fencing token**
//!   larger than every token granted before it for that lock: pass it to the resource you
//!   protect and have it refuse smaller tokens, so a holder that was paused past its lease
//!   cannot do harm.
//! - **Leader election** ([`Coordination::elect`]): candidates campaign for a lock; the holder
//!   leads, its fencing token is the **term**.
//! - **Barriers** ([`Coordination::barrier`]): `wait` returns once the given number of
//!   participants, on any nodes, have arrived.
//! - **Contract net** ([`Coordination::serve_bids`], [`Coordination::allocate`]): a task is
//!   announced to the bidders of a capability, bids are collected within a deadline, the
//!   cheapest bidder is awarded it and runs it; if the winner is lost, the task is announced
//!   again.
//!
//! ```no_run
//! use foundation_cluster::Cluster;
//! use foundation_cluster::coordination::{Coordination, CoordinationConfig};
//! use foundation_core::config::ClusterConfig;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Cluster::start("n1", &ClusterConfig::default(), None).await?;
//! let coordination = Coordination::start(&node, CoordinationConfig::default()).await?;
//!
//! let guard = coordination.lock("reindex", Duration::from_secs(10)).await?;
//! println!("holding reindex with fencing token {}", guard.token());
//! guard.release().await;
//!
//! let barrier = coordination.barrier("phase-1", 3);
//! barrier.wait(Duration::from_secs(30)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! What each primitive guarantees under node loss and partitions is in `docs/semantics.md`
//! ("Coordination").

mod barrier;
mod contract_net;
mod coordinator;
mod election;
mod lock;

use std::sync::Arc;
use std::time::Duration;

use foundation_actors::supervision::{ChildSpec, Strategy, Supervisor, SupervisorHandle, SupervisorSpec};

pub use barrier::{Barrier, BarrierPassed};
pub use contract_net::{AllocateOptions, Awarded, Bidder, BidderHandle, Task};
pub use coordinator::SCOPE;
pub use election::{Election, Leadership};
pub use lock::LockGuard;

use crate::Cluster;
use coordinator::{CoordinatorActor, Shared};

/// Default [`CoordinationConfig::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
/// Default [`CoordinationConfig::max_lease`], and the longest lease any node's coordinator
/// grants: a restarted node that cannot read enough other nodes' tables grants again this long
/// after it started (every lease it granted before it restarted has ended by then).
pub const DEFAULT_MAX_LEASE: Duration = Duration::from_secs(10);
/// Default [`CoordinationConfig::call_timeout`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// What a [`Coordination`] handle's locks ask for. The grant side (every node's coordinator)
/// grants leases of at most [`DEFAULT_MAX_LEASE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinationConfig {
    /// Lease of elections' locks (a lost leader is replaced within about this long). Default
    /// [`DEFAULT_LEASE`].
    pub lease: Duration,
    /// Longest lease this handle asks for (longer requests get this). Default and upper
    /// bound [`DEFAULT_MAX_LEASE`]: no node grants longer.
    pub max_lease: Duration,
    /// How long one request to another node's coordinator may take. Default
    /// [`DEFAULT_CALL_TIMEOUT`].
    pub call_timeout: Duration,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            lease: DEFAULT_LEASE,
            max_lease: DEFAULT_MAX_LEASE,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// Why a coordination call failed. Every variant says what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoordinationError {
    /// The configuration is unusable.
    #[error("invalid coordination config: {0}")]
    Config(String),
    /// A lock was not acquired in time.
    #[error(
        "lock `{name}` not acquired within {waited:?}: {}",
        match holder { Some(h) => format!("held by {h}"), None => format!("no majority granted it ({granted} of {needed} nodes needed, {known} known)") }
    )]
    LockTimeout {
        /// The lock.
        name: String,
        /// Who held it at the last attempt, if a node said.
        holder: Option<String>,
        /// Nodes that granted it at the last attempt (this one included).
        granted: usize,
        /// Nodes needed.
        needed: usize,
        /// Nodes the majority is counted over.
        known: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// A barrier did not fill in time.
    #[error("barrier `{name}` did not fill within {waited:?}: {arrived} of {parties} participants arrived")]
    BarrierTimeout {
        /// The barrier.
        name: String,
        /// Participants needed.
        parties: usize,
        /// Participants that had arrived (and were alive).
        arrived: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// Nobody bid for a task within the bid window (in every round).
    #[error("task {task} for capability `{capability}`: no bids in {rounds} round(s) of {window:?}")]
    NoBids {
        /// The task's id.
        task: String,
        /// The capability asked for.
        capability: String,
        /// Rounds announced.
        rounds: u32,
        /// Each round's bid window.
        window: Duration,
    },
    /// Every winner was lost (or timed out) and the rounds ran out.
    #[error(
        "task {task} for capability `{capability}`: awarded {rounds} time(s), every winner was lost ({last})"
    )]
    WinnersLost {
        /// The task's id.
        task: String,
        /// The capability asked for.
        capability: String,
        /// Rounds that awarded it.
        rounds: u32,
        /// What happened to the last winner.
        last: String,
    },
    /// The winner ran the task and it failed (not retried: the bidder said so itself).
    #[error("task {task} failed on {node}: {source}")]
    TaskFailed {
        /// The task's id.
        task: String,
        /// The node that ran it.
        node: String,
        /// The bidder's error (as its message: it crossed from the node that ran the task).
        #[source]
        source: foundation_core::Cause,
    },
    /// A value did not go on the wire (too large for the frame limit, or not encodable).
    #[error("{what}: {source}")]
    Wire {
        /// What was being sent.
        what: String,
        /// Why (the underlying error).
        #[source]
        source: foundation_core::Cause,
    },
    /// The coordinator is not running (the underlying error, or why not).
    #[error("the coordinator is not running: {0}")]
    Stopped(#[source] foundation_core::Cause),
}

/// This node's coordinator: locks, elections, barriers and task allocation. Cheap to clone.
#[derive(Clone)]
pub struct Coordination {
    shared: Arc<Shared>,
    /// What this handle's locks ask for (leases, call timeouts).
    config: CoordinationConfig,
}

/// The coordinator every node runs from [`Cluster::start`] (it grants other nodes' locks and
/// singleton leases whether or not this node uses coordination itself), and its supervisor.
pub(crate) struct NodeCoordinator {
    pub(crate) shared: Arc<Shared>,
    pub(crate) supervisor: SupervisorHandle,
}

impl NodeCoordinator {
    /// Starts this node's coordinator with the node's grant rules ([`CoordinationConfig::default`]:
    /// leases of at most [`DEFAULT_MAX_LEASE`]).
    pub(crate) async fn start(cluster: &Cluster) -> Result<Self, CoordinationError> {
        let shared = Arc::new(Shared::new(cluster.clone(), CoordinationConfig::default()));
        let spec = {
            let shared = shared.clone();
            ChildSpec::new("coordinator", move || (CoordinatorActor, shared.clone()))
        };
        let supervisor =
            Supervisor::start("coordination", SupervisorSpec::new(Strategy::OneForOne).child(spec))
                .await
                .map_err(|e| CoordinationError::Stopped(foundation_core::Cause::new(e)))?;
        barrier::watch_members(shared.clone());
        Ok(NodeCoordinator { shared, supervisor })
    }
}

impl Coordination {
    /// This node's name.
    pub fn node(&self) -> &str {
        self.shared.cluster.name()
    }

    /// Whether this node grants locks yet: a node that starts first reads the tables of enough
    /// other nodes to know every lease running and the largest token (see `docs/semantics.md`).
    pub fn ready(&self) -> bool {
        self.shared.is_ready()
    }

    /// A handle on this node's coordinator whose locks use `config`.
    pub(crate) fn with(shared: Arc<Shared>, config: CoordinationConfig) -> Self {
        Coordination { shared, config }
    }
}

impl Cluster {
    /// This node's coordinator, unless it is an observer or shut down.
    pub(crate) fn coordinator(&self) -> Option<Arc<Shared>> {
        self.node_coordinator().as_ref().map(|c| c.shared.clone())
    }
}

impl Coordination {
    /// A handle on this node's coordinator (see [`coordination`](crate::coordination)), whose
    /// locks and elections use `config`'s lease and call timeout. Every node runs its
    /// coordinator from [`Cluster::start`] (it grants the other nodes' locks and singleton
    /// leases), so this starts nothing; a lease longer than a granting node's
    /// [`DEFAULT_MAX_LEASE`] is cut to it, and the holder counts on what was granted.
    pub async fn start(
        cluster: &Cluster,
        config: CoordinationConfig,
    ) -> Result<Coordination, CoordinationError> {
        let error = CoordinationError::Config;
        if config.lease.is_zero() || config.lease > config.max_lease {
            return Err(error(format!(
                "lease must be positive and at most max_lease ({:?} > {:?})",
                config.lease, config.max_lease
            )));
        }
        if config.call_timeout.is_zero() {
            return Err(error("call_timeout must be positive".into()));
        }
        let shared = cluster.coordinator().ok_or_else(|| {
            let reason = format!("node `{}` runs no coordinator (an observer, or shut down)", cluster.name());
            CoordinationError::Stopped(reason.into())
        })?;
        Ok(Coordination::with(shared, config))
    }
}

/// What tells this process's owners, participants and tasks from those of an earlier process
/// of the same node (which may still be paused somewhere): random, drawn once per process.
fn incarnation() -> u64 {
    static INCARNATION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INCARNATION.get_or_init(|| foundation_core::random::next_u64() & 0xffff_ffff)
}

/// The number of nodes that make a majority of `known` nodes.
fn majority_of(known: usize) -> usize {
    known / 2 + 1
}
