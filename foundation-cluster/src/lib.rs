//! Turning Foundation nodes into a cluster, on `ractor_cluster`: node start with cookie and TLS,
//! discovery, membership and failure detection, singletons with failover, per-node replicated
//! actors, a distributed registry on process groups, cluster-wide channels, replicated CRDT
//! state and cluster health.
//!
//! Not built yet: this crate is planned in the project's issue 4 (cluster).
//! It depends on `foundation-core` and `foundation-actors`.
