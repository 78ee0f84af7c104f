//! Replicated CRDT state (being written).
