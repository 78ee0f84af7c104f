//! Traffic per peer as metrics: frames and bytes this node sent to and received from each peer,
//! and messages refused before sending (over the frame limit).
//!
//! The counts are the fork's (`ractor_cluster::peer_traffic`, patch 14): totals per peer over
//! every session with it since the process started (frames as written and read whole once the
//! session authenticated and won its election, length words and envelopes included), so they
//! never go back when a peer reconnects or this node restarts in the same process under the same
//! name and address. The counters carry no node label: a process runs one node (several in one
//! process, as in tests, write the same series, and the largest total shows). A task sets the counters to them
//! every [`EVERY`] (a scrape sees them at most that late), and [`Cluster::shutdown`] once more at
//! the end. Peers are labelled by [`peer_label`]: the names their sessions authenticated (as
//! membership has them), observers together as `observer`, all capped like every peer label.
//!
//! [`Cluster::shutdown`]: crate::Cluster::shutdown

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::telemetry::bounded_label;

/// How often the totals are copied into the metrics.
pub const EVERY: Duration = Duration::from_secs(1);

/// The `peer` label of a node: its name, capped by `bounded_label`; every observer node
/// (`foundation cluster status`, `cluster metrics`: one new name per run) is `observer`, so that
/// they do not use up the label's values.
pub fn peer_label(node: &str) -> String {
    if node.starts_with(crate::singleton::OBSERVER_PREFIX) {
        "observer".to_string()
    } else {
        bounded_label("peer", node)
    }
}

/// The fork's key for a peer's traffic totals (`ractor_cluster::set_peer_key`): observers (a
/// new name per run) under one key, so that they neither grow its registry nor use up its cap.
pub(crate) fn fork_key(peer: &str) -> String {
    if crate::membership::node_name(peer).starts_with(crate::singleton::OBSERVER_PREFIX) {
        format!("{}*@observers", crate::singleton::OBSERVER_PREFIX)
    } else {
        peer.to_string()
    }
}

/// Sets the counters of the node `local` (ractor_cluster's `name@host` of this node) every
/// [`EVERY`], forever.
pub(crate) async fn count_forever(local: String) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        count(&local);
    }
}

/// The totals by label: peers sharing a label (observers, those past the caps) added up.
/// Each total is `[sent frames, sent bytes, received frames, received bytes, refused]`.
pub(crate) fn by_label<'a>(
    peers: impl IntoIterator<Item = (&'a str, [u64; 5])>,
) -> BTreeMap<String, [u64; 5]> {
    let mut totals: BTreeMap<String, [u64; 5]> = BTreeMap::new();
    for (peer, counts) in peers {
        // the fork's `""`: peers past its own cap
        let label = if peer.is_empty() {
            foundation_core::telemetry::OTHER_LABEL.to_string()
        } else {
            peer_label(&crate::membership::node_name(peer))
        };
        let sum = totals.entry(label).or_default();
        for (s, c) in sum.iter_mut().zip(counts) {
            *s += c;
        }
    }
    totals
}

/// Sets the counters of node `local` to its totals now.
pub(crate) fn count(local: &str) {
    let peers = ractor_cluster::peer_traffic(local);
    let totals = by_label(peers.iter().map(|p| {
        let counts = [p.sent_frames, p.sent_bytes, p.received_frames, p.received_bytes, p.refused_messages];
        (p.peer.as_str(), counts)
    }));
    for (peer, [sent_frames, sent_bytes, received_frames, received_bytes, refused]) in totals {
        metrics::counter!("foundation_cluster_peer_sent_frames_total", "peer" => peer.clone())
            .absolute(sent_frames);
        metrics::counter!("foundation_cluster_peer_sent_bytes_total", "peer" => peer.clone())
            .absolute(sent_bytes);
        metrics::counter!("foundation_cluster_peer_received_frames_total", "peer" => peer.clone())
            .absolute(received_frames);
        metrics::counter!("foundation_cluster_peer_received_bytes_total", "peer" => peer.clone())
            .absolute(received_bytes);
        metrics::counter!("foundation_cluster_peer_refused_messages_total", "peer" => peer).absolute(refused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observers_share_one_key_in_the_fork() {
        assert_eq!(fork_key("status-41@127.0.0.1"), fork_key("status-42@10.0.0.1"));
        assert_eq!(peer_label(&crate::membership::node_name(&fork_key("status-41@h"))), "observer");
        assert_eq!(fork_key("n2@10.0.0.2"), "n2@10.0.0.2");
    }

    #[test]
    fn peers_are_labelled_by_node_name_and_observers_and_the_fork_s_rest_add_up() {
        let totals = by_label([
            ("n2@10.0.0.2", [1, 10, 2, 20, 0]),
            ("status-41@127.0.0.1", [1, 1, 1, 1, 0]),
            ("status-42@127.0.0.1", [2, 2, 2, 2, 1]),
            ("", [5, 5, 5, 5, 5]),
        ]);
        assert_eq!(totals["n2"], [1, 10, 2, 20, 0]);
        assert_eq!(totals["observer"], [3, 3, 3, 3, 1]);
        assert_eq!(totals[foundation_core::telemetry::OTHER_LABEL], [5, 5, 5, 5, 5]);
        assert_eq!(totals.len(), 3);
    }
}
