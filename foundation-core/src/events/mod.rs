//! The structured event store (being written).
