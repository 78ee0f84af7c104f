//! Every `ractor::pg` scope Foundation uses, in one place: a scope is a namespace of process
//! groups shared by every connected node, so two features must never pick the same one. Each
//! feature's own `SCOPE` constant is one of these; a test checks that they are all different.
//!
//! Groups inside a scope are named by the feature (`NAME@NODE` for one actor per node, a topic,
//! a service...); see each feature's module docs.

/// Channel relays: a group per topic (`foundation_actors::channels`).
pub const CHANNELS: &str = "foundation.channels";
/// Service instances and registry gateways (`foundation_actors::registry`).
pub const SERVICES: &str = "foundation.services";
/// Heartbeat actors, one per node (`foundation_cluster::heartbeat`).
pub const CLUSTER: &str = "foundation.cluster";
/// Singleton holders, `NAME@NODE` (`foundation_cluster::singleton`).
pub const SINGLETONS: &str = "foundation.singletons";
/// Singleton candidates, `NAME@NODE`: the nodes that declared a singleton.
pub const SINGLETON_CANDIDATES: &str = "foundation.singleton_candidates";
/// Replicated actors' markers, `NAME@NODE` (`foundation_cluster::replicated`).
pub const REPLICATED: &str = "foundation.replicated";
/// Distributed names, one group per name (`foundation_cluster::names`).
pub const NAMES: &str = "foundation.names";
/// Budget keepers (`foundation_cluster::budget`).
pub const BUDGETS: &str = "foundation.budgets";
/// CRDT replicators, `NAME@NODE` (`foundation_cluster::crdt_state`).
pub const CRDT: &str = "foundation.crdt";
/// Parts of the cluster cache, `NAME@NODE` (`foundation_cluster::shared_cache`).
pub const SHARED_CACHE: &str = "foundation.shared_cache";
/// Coordinators (`coordinator@NODE`) and contract-net bidders (`foundation_cluster::coordination`).
pub const COORDINATION: &str = "foundation.coordination";
/// Trace participants, one per node (`scope_tracer::participant`).
pub const TRACER: &str = "scope.tracer";
/// Replicated logs' replicas (`foundation_cluster::replicated_log`).
pub const LOGS: &str = "foundation.logs";
/// The conversation keeper (`foundation_cluster::conversations`).
pub const CONVERSATIONS: &str = "foundation.conversations";
/// Usage ledgers shared with the cluster, `ledger@NODE` (`foundation_cluster::cluster_usage`).
pub const LEDGERS: &str = "foundation.ledgers";
/// Nodes' histogram readings shared with the cluster, `metrics@NODE`
/// (`foundation_cluster::cluster_metrics`).
pub const METRICS: &str = "foundation.metrics";
/// Distributed optimization runs' coordinators (`dspex_optimizer::distributed`).
pub const RUNS: &str = "dspex.runs";
/// The `foundation` command's trace hop actors (`foundation node --trace-rate`).
pub const HOPS: &str = "scope.hops";

/// Every scope above.
pub const ALL: &[&str] = &[
    CHANNELS,
    SERVICES,
    CLUSTER,
    SINGLETONS,
    SINGLETON_CANDIDATES,
    REPLICATED,
    NAMES,
    BUDGETS,
    CRDT,
    SHARED_CACHE,
    COORDINATION,
    LOGS,
    CONVERSATIONS,
    LEDGERS,
    METRICS,
    TRACER,
    RUNS,
    HOPS,
];

#[cfg(test)]
mod tests {
    #[test]
    fn no_two_features_share_a_scope() {
        let mut all = super::ALL.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), super::ALL.len(), "a scope is used twice: {:?}", super::ALL);
    }
}
