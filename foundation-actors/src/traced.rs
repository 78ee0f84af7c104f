//! Trace context on messages inside a node.
//!
//! Foundation's handles carry the sender's trace context with every message: the wire adapter
//! between nodes ([`Wire`](crate::wire::Wire)), channels (publish and broadcast, delivered with
//! [`Subscription::recv_traced`](crate::channels::Subscription::recv_traced)) and pipelines
//! (each stage runs in a span that is a child of the previous stage's). [`Traced`] does the
//! same for a user's own actor messages: wrap the payload when sending, enter its span when
//! handling.
//!
//! Only sampled traces are carried and continued; with no tracer installed, capturing is one
//! atomic load and the span is disabled.
//!
//! ```
//! use foundation_actors::traced::Traced;
//! use tracing::Instrument;
//!
//! # async fn demo() {
//! let job = Traced::capture("resize image 7"); // in the sender's span
//! // ... sent to an actor; in its handler:
//! let span = job.span();
//! async { /* handle job.value */ }.instrument(span).await;
//! # }
//! ```

use foundation_core::trace_context::{self, TraceParent};

/// A message payload with the trace context of the span that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Traced<T> {
    /// The payload.
    pub value: T,
    /// The sender's trace context, if it was in a sampled trace.
    pub parent: Option<TraceParent>,
}

impl<T> Traced<T> {
    /// Wraps `value` with the current trace context (if the current span is in a sampled trace).
    pub fn capture(value: T) -> Self {
        Traced { value, parent: trace_context::current_sampled() }
    }

    /// A span continuing the sender's trace (`message.receive`, a child of the sender's span,
    /// naming the payload type); disabled when the sender was not in a sampled trace.
    pub fn span(&self) -> tracing::Span {
        trace_context::continue_trace!(self.parent, "message.receive", message = std::any::type_name::<T>())
    }

    /// The payload, without its context.
    pub fn into_inner(self) -> T {
        self.value
    }
}
