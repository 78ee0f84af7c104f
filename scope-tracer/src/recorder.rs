//! The per-node recorder: a `tracing` layer that follows trace context through spans and keeps
//! the spans of sampled traces in a bounded buffer.
//!
//! - A span with a field `traceparent` (a W3C value, e.g. from a message that came from another
//!   node) continues that trace as a child of the remote span.
//! - A span with a field `trace_root = true` starts a new trace, sampled by the layer's
//!   [`Sampler`].
//! - Any other span inside a traced span belongs to its trace, as its child.
//! - Spans of unsampled traces carry their context (so that messages sent from them say "not
//!   sampled") and nothing else: no fields, no timing, no buffer.
//!
//! The buffer keeps the newest [`DEFAULT_CAPACITY`] spans; when full, the oldest span is dropped
//! and counted ([`TraceBuffer::dropped`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::context::{Sampler, TraceContext};

/// Default number of spans a node's buffer keeps.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// The field that carries a remote parent.
pub const TRACEPARENT_FIELD: &str = "traceparent";
/// The field that starts a new trace (`true`: sampled by the layer's sampler).
pub const ROOT_FIELD: &str = "trace_root";
/// The field that starts a new trace already decided sampled ([`root_span!`](crate::root_span)).
pub const SAMPLED_ROOT_FIELD: &str = "trace_sampled";

/// One finished span of a sampled trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The trace, 32 hex digits.
    pub trace_id: String,
    /// This span, 16 hex digits.
    pub span_id: String,
    /// Its parent (on this node or another), if any.
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub name: String,
    /// Its target (module path).
    pub target: String,
    /// The node that recorded it.
    pub node: String,
    /// Start, in nanoseconds since the Unix epoch on that node's clock.
    pub start_unix_ns: u64,
    /// How long it was open.
    pub duration_ns: u64,
    /// Its fields.
    pub fields: BTreeMap<String, String>,
}

/// The trace data a span carries.
#[derive(Debug, Clone)]
struct TraceData {
    ctx: TraceContext,
    parent: Option<u64>,
    start_unix_ns: u64,
    started: Instant,
    fields: BTreeMap<String, String>,
}

/// A bounded buffer of finished spans. Cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct TraceBuffer {
    inner: Arc<Mutex<Buffer>>,
}

/// A finished span as recorded on the hot path: binary ids and static names, no allocation
/// beyond its fields; turned into a [`SpanRecord`] when read.
#[derive(Debug, Clone)]
struct RawSpan {
    trace_id: u128,
    span_id: u64,
    parent: Option<u64>,
    name: &'static str,
    target: &'static str,
    node: std::sync::Arc<str>,
    start_unix_ns: u64,
    duration_ns: u64,
    fields: BTreeMap<String, String>,
}

impl RawSpan {
    fn record(&self) -> SpanRecord {
        SpanRecord {
            trace_id: format!("{:032x}", self.trace_id),
            span_id: format!("{:016x}", self.span_id),
            parent_span_id: self.parent.map(|p| format!("{p:016x}")),
            name: self.name.to_string(),
            target: self.target.to_string(),
            node: self.node.to_string(),
            start_unix_ns: self.start_unix_ns,
            duration_ns: self.duration_ns,
            fields: self.fields.clone(),
        }
    }
}

#[derive(Debug)]
struct Buffer {
    spans: VecDeque<RawSpan>,
    capacity: usize,
    dropped: u64,
}

impl TraceBuffer {
    /// A buffer of at most `capacity` spans.
    pub fn new(capacity: usize) -> Self {
        TraceBuffer {
            inner: Arc::new(Mutex::new(Buffer {
                spans: VecDeque::new(),
                capacity: capacity.max(1),
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, span: RawSpan) {
        let mut b = self.lock();
        if b.spans.len() >= b.capacity {
            b.spans.pop_front();
            b.dropped += 1;
            metrics::counter!("scope_tracer_spans_dropped_total").increment(1);
        }
        b.spans.push_back(span);
    }

    /// The spans of one trace (32 hex digits), oldest first.
    pub fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        let Ok(id) = u128::from_str_radix(trace_id, 16) else { return Vec::new() };
        self.lock().spans.iter().filter(|s| s.trace_id == id).map(RawSpan::record).collect()
    }

    /// Every span held, oldest first.
    pub fn all(&self) -> Vec<SpanRecord> {
        self.lock().spans.iter().map(RawSpan::record).collect()
    }

    /// Spans held.
    pub fn len(&self) -> usize {
        self.lock().spans.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spans dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

/// The layer. Add it to a `tracing_subscriber::registry()`.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    node: std::sync::Arc<str>,
    sampler: Sampler,
    buffer: TraceBuffer,
}

impl TraceLayer {
    /// A layer for `node` that samples new traces with `sampler` into `buffer`.
    pub fn new(node: impl Into<String>, sampler: Sampler, buffer: TraceBuffer) -> Self {
        let node: String = node.into();
        TraceLayer { node: node.into(), sampler, buffer }
    }

    /// Its buffer.
    pub fn buffer(&self) -> &TraceBuffer {
        &self.buffer
    }
}

#[derive(Default)]
struct Fields {
    traceparent: Option<String>,
    root: bool,
    sampled_root: bool,
    values: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACEPARENT_FIELD {
            self.traceparent = Some(value.to_string());
        } else {
            self.values.insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == ROOT_FIELD {
            self.root = value;
        } else if field.name() == SAMPLED_ROOT_FIELD {
            self.sampled_root = value;
        } else {
            self.values.insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == TRACEPARENT_FIELD {
            // `traceparent = %tp` arrives here as Display-through-Debug: no quotes.
            self.traceparent = Some(text);
        } else {
            self.values.insert(field.name().to_string(), text);
        }
    }
}

fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let (trace, parent) = if let Some(tp) = fields.traceparent.as_deref() {
            match TraceContext::parse(tp) {
                Ok(remote) => (remote.child(), Some(remote.span_id)),
                Err(e) => {
                    tracing::debug!(error = %e, "a span's traceparent did not parse; not traced");
                    return;
                }
            }
        } else if let Some(data) = span.parent().and_then(|p| p.extensions().get::<TraceData>().cloned()) {
            (data.ctx.child(), Some(data.ctx.span_id))
        } else if fields.sampled_root {
            (TraceContext { sampled: true, ..TraceContext::new_root(&Sampler::always()) }, None)
        } else if fields.root {
            (TraceContext::new_root(&self.sampler), None)
        } else {
            return;
        };
        let sampled = trace.sampled;
        let data = TraceData {
            ctx: trace,
            parent,
            start_unix_ns: if sampled { now_unix_ns() } else { 0 },
            started: Instant::now(),
            fields: if sampled { fields.values } else { BTreeMap::new() },
        };
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<TraceData>().filter(|d| d.ctx.sampled) {
            let mut fields = Fields::default();
            values.record(&mut fields);
            data.fields.extend(fields.values);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(data) = span.extensions_mut().remove::<TraceData>().filter(|d| d.ctx.sampled) else {
            return;
        };
        self.buffer.push(RawSpan {
            trace_id: data.ctx.trace_id,
            span_id: data.ctx.span_id,
            parent: data.parent,
            name: span.name(),
            target: span.metadata().target(),
            node: self.node.clone(),
            start_unix_ns: data.start_unix_ns,
            duration_ns: data.started.elapsed().as_nanos() as u64,
            fields: data.fields,
        });
    }
}

/// The trace context of the current span, if it belongs to a trace: what a message sent from
/// here carries as its `traceparent`.
pub fn current_context() -> Option<TraceContext> {
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let current = dispatch.current_span();
        let span = registry.span(current.id()?)?;
        span.extensions().get::<TraceData>().map(|d| d.ctx)
    })
}

/// The `traceparent` of the current span, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    current_context().map(|c| c.to_traceparent())
}
