//! Turning Foundation nodes into a cluster, on `ractor_cluster`.
//!
//! Built so far: [`Cluster::start`] (listen address, cookie authentication, seeds that are
//! reconnected whenever they are not up, membership from connection events, `node_up` /
//! `node_down` / `node_refused` on the control channel), the [`wire`] adapter (bincode behind
//! `BytesConvertable`, oversized messages refused before sending, undecodable frames counted),
//! and, behind the `testkit` feature, [`testkit`] for tests that launch real node processes.
//!
//! Not built yet (issue 4): discovery beyond seeds, heartbeat failure detection (today a node is
//! down when its TCP connection closes, so a frozen node is not detected), the distributed
//! registry, singletons, replicated actors, cluster-wide channels and services, health, TLS.
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

mod membership;
mod node;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wire;

pub use membership::{Member, MemberStatus, MembershipEvent};
pub use node::{Cluster, ClusterError};
