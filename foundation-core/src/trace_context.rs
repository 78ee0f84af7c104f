//! The one hook through which messages learn the current trace context.
//!
//! Foundation's handles (the wire adapter, channels, pipelines in foundation-actors) put the
//! sender's trace context on every message they carry; the tracer (scope-tracer) knows what the
//! current trace context is. The arrows between the crates point from the tracer to the
//! handles, so the tracer installs a function here and the handles call it. Without a tracer
//! installed, asking costs one atomic load and nothing is carried.
//!
//! In a process the context travels as a [`TraceParent`] (26 bytes, `Copy`, no allocation);
//! between nodes as its W3C text. The receiving side continues it with [`continue_trace!`],
//! which creates a span only for a sampled trace.

use std::sync::OnceLock;

static CURRENT: OnceLock<fn() -> Option<TraceParent>> = OnceLock::new();

/// The length of a W3C `traceparent` of version 00.
pub const TRACEPARENT_LEN: usize = 55;
/// The span field (a `u128`) that names the trace a span continues ([`continue_trace!`]).
pub const TRACE_ID_FIELD: &str = "trace_id";
/// The span field (a `u64`) that names the remote or queued parent span ([`continue_trace!`]).
pub const PARENT_SPAN_FIELD: &str = "parent_span_id";

/// A sender's trace context: the trace, the sender's span and whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace (never zero).
    pub trace_id: u128,
    /// The sender's span (never zero).
    pub span_id: u64,
    /// Whether the trace is recorded.
    pub sampled: bool,
}

impl TraceParent {
    /// The W3C `traceparent` text (version 00), 55 ASCII bytes.
    pub fn to_text(&self) -> String {
        format!("00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }

    /// Reads a version-00 W3C `traceparent`; `None` if it is not one (the tracer's own parser
    /// says why).
    pub fn from_text(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != TRACEPARENT_LEN || bytes[..3] != *b"00-" || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let hex = |s: &str| s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        let (trace, span, flags) = (text.get(3..35)?, text.get(36..52)?, text.get(53..55)?);
        if !hex(trace) || !hex(span) || !hex(flags) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceParent { trace_id, span_id, sampled: flags & 1 == 1 })
    }
}

/// Installs the function that tells the current trace context (once per process; a second
/// install is ignored and returns `false`).
pub fn install(current: fn() -> Option<TraceParent>) -> bool {
    CURRENT.set(current).is_ok()
}

/// The current trace context, if a tracer is installed and the current span is traced.
pub fn current() -> Option<TraceParent> {
    CURRENT.get().and_then(|f| f())
}

/// The current trace context if its trace is sampled: what a handle carries with a message
/// (an unsampled trace is not continued on the other side, so it is not carried either).
pub fn current_sampled() -> Option<TraceParent> {
    current().filter(|tp| tp.sampled)
}

/// The current `traceparent` text, if a tracer is installed and the current span is traced.
pub fn current_traceparent() -> Option<String> {
    current().map(|tp| tp.to_text())
}

/// A span continuing a carried trace context, as a child of the sender's span: an
/// `info`-level span named `$name` with the fields the tracer follows ([`TRACE_ID_FIELD`],
/// [`PARENT_SPAN_FIELD`]) and any fields given; a disabled span, costing nothing, when the
/// context is `None` or not sampled.
///
/// ```
/// use foundation_core::trace_context::{TraceParent, continue_trace};
/// let carried = Some(TraceParent { trace_id: 7, span_id: 9, sampled: true });
/// let span = continue_trace!(carried, "job.run", job = 3);
/// let _in = span.enter();
/// ```
#[macro_export]
macro_rules! continue_trace {
    ($parent:expr, $name:expr $(, $($fields:tt)*)?) => {
        match $parent {
            Some(parent) if parent.sampled => ::tracing::info_span!(
                $name,
                trace_id = parent.trace_id,
                parent_span_id = parent.span_id
                $(, $($fields)*)?
            ),
            _ => ::tracing::Span::none(),
        }
    };
}
pub use continue_trace;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_malformed_text_is_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::from_text(tp).unwrap();
        assert!(parsed.sampled);
        assert_eq!(parsed.to_text(), tp);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert_eq!(TraceParent::from_text(bad), None, "{bad}");
        }
    }
}
