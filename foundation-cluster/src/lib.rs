//! Turning Foundation nodes into a cluster, on `ractor_cluster`.
//!
//! - **Nodes**: [`Cluster::start`] (listen address, cookie authentication, optional mutual TLS
//!   from `[cluster.tls]` with certificates that name their node ([`node_certificate_name`]), a
//!   frame limit), seeds reconnected whenever they are not up, and
//!   zero-config discovery by UDP multicast (`cluster.gossip`, `foundation node --cluster`).
//!   Membership comes from connection events; `node_up`, `node_reconnected`, `node_down`,
//!   `node_unreachable`, `node_left`, `node_removed` and `node_refused` go on the control channel. [`Cluster::shutdown`] leaves
//!   gracefully (peers mark the node `left`).
//! - **Failure detection**: [`heartbeat`]s every `cluster.heartbeat_interval` and a
//!   [`phi`]-accrual detector per peer; a peer over `cluster.phi_threshold` is declared
//!   unreachable and its connection closed, so a frozen node (SIGSTOP, TCP still open) is
//!   marked down, not only a killed one.
//! - **Health**: every node samples load, CPU, memory, actors, tasks, queue depths and runtime
//!   lag and sends them with its heartbeats; [`Cluster::health`] is one node's view,
//!   [`Cluster::cluster_health`] merges every reachable node's view.
//! - **Singletons**: [`SingletonHandle::start`] runs an actor on exactly one of the nodes
//!   that declared it, under a lease granted by a majority (never two copies at once), and
//!   restarts it on another when its node is lost ([`singleton`]).
//! - **Restarts and removal**: with a state directory (`cluster.state_dir`) a node remembers
//!   the members it has known, so a restarted node never forms a majority alone;
//!   [`Cluster::remove_member`] forgets a node stopped for good, on every node.
//! - **Per-node actors**: [`PerNodeHandle::start`], one supervised replica on every node that asks,
//!   visible cluster-wide ([`per_node`]).
//! - **Budgets**: [`BudgetHandle::start`] holds a provider's rate limits for the cluster as a
//!   whole: each node's limiter runs on a share leased from a keeper singleton, shares follow
//!   demand and a lost node's share comes back when its lease expires ([`budget`]).
//! - **Names**: [`Cluster::register_name`] / [`Cluster::whereis`], unique across the cluster,
//!   with a documented rule for names held twice after a partition heals ([`names`]).
//! - **Channels and services across nodes** come from foundation-actors itself: a
//!   [cluster-wide topic](foundation_actors::channels::Topic::cluster_wide) reaches every node's
//!   subscribers, and a [`ServiceRegistry`](foundation_actors::registry::ServiceRegistry) sees
//!   the services of every connected node; pass the node's `Channels` to [`Cluster::start`] so
//!   its frame limit applies to broadcasts.
//! - **Replicated CRDT state**: [`Replicator::start`], counters, sets, registers and
//!   maps that every node reads and writes locally or with a majority, replicated at once and by
//!   anti-entropy gossip, converging after a partition heals ([`crdt_state`]).
//! - **Cluster cache**: [`SharedCacheHandle::start`], each key kept by one owner node chosen
//!   by consistent hashing over the nodes running the cache, with an optional near cache; a lost
//!   owner's keys read as misses ([`shared_cache`]).
//! - **Coordination**: [`Coordination::start`], a lock with a lease and a fencing
//!   token granted by a majority, leader election, barriers, and contract-net task allocation
//!   that re-announces a task whose winner is lost ([`coordination`]).
//! - **Usage across the cluster** (feature `llm`): `cluster_usage::ClusterLedger`, every node's
//!   model usage and cost ledger summed on request, naming the nodes that did not answer.
//! - **Conversations** (feature `agents`): `conversations::Conversations::start`, agents'
//!   conversations kept in a replicated log by a keeper singleton, so that an agent restarted
//!   anywhere resumes its conversation (`AgentSpec::durable`).
//! - **Flow control** for bulk senders: [`flow::ready_to_send`] waits while the connection to an
//!   actor's node has more than 1 MiB queued, as Erlang's busy distribution buffer does.
//! - The [`wire`] adapter (bincode behind `BytesConvertable`, oversized messages refused before
//!   sending, undecodable frames counted) and, behind the `testkit` feature, `testkit` for
//!   tests that launch real node processes.
//!
//! What each feature guarantees, and what it does not, is in `docs/semantics.md`.
//!
//! ```no_run
//! use foundation_cluster::Cluster;
//! use foundation_core::config::ClusterConfig;
//!
//! # async fn run() -> Result<(), foundation_cluster::ClusterError> {
//! let config = ClusterConfig { seeds: vec!["127.0.0.1:4101".parse().unwrap()], ..Default::default() };
//! let node = Cluster::start("n2", &config, None).await?;
//! node.wait_for_members(1, std::time::Duration::from_secs(5)).await?;
//! println!("up: {:?}", node.up());
//! # Ok(())
//! # }
//! ```

pub mod budget;
pub mod cluster_metrics;
#[cfg(feature = "llm")]
pub mod cluster_usage;
#[cfg(feature = "agents")]
pub mod conversations;
pub mod coordination;
pub mod crdt_state;
mod dial;
mod discovery;
pub mod flow;
pub mod health;
pub mod heartbeat;
mod membership;
pub mod metric_catalog;
pub mod names;
mod node;
pub mod peer_traffic;
pub mod per_node;
mod pg_nodes;
pub mod phi;
pub mod replicated_log;
pub mod shared_cache;
pub mod singleton;
mod state;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls;
pub use budget::{BudgetConfig, BudgetHandle};
/// Raw bytes between nodes, not copied (foundation-actors' `blob`).
pub use foundation_actors::blob;
/// The wire adapter, shared with foundation-actors (whose channels and registry cross nodes too).
pub use foundation_actors::wire;

pub use membership::{Member, MemberStatus, MembershipEvent};
pub use names::NameError;
pub use node::{Cluster, ClusterError, DEPARTED_STILL_COUNT, LEAVE_TIMEOUT};
pub use per_node::PerNodeHandle;
pub use shared_cache::{SharedCacheConfig, SharedCacheHandle};
pub use singleton::{SingletonEvent, SingletonHandle};
/// The names certificates must carry under `[cluster.tls]` (a node's own, the tools' wildcard).
pub use tls::{node_certificate_name, tools_certificate_name};
