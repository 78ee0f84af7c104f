//! Traffic per peer as metrics: frames and bytes this node sent to and received from each peer,
//! and messages refused before sending (over the frame limit).
//!
//! The counts are the fork's, per session (`ractor_cluster::session_traffic`, patch 14: frames
//! as written and read whole, length words and envelopes included); a task adds what each
//! session counted since the last look to the peer's counters every [`EVERY`], so a scrape sees
//! them at most that late. A session's final counts are added once it ended (on the next look),
//! so a peer's counters never go back when it reconnects. Peers are the names their sessions
//! authenticated (as membership has them), capped like every peer label
//! (`foundation_core::telemetry::bounded_label`).

use std::collections::HashMap;
use std::time::Duration;

use foundation_core::telemetry::bounded_label;
use ractor_cluster::SessionTraffic;

/// How often the sessions' counts are added to the metrics.
pub const EVERY: Duration = Duration::from_secs(1);

/// Adds the counts of the sessions of `node` (ractor_cluster's `name@host` of this node) to the
/// metrics every [`EVERY`], forever.
pub(crate) async fn count_forever(node: String) {
    let mut last = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        count(ractor_cluster::session_traffic(&node), &mut last);
    }
}

/// Adds what each session counted since `last` (by session), and remembers the new counts.
fn count(sessions: Vec<SessionTraffic>, last: &mut HashMap<u64, SessionTraffic>) {
    for now in sessions {
        let before = last.get(&now.node_id);
        let since = |of: fn(&SessionTraffic) -> u64| of(&now).saturating_sub(before.map_or(0, of));
        // the session's `name@host`, as membership names the node
        let peer = bounded_label("peer", &crate::membership::node_name(&now.peer));
        metrics::counter!("foundation_cluster_peer_sent_frames_total", "peer" => peer.clone())
            .increment(since(|s| s.sent_frames));
        metrics::counter!("foundation_cluster_peer_sent_bytes_total", "peer" => peer.clone())
            .increment(since(|s| s.sent_bytes));
        metrics::counter!("foundation_cluster_peer_received_frames_total", "peer" => peer.clone())
            .increment(since(|s| s.received_frames));
        metrics::counter!("foundation_cluster_peer_received_bytes_total", "peer" => peer.clone())
            .increment(since(|s| s.received_bytes));
        metrics::counter!("foundation_cluster_peer_refused_messages_total", "peer" => peer)
            .increment(since(|s| s.refused_messages));
        if now.ended {
            last.remove(&now.node_id);
        } else {
            last.insert(now.node_id, now);
        }
    }
}
