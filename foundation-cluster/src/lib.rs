//! Turning Foundation nodes into a cluster, on `ractor_cluster`.
//!
//! Built so far: [`Cluster::start`] (listen address, cookie authentication, seeds that are
//! reconnected whenever they are not up, membership from connection events, `node_up` /
//! `node_down` / `node_refused` on the control channel), the [`wire`] adapter (bincode behind
//! `BytesConvertable`, oversized messages refused before sending, undecodable frames counted),
//! and, behind the `testkit` feature, [`testkit`] for tests that launch real node processes.
//!
//! Failure detection: [`heartbeat`]s every `cluster.heartbeat_interval` and a [`phi`]-accrual
//! detector per peer; a peer over `cluster.phi_threshold` is declared unreachable and its
//! connection closed, so a frozen node (SIGSTOP, TCP still open) is marked down, not only a
//! killed one.
//!
//! Health: every node samples its load, CPU, memory and runtime lag and sends them with its
//! heartbeats; [`Cluster::health`] is one node's view, [`Cluster::cluster_health`] merges every
//! reachable node's view.
//!
//! Singletons: [`Cluster::start_singleton`] runs an actor on exactly one node of a connected
//! majority and restarts it on a survivor when its node is lost (see [`singleton`]).
//!
//! Names: [`Cluster::register_name`] / [`Cluster::whereis`], unique across the cluster, with a
//! documented rule for names held twice after a partition heals (see [`names`]).
//!
//! Not built yet (issue 4): discovery beyond seeds, replicated actors, cluster-wide channels and services, actor counts and mailbox depths in
//! health, TLS.
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
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod discovery;
pub mod health;
pub mod heartbeat;
mod membership;
pub mod names;
mod node;
pub mod phi;
pub mod replicated;
pub mod singleton;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls;
/// The wire adapter, shared with foundation-actors (whose channels and registry cross nodes too).
pub use foundation_actors::wire;

pub use membership::{Member, MemberStatus, MembershipEvent};
pub use names::NameError;
pub use node::{Cluster, ClusterError, LEAVE_TIMEOUT};
pub use replicated::ReplicatedHandle;
pub use singleton::{SingletonEvent, SingletonHandle};
