// Foundation patch 14: what each node sent to and received from each peer, for metrics.

//! Traffic counters per local node and peer: frames and bytes written and read, and node
//! messages refused before sending (over the frame limit).
//!
//! A frame is one message of the session protocol (a cast, a call, a reply, or one of the
//! session's own control messages); its bytes are what went over the connection for it (length
//! words and envelope included, TLS records not). A session counts from when it authenticated
//! and won its election (its handshake is not counted): the writer a batch once its write
//! completed, the reader a frame once it was read whole. Every session between the same local
//! node and peer adds to the same totals, so they never go back when the peer reconnects, for as
//! long as the process runs; [`peer_traffic`] reads them without consuming anything (any number
//! of readers). A node keeps totals for at most [`MAX_PEERS`] peer names (or keys: see
//! [`set_peer_key`]); sessions of later ones add to the totals of the empty name. The cost:
//! relaxed atomic adds per batch written and per frame read, and about 100 bytes per (node,
//! peer) for the process's life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// The most peer names a local node keeps totals for; later ones are counted under `""`.
pub const MAX_PEERS: usize = 1024;

/// The counters of one local node's traffic with one peer.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    sent_frames: AtomicU64,
    sent_bytes: AtomicU64,
    received_frames: AtomicU64,
    received_bytes: AtomicU64,
    refused: AtomicU64,
}

impl Totals {
    /// A batch of `frames` frames, `bytes` in all, was written.
    pub(crate) fn sent(&self, frames: u64, bytes: u64) {
        self.sent_frames.fetch_add(frames, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A frame of `bytes` was read.
    pub(crate) fn received(&self, bytes: u64) {
        self.received_frames.fetch_add(1, Ordering::Relaxed);
        self.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A node message was refused before sending.
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// One local node's traffic with one peer, since the process started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerTraffic {
    /// The name the peer's sessions authenticated with (`""`: the peers past [`MAX_PEERS`]).
    pub peer: String,
    /// Frames written to the peer.
    pub sent_frames: u64,
    /// Bytes of those frames.
    pub sent_bytes: u64,
    /// Frames read from the peer.
    pub received_frames: u64,
    /// Bytes of those frames.
    pub received_bytes: u64,
    /// Node messages to the peer refused before sending (larger than a frame may be).
    pub refused_messages: u64,
}

/// How peer names are keyed (set once by the embedding program, [`set_peer_key`]).
static PEER_KEY: std::sync::OnceLock<fn(&str) -> String> = std::sync::OnceLock::new();

/// Keys the totals of peers by `key(peer name)` instead of the name itself: a program whose
/// short-lived tool nodes connect under a new name each run (`status-PID`) puts them under one
/// key, so that they neither grow the registry nor use up [`MAX_PEERS`]. Set once per process;
/// a second call changes nothing.
pub fn set_peer_key(key: fn(&str) -> String) {
    let _ = PEER_KEY.set(key);
}

/// Totals by local node name, then peer name.
type Registry = HashMap<String, HashMap<String, Arc<Totals>>>;

static TOTALS: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// The totals a session of node `local` with `peer` adds to (it authenticated and won its
/// election).
pub(crate) fn totals_for(local: &str, peer: &str) -> Arc<Totals> {
    let peer = PEER_KEY
        .get()
        .map_or_else(|| peer.to_string(), |key| key(peer));
    let mut totals = TOTALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let peers = totals.entry(local.to_string()).or_default();
    let peer = if peers.contains_key(&peer) || peers.len() < MAX_PEERS {
        peer
    } else {
        String::new()
    };
    peers.entry(peer).or_default().clone()
}

/// The traffic of the node named `local` (ractor_cluster's `name@host`) in this process with
/// each peer it had an authenticated session with, since the process started, by peer name.
pub fn peer_traffic(local: &str) -> Vec<PeerTraffic> {
    let totals = TOTALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out: Vec<PeerTraffic> = totals
        .get(local)
        .into_iter()
        .flatten()
        .map(|(peer, t)| PeerTraffic {
            peer: peer.clone(),
            sent_frames: t.sent_frames.load(Ordering::Relaxed),
            sent_bytes: t.sent_bytes.load(Ordering::Relaxed),
            received_frames: t.received_frames.load(Ordering::Relaxed),
            received_bytes: t.received_bytes.load(Ordering::Relaxed),
            refused_messages: t.refused.load(Ordering::Relaxed),
        })
        .collect();
    out.sort_by(|a, b| a.peer.cmp(&b.peer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_with_one_peer_add_up_for_their_node_only_and_reading_consumes_nothing() {
        let first = totals_for("traffic-test-a@h", "b@h");
        first.sent(3, 300);
        first.received(40);
        first.refused();
        drop(first); // the session ended
        let second = totals_for("traffic-test-a@h", "b@h"); // b reconnected
        second.sent(1, 10);
        assert!(peer_traffic("traffic-test-other@h").is_empty());
        let expected = PeerTraffic {
            peer: "b@h".to_string(),
            sent_frames: 4,
            sent_bytes: 310,
            received_frames: 1,
            received_bytes: 40,
            refused_messages: 1,
        };
        assert_eq!(peer_traffic("traffic-test-a@h"), [expected.clone()]);
        assert_eq!(
            peer_traffic("traffic-test-a@h"),
            [expected],
            "a second reader sees the same"
        );
    }

    #[test]
    fn peers_past_the_cap_add_up_under_the_empty_name() {
        for n in 0..MAX_PEERS + 2 {
            totals_for("traffic-test-cap@h", &format!("p{n}@h")).sent(1, 1);
        }
        let read = peer_traffic("traffic-test-cap@h");
        assert_eq!(read.len(), MAX_PEERS + 1);
        let rest = read.iter().find(|p| p.peer.is_empty()).expect("the rest");
        assert_eq!(rest.sent_frames, 2);
        // a peer kept before the cap still has its own
        totals_for("traffic-test-cap@h", "p0@h").sent(1, 1);
        let p0 = peer_traffic("traffic-test-cap@h")
            .into_iter()
            .find(|p| p.peer == "p0@h")
            .unwrap();
        assert_eq!(p0.sent_frames, 2);
    }
}
