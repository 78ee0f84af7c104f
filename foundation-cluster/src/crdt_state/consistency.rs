//! How many replicas a read or a write waits for.

use std::time::Duration;

/// A reasonable wait for a majority on a LAN or loopback: long enough for a loaded machine,
/// short enough that a partitioned caller hears about it quickly.
pub const DEFAULT_MAJORITY_TIMEOUT: Duration = Duration::from_secs(3);

/// How many replicas must have a write before [`Replicator::update`](super::Replicator::update)
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteConsistency {
    /// This node only (it is sent to the other nodes at once, and gossip repairs any that
    /// missed it). Never fails for lack of peers.
    #[default]
    Local,
    /// A majority of the cluster's known nodes (this one included, down ones included) must
    /// have merged it within `timeout`. On timeout the write stays applied here and spreads by
    /// gossip later (see [`CrdtError::MajorityWrite`](super::CrdtError::MajorityWrite)).
    Majority {
        /// How long to wait for the acknowledgements.
        timeout: Duration,
    },
}

impl WriteConsistency {
    /// [`Majority`](Self::Majority) with [`DEFAULT_MAJORITY_TIMEOUT`].
    pub fn majority() -> Self {
        WriteConsistency::Majority { timeout: DEFAULT_MAJORITY_TIMEOUT }
    }
}

/// How many replicas a read merges before [`Replicator::get`](super::Replicator::get) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// This node's replica only (it may not have seen recent writes made elsewhere).
    #[default]
    Local,
    /// This node's replica merged with those of a majority of the cluster's known nodes (this one
    /// included), asked within `timeout`; what they answer is also merged into this node's
    /// replica. A read after a majority write (both majorities overlap) sees that write.
    Majority {
        /// How long to wait for the answers.
        timeout: Duration,
    },
}

impl ReadConsistency {
    /// [`Majority`](Self::Majority) with [`DEFAULT_MAJORITY_TIMEOUT`].
    pub fn majority() -> Self {
        ReadConsistency::Majority { timeout: DEFAULT_MAJORITY_TIMEOUT }
    }
}

/// The number of nodes that make a majority of `known` nodes.
pub(crate) fn majority_of(known: usize) -> usize {
    known / 2 + 1
}
