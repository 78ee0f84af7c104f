//! How long, and how much of, the events outside streams are kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Retention rules, applied by [`EventStore::apply_retention`](super::EventStore::apply_retention)
/// (or periodically by [`EventStore::retain_every`](super::EventStore::retain_every)).
///
/// They apply to events **outside streams** only: an aggregate's journal is its state, and
/// removing part of it would change what the aggregate rebuilds to. Oldest events (lowest ids)
/// go first. `None` means no bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Events older than this (by timestamp) are removed.
    pub max_age: Option<Duration>,
    /// At most this many events are kept.
    pub max_events: Option<u64>,
    /// At most this many bytes of JSON payload are kept.
    pub max_payload_bytes: Option<u64>,
}

impl Retention {
    /// Keeps everything (the default).
    pub fn keep_all() -> Self {
        Self::default()
    }

    /// Whether any bound is set.
    pub fn is_bounded(&self) -> bool {
        self.max_age.is_some() || self.max_events.is_some() || self.max_payload_bytes.is_some()
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Events removed for their age.
    pub expired: u64,
    /// Events removed to get under the count or size bound.
    pub evicted: u64,
}

impl RetentionReport {
    /// All events removed.
    pub fn removed(&self) -> u64 {
        self.expired + self.evicted
    }
}
