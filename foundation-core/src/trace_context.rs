//! The one hook through which messages learn the current trace context.
//!
//! Foundation's wire adapter (foundation-actors) puts the sender's W3C `traceparent` on every
//! message that crosses nodes; the tracer (scope-tracer) knows what the current trace context
//! is. The arrows between the crates point from the tracer to the adapter, so the tracer installs
//! a function here and the adapter calls it. Without a tracer installed, asking costs one atomic
//! load and nothing is sent.

use std::sync::OnceLock;

static CURRENT: OnceLock<fn() -> Option<String>> = OnceLock::new();

/// Installs the function that tells the current `traceparent` (once per process; a second
/// install is ignored and returns `false`).
pub fn install(current: fn() -> Option<String>) -> bool {
    CURRENT.set(current).is_ok()
}

/// The current `traceparent`, if a tracer is installed and the current span is traced.
pub fn current_traceparent() -> Option<String> {
    CURRENT.get().and_then(|f| f())
}

/// The length of a W3C `traceparent` of version 00.
pub const TRACEPARENT_LEN: usize = 55;
