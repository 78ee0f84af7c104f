//! The metric families `foundation-cluster` records, for [`Telemetry::describe`]
//! (see [`foundation_core::telemetry::catalog`]); [`all`] adds those of the crates below it.
//!
//! ```
//! use foundation_core::config::TelemetryConfig;
//! use foundation_core::Telemetry;
//!
//! let telemetry = Telemetry::new(&TelemetryConfig::default())?;
//! telemetry.describe(foundation_cluster::metric_catalog::all());
//! # Ok::<(), foundation_core::telemetry::TelemetryError>(())
//! ```
//!
//! [`Telemetry::describe`]: foundation_core::Telemetry::describe

use foundation_core::telemetry::catalog::MetricFamily;
use metrics::Unit;

/// Every family of `foundation-core`, `foundation-actors` and this crate.
pub fn all() -> impl Iterator<Item = &'static MetricFamily> {
    foundation_core::telemetry::catalog::FAMILIES
        .iter()
        .chain(foundation_actors::metric_catalog::FAMILIES)
        .chain(FAMILIES)
}

/// Every family this crate records: name, kind, unit and help text.
pub const FAMILIES: &[MetricFamily] = &[
    MetricFamily::gauge(
        "foundation_budget_share",
        "This node's share of a cluster-wide rate budget (0 to 1), by budget.",
    ),
    MetricFamily::counter(
        "foundation_cache_unreachable_total",
        "Lookups (answered as misses) and puts (refused) in a shared cache whose owner node did not answer, by cache.",
    ),
    MetricFamily::gauge(
        "foundation_cluster_phi",
        "Suspicion (phi) of the failure detector for a watched peer: past the configured threshold the peer is unreachable; by peer.",
    ),
    MetricFamily::histogram(
        "foundation_cluster_heartbeat_rtt_seconds",
        "Round trip of an answered heartbeat ping (the fork's control lane, both ways), by peer.",
    )
    .in_unit(Unit::Seconds),
    MetricFamily::counter(
        "foundation_cluster_membership_events_total",
        "Membership changes this node saw (up, down, unreachable, refused, ...), by kind.",
    ),
    MetricFamily::counter(
        "foundation_cluster_peer_sent_frames_total",
        "Frames (casts, calls, replies and the sessions' own messages) written to a peer, by peer.",
    ),
    MetricFamily::counter("foundation_cluster_peer_sent_bytes_total", "Bytes of the frames written to a peer, by peer.")
        .in_unit(Unit::Bytes),
    MetricFamily::counter("foundation_cluster_peer_received_frames_total", "Frames read whole from a peer, by peer."),
    MetricFamily::counter(
        "foundation_cluster_peer_received_bytes_total",
        "Bytes of the frames read from a peer, by peer.",
    )
    .in_unit(Unit::Bytes),
    MetricFamily::counter(
        "foundation_cluster_peer_refused_messages_total",
        "Messages to a peer refused before sending because they were larger than a frame may be, by peer.",
    ),
    MetricFamily::counter(
        "foundation_cluster_refused_total",
        "Connections or handshakes this node refused, by reason.",
    ),
    MetricFamily::counter(
        "foundation_contract_net_awards_total",
        "Tasks awarded to a bidder by contract net.",
    ),
    MetricFamily::counter(
        "foundation_contract_net_bids_refused_total",
        "Contract-net bids refused for a cost that is not a finite, non-negative number.",
    ),
    MetricFamily::counter(
        "foundation_contract_net_reannounced_total",
        "Contract-net tasks announced again because their winner was lost.",
    ),
    MetricFamily::counter(
        "foundation_crdt_consistency_failures_total",
        "CRDT reads or writes that did not reach the majority they asked for, by op.",
    ),
    MetricFamily::counter("foundation_crdt_dropped_total", "CRDT keys or values not replicated, by reason."),
    MetricFamily::counter(
        "foundation_crdt_gossip_bytes_total",
        "Bytes of CRDT gossip prepared for sending (counted before each message is sent), by kind (digests or values).",
    )
    .in_unit(Unit::Bytes),
    MetricFamily::counter("foundation_crdt_gossip_rounds_total", "CRDT gossip rounds this node started."),
    MetricFamily::gauge("foundation_crdt_keys", "Keys in this node's CRDT store."),
    MetricFamily::counter("foundation_crdt_merges_total", "CRDT values merged from another node's gossip."),
    MetricFamily::counter(
        "foundation_crdt_type_conflicts_total",
        "CRDT keys created with two different types on two nodes (the first kind is kept).",
    ),
    MetricFamily::counter(
        "foundation_crdt_writes_total",
        "CRDT writes, by consistency asked (local or majority).",
    ),
    MetricFamily::counter(
        "foundation_gossip_ignored_total",
        "Discovery announcements ignored (another cluster, a bad signature, a replay, ...), by reason.",
    ),
    MetricFamily::counter("foundation_lock_acquired_total", "Cluster locks acquired by this node."),
    MetricFamily::counter(
        "foundation_lock_grants_total",
        "Lease requests this node's coordinator answered as a granting node, by outcome (granted, renewed, held by another owner, lapsed, not ready).",
    ),
    MetricFamily::counter(
        "foundation_lock_lost_total",
        "Cluster locks this node lost because their lease could not be renewed.",
    ),
    MetricFamily::counter(
        "foundation_names_conflicts_total",
        "Duplicate holders of a cluster name stopped on this node after a partition healed.",
    ),
    MetricFamily::gauge("foundation_node_actors", "Actors running on this node."),
    MetricFamily::counter("foundation_singleton_starts_total", "Times a cluster singleton started on this node, by singleton."),
    MetricFamily::counter(
        "foundation_singleton_stops_total",
        "Times a cluster singleton stopped on this node (handed over, lease lost, node leaving), by singleton.",
    ),
    MetricFamily::gauge(
        "foundation_node_channel_queued",
        "Messages queued in this node's channel topics for subscribers not yet served.",
    ),
    MetricFamily::gauge("foundation_node_memory_bytes", "Resident memory of this node's process.")
        .in_unit(Unit::Bytes),
    MetricFamily::gauge(
        "foundation_node_runtime_lag_seconds",
        "How late a timer on this node's runtime fired: a measure of a busy or blocked runtime.",
    )
    .in_unit(Unit::Seconds),
    MetricFamily::gauge("foundation_node_tasks", "Tasks alive on this node's runtime."),
];
