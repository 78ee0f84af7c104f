//! The cluster cache tier (being written).
