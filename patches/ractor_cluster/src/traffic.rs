// Foundation patch 14: what each session sent and received, for metrics per peer.

//! Counters of each authenticated session's traffic: frames and bytes written and read, and
//! node messages refused before sending (over the frame limit).
//!
//! A frame is one message of the session's protocol (a cast, a call, a reply, or one of the
//! session's own control messages); its bytes are what went over the connection for it (length
//! words and envelope included, TLS records not). The writer counts a batch once its write
//! completed; the reader a frame once it was read whole. A session is listed from when it
//! authenticated and won its election (what it exchanged before, the handshake, is counted
//! in its first reading), and once more after it ended, with its final counts, on the next
//! [`session_traffic`] call of its node; then it is forgotten.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::NodeId;

/// One link's counters (shared by its writer, its reader and the registry below).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    sent_frames: AtomicU64,
    sent_bytes: AtomicU64,
    received_frames: AtomicU64,
    received_bytes: AtomicU64,
    refused: AtomicU64,
}

impl Traffic {
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

    /// A node message was refused before sending; how many were before it.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One session's counts since it started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionTraffic {
    /// The session's node id (as in the `ActorId::Remote` of its peer's actors).
    pub node_id: NodeId,
    /// The name the peer authenticated with.
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
    /// The session ended: these are its final counts, and it is not listed again.
    pub ended: bool,
}

struct Entry {
    node_id: NodeId,
    local: String,
    peer: String,
    traffic: Arc<Traffic>,
}

static SESSIONS: LazyLock<Mutex<Vec<Entry>>> = LazyLock::new(Mutex::default);

/// Lists a session of node `local` with `peer` (it authenticated and won its election).
pub(crate) fn register(node_id: NodeId, local: &str, peer: &str, traffic: &Arc<Traffic>) {
    let mut sessions = SESSIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    sessions.push(Entry {
        node_id,
        local: local.to_string(),
        peer: peer.to_string(),
        traffic: traffic.clone(),
    });
}

/// The counts of every session of the node named `local` in this process: those running, and
/// those ended since the last call for that node (`ended`, listed this once).
pub fn session_traffic(local: &str) -> Vec<SessionTraffic> {
    let mut sessions = SESSIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Vec::new();
    sessions.retain(|entry| {
        if entry.local != local {
            return true;
        }
        // only the registry holds it: its link, writer and reader are gone
        let ended = Arc::strong_count(&entry.traffic) == 1;
        let t = &entry.traffic;
        out.push(SessionTraffic {
            node_id: entry.node_id,
            peer: entry.peer.clone(),
            sent_frames: t.sent_frames.load(Ordering::Relaxed),
            sent_bytes: t.sent_bytes.load(Ordering::Relaxed),
            received_frames: t.received_frames.load(Ordering::Relaxed),
            received_bytes: t.received_bytes.load(Ordering::Relaxed),
            refused_messages: t.refused.load(Ordering::Relaxed),
            ended,
        });
        !ended
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_listed_for_its_node_only_and_once_more_after_it_ended() {
        let traffic = Arc::new(Traffic::default());
        register(7001, "traffic-test-a", "b", &traffic);
        traffic.sent(3, 300);
        traffic.received(40);
        traffic.refused();
        assert!(session_traffic("traffic-test-other")
            .iter()
            .all(|s| s.node_id != 7001));
        let listed = session_traffic("traffic-test-a");
        assert_eq!(listed.len(), 1);
        let s = &listed[0];
        assert_eq!(
            (
                s.peer.as_str(),
                s.sent_frames,
                s.sent_bytes,
                s.received_frames,
                s.received_bytes,
                s.refused_messages,
                s.ended
            ),
            ("b", 3, 300, 1, 40, 1, false)
        );
        traffic.sent(1, 10);
        drop(traffic);
        let last = session_traffic("traffic-test-a");
        assert_eq!(
            (last.len(), last[0].sent_frames, last[0].ended),
            (1, 4, true)
        );
        assert!(
            session_traffic("traffic-test-a").is_empty(),
            "an ended session is listed once"
        );
    }
}
