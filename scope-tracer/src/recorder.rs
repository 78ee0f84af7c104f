//! The per-node recorder: a `tracing` layer that follows trace context through spans and keeps
//! the spans of sampled traces in a bounded buffer.
//!
//! - A span with a field `traceparent` (a W3C value, e.g. from a message that came from another
//!   node) continues that trace as a child of the remote span.
//! - A span with a field `trace_root = true` starts a new trace, sampled by the layer's
//!   [`Sampler`].
//! - Any other span inside a traced span belongs to its trace, as its child.
//! - Spans of unsampled traces carry their context (so that messages sent from them say "not
//!   sampled") and nothing else: no fields, no timing, no events, no buffer.
//!
//! **Events.** A `tracing` event (`info!`, `error!`…) inside a span of a sampled trace is kept
//! with that span ([`SpanEvent`]: time, level, target, message, fields) if it is at the layer's
//! event level or more severe ([`DEFAULT_EVENT_LEVEL`], INFO; [`TraceLayer::with_event_level`]).
//! Bounded per span: the first [`MAX_EVENTS_PER_SPAN`] are kept, within
//! [`MAX_EVENT_BYTES_PER_SPAN`], and the rest counted ([`SpanRecord::events_dropped`]); a
//! message or field value longer than [`MAX_TEXT_BYTES`] bytes is cut (ending in `…`; span
//! fields too), and an event keeps at most [`MAX_EVENT_FIELDS`] fields. Events outside any span, in unsampled traces or below the level
//! cost a comparison or one span lookup and are not kept.
//!
//! **Errors.** A span **ended in error** ([`SpanRecord::error`]) if an ERROR event was emitted
//! inside it (`#[instrument(err)]` emits one) — the first such event's message, with its
//! `error` field if it has one — or, failing that, if it has a field `error` (given when it was
//! created or recorded later with `Span::record`). Errors are kept even when the event itself
//! is past the bound. An error is its span's own: a parent is not marked by its child's.
//!
//! The buffer keeps the newest [`DEFAULT_CAPACITY`] spans; when full, the oldest spans (the
//! first closed, across every recording thread) are dropped, up to 64 at a time, and counted
//! ([`TraceBuffer::dropped`]).

use foundation_core::sync::MutexRecover;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, Registry};

use foundation_core::trace_context::{PARENT_SPAN_FIELD, TRACE_ID_FIELD, TraceParent};

use crate::context::{Sampler, TraceContext};

/// Default number of spans a node's buffer keeps.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// The field that carries a remote parent.
pub const TRACEPARENT_FIELD: &str = "traceparent";
/// The field that starts a new trace (`true`: sampled by the layer's sampler).
pub const ROOT_FIELD: &str = "trace_root";
/// The field that starts a new trace already decided sampled ([`root_span!`](crate::root_span)).
pub const SAMPLED_ROOT_FIELD: &str = "trace_sampled";

/// The least severe events a span keeps by default.
pub const DEFAULT_EVENT_LEVEL: Level = Level::INFO;
/// Events a span keeps at most (the first ones; the rest are counted).
pub const MAX_EVENTS_PER_SPAN: usize = 32;
/// Longest message, event field value or span field value kept, in bytes (longer ones are cut,
/// ending in `…`).
pub const MAX_TEXT_BYTES: usize = 1024;
/// Fields an event keeps at most (its message aside).
pub const MAX_EVENT_FIELDS: usize = 16;
/// Bytes of events (messages, field names and values) a span keeps at most: events past it are
/// counted as dropped, like those past [`MAX_EVENTS_PER_SPAN`].
pub const MAX_EVENT_BYTES_PER_SPAN: usize = 16 * 1024;
/// The field whose presence on a span marks it ended in error.
pub const ERROR_FIELD: &str = "error";

/// An event emitted inside a span of a sampled trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// When, in nanoseconds since the Unix epoch on the recording node's clock.
    pub unix_ns: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// Its target (module path).
    pub target: String,
    /// Its message (empty if it had none).
    pub message: String,
    /// Its other fields.
    pub fields: BTreeMap<String, String>,
}

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
    /// Events emitted inside it, oldest first (at most [`MAX_EVENTS_PER_SPAN`]).
    #[serde(default)]
    pub events: Vec<SpanEvent>,
    /// Events emitted inside it past [`MAX_EVENTS_PER_SPAN`], not kept.
    #[serde(default)]
    pub events_dropped: u32,
    /// Why it ended in error, if it did (see the module docs).
    #[serde(default)]
    pub error: Option<String>,
}

/// The trace data a span carries.
#[derive(Debug, Clone)]
struct TraceData {
    ctx: TraceContext,
    parent: Option<u64>,
    start_unix_ns: u64,
    started: Instant,
    fields: BTreeMap<String, String>,
    events: Vec<RawEvent>,
    /// Bytes the kept events hold.
    event_bytes: usize,
    events_dropped: u32,
    /// The first ERROR event's description.
    error: Option<String>,
}

/// An event as recorded on the hot path (static level and target).
#[derive(Debug, Clone)]
struct RawEvent {
    unix_ns: u64,
    level: &'static str,
    target: &'static str,
    message: String,
    fields: BTreeMap<String, String>,
}

impl RawEvent {
    fn record(&self) -> SpanEvent {
        SpanEvent {
            unix_ns: self.unix_ns,
            level: self.level.to_string(),
            target: self.target.to_string(),
            message: self.message.clone(),
            fields: self.fields.clone(),
        }
    }
}

/// `text` cut to at most [`MAX_TEXT_BYTES`] bytes at a character boundary, ending in `…` if cut.
pub(crate) fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A string value, copied no further than a little past [`MAX_TEXT_BYTES`] (then [`bounded`]).
fn capped_str(value: &str) -> String {
    let mut end = value.len().min(MAX_TEXT_BYTES + 4);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    bounded(value[..end].to_string())
}

/// A `Debug` value, formatted no further than a little past [`MAX_TEXT_BYTES`] (a huge value
/// stops being formatted there), then [`bounded`].
fn capped_debug(value: &dyn std::fmt::Debug) -> String {
    struct Capped(String);
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if self.0.len() + s.len() > MAX_TEXT_BYTES + 4 {
                let mut end = (MAX_TEXT_BYTES + 4).saturating_sub(self.0.len()).min(s.len());
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                self.0.push_str(&s[..end]);
                return Err(std::fmt::Error);
            }
            self.0.push_str(s);
            Ok(())
        }
    }
    let mut text = Capped(String::new());
    let _ = std::fmt::write(&mut text, format_args!("{value:?}"));
    bounded(text.0)
}

/// The fields of an event: its message apart, at most [`MAX_EVENT_FIELDS`] others, every value
/// bounded.
#[derive(Default)]
struct EventFields {
    message: String,
    values: BTreeMap<String, String>,
}

impl EventFields {
    fn insert(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else if self.values.len() < MAX_EVENT_FIELDS {
            self.values.insert(field.name().to_string(), value);
        }
    }

    /// Bytes it holds (what counts against a span's [`MAX_EVENT_BYTES_PER_SPAN`]).
    fn bytes(&self) -> usize {
        self.message.len() + self.values.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, capped_str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.insert(field, capped_debug(value));
    }
}

/// What a span's error says: the ERROR event's message, with its `error` field if it has one
/// (bounded like any value).
fn describe_error(event: &EventFields) -> String {
    bounded(match (event.message.as_str(), event.values.get(ERROR_FIELD)) {
        ("", Some(error)) => error.clone(),
        (message, Some(error)) => format!("{message}: {error}"),
        (message, None) => message.to_string(),
    })
}

/// A bounded buffer of finished spans. Cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct TraceBuffer {
    inner: Arc<Buffer>,
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
    node: &'static str,
    start_unix_ns: u64,
    duration_ns: u64,
    fields: BTreeMap<String, String>,
    events: Vec<RawEvent>,
    events_dropped: u32,
    error: Option<String>,
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
            events: self.events.iter().map(RawEvent::record).collect(),
            events_dropped: self.events_dropped,
            error: self.error.clone(),
        }
    }
}

/// Shards of the buffer: each recording thread pushes to its own (picked round-robin when the
/// thread first records), so that threads closing spans at once do not contend on one lock.
const SHARDS: usize = 8;

#[derive(Debug)]
struct Buffer {
    shards: Box<[Mutex<VecDeque<RawSpan>>]>,
    /// Spans held across all shards.
    len: AtomicUsize,
    capacity: usize,
    dropped: AtomicU64,
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl TraceBuffer {
    /// A buffer of at most `capacity` spans.
    pub fn new(capacity: usize) -> Self {
        TraceBuffer {
            inner: Arc::new(Buffer {
                shards: (0..SHARDS).map(|_| Mutex::new(VecDeque::new())).collect(),
                len: AtomicUsize::new(0),
                capacity: capacity.max(1),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, VecDeque<RawSpan>> {
        self.inner.shards[i].lock_or_recover()
    }

    fn push(&self, span: RawSpan) {
        let b = &self.inner;
        self.shard(shard_index()).push_back(span);
        if b.len.fetch_add(1, Ordering::Relaxed) >= b.capacity {
            self.evict_oldest();
        }
    }

    /// Full: drops the oldest spans across all shards (the first closed), a batch at a time so
    /// that a full buffer does not lock every shard on every push.
    fn evict_oldest(&self) {
        let b = &self.inner;
        let batch = (b.capacity / 1024).clamp(1, 64);
        // Every shard at once, in index order (a pusher holds one shard at a time: no cycle).
        let mut shards: Vec<MutexGuard<'_, VecDeque<RawSpan>>> = (0..SHARDS).map(|i| self.shard(i)).collect();
        let mut evicted = 0;
        while evicted < batch {
            let oldest = shards
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.front().map(|f| (f.start_unix_ns + f.duration_ns, i)))
                .min();
            let Some((_, i)) = oldest else { break };
            shards[i].pop_front();
            evicted += 1;
        }
        drop(shards);
        b.len.fetch_sub(evicted, Ordering::Relaxed);
        b.dropped.fetch_add(evicted as u64, Ordering::Relaxed);
        metrics::counter!("scope_tracer_spans_dropped_total").increment(evicted as u64);
    }

    /// The spans held that pass `keep`, oldest (first closed) first.
    fn collect(&self, keep: impl Fn(&RawSpan) -> bool) -> Vec<SpanRecord> {
        let mut raw: Vec<RawSpan> = Vec::new();
        for i in 0..SHARDS {
            raw.extend(self.shard(i).iter().filter(|s| keep(s)).cloned());
        }
        raw.sort_by_key(|s| s.start_unix_ns + s.duration_ns);
        raw.iter().map(RawSpan::record).collect()
    }

    /// The spans of one trace (32 hex digits), oldest first.
    pub fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        let Ok(id) = u128::from_str_radix(trace_id, 16) else { return Vec::new() };
        self.collect(|s| s.trace_id == id)
    }

    /// Every span held, oldest first.
    pub fn all(&self) -> Vec<SpanRecord> {
        self.collect(|_| true)
    }

    /// The spans that started at or after `from_unix_ns` and before `until_unix_ns` (if given),
    /// oldest first: what a node recorded during a cluster trace session.
    pub fn window(&self, from_unix_ns: u64, until_unix_ns: Option<u64>) -> Vec<SpanRecord> {
        self.collect(|s| s.start_unix_ns >= from_unix_ns && until_unix_ns.is_none_or(|u| s.start_unix_ns < u))
    }

    /// Spans held.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spans dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// The layer. Add it to a `tracing_subscriber::registry()`.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    /// Leaked once per layer (a layer is made once per process, or per test): every span names
    /// its node without touching a shared reference count.
    node: &'static str,

    sampler: Sampler,
    buffer: TraceBuffer,
    /// The least severe events kept.
    event_level: Level,
}

impl TraceLayer {
    /// A layer for `node` that samples new traces with `sampler` into `buffer`.
    pub fn new(node: impl Into<String>, sampler: Sampler, buffer: TraceBuffer) -> Self {
        let node: String = node.into();
        TraceLayer {
            node: Box::leak(node.into_boxed_str()),
            sampler,
            buffer,
            event_level: DEFAULT_EVENT_LEVEL,
        }
    }

    /// Keeps events at `level` or more severe inside sampled spans (default
    /// [`DEFAULT_EVENT_LEVEL`]); `Level::ERROR` keeps errors only. ERROR events mark their span
    /// whatever this is.
    pub fn with_event_level(mut self, level: Level) -> Self {
        self.event_level = level;
        self
    }

    /// Its buffer.
    pub fn buffer(&self) -> &TraceBuffer {
        &self.buffer
    }
}

#[derive(Default)]
struct Fields {
    traceparent: Option<String>,
    /// A parent carried in binary ([`continue_trace!`](foundation_core::trace_context::continue_trace)).
    trace_id: Option<u128>,
    parent_span_id: Option<u64>,
    root: bool,
    sampled_root: bool,
    values: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_u128(&mut self, field: &Field, value: u128) {
        if field.name() == TRACE_ID_FIELD {
            self.trace_id = Some(value);
        } else {
            self.values.insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == PARENT_SPAN_FIELD {
            self.parent_span_id = Some(value);
        } else {
            self.values.insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACEPARENT_FIELD {
            self.traceparent = Some(capped_str(value));
        } else {
            self.values.insert(field.name().to_string(), capped_str(value));
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
        // Bounded either way (a traceparent is 55 bytes: one longer does not parse).
        let text = capped_debug(value);
        if field.name() == TRACEPARENT_FIELD {
            // `traceparent = %tp` arrives here as Display-through-Debug: no quotes.
            self.traceparent = Some(text);
        } else {
            self.values.insert(field.name().to_string(), text);
        }
    }
}

/// Wall-clock time from the monotonic clock: one clock read per span start instead of two.
/// Anchored once per process (see [`now_unix_ns`]); a wall clock stepped later is not followed
/// (spans keep
/// their true durations, and the timeline corrects skew between nodes anyway).
#[derive(Debug, Clone, Copy)]
struct Clock {
    unix_ns: u64,
    at: Instant,
}

impl Clock {
    fn now() -> Self {
        let unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Clock { unix_ns, at: Instant::now() }
    }

    fn unix_ns(&self, at: Instant) -> u64 {
        self.unix_ns + at.saturating_duration_since(self.at).as_nanos() as u64
    }
}

fn clock() -> &'static Clock {
    static CLOCK: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(Clock::now)
}

/// Now, in nanoseconds since the Unix epoch, on the clock spans are stamped with (so that
/// windows compared with span starts, such as a cluster trace's, use the same clock).
pub fn now_unix_ns() -> u64 {
    clock().unix_ns(Instant::now())
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let (trace, parent) = if let (Some(trace_id), Some(span_id)) =
            (fields.trace_id, fields.parent_span_id)
            && trace_id != 0
            && span_id != 0
        {
            // Only sampled contexts are continued this way (a disabled span otherwise).
            (TraceContext { trace_id, span_id, sampled: true }.child(), Some(span_id))
        } else if let Some(tp) = fields.traceparent.as_deref() {
            match TraceContext::parse(tp) {
                Ok(remote) => (remote.child(), Some(remote.span_id)),
                Err(e) => {
                    tracing::debug!(error = %e, "a span's traceparent did not parse; not traced");
                    return;
                }
            }
        } else if let Some(ctx) = span.parent().and_then(|p| p.extensions().get::<TraceData>().map(|d| d.ctx))
        {
            (ctx.child(), Some(ctx.span_id))
        } else if fields.sampled_root {
            (TraceContext { sampled: true, ..TraceContext::new_root(&Sampler::always()) }, None)
        } else if fields.root {
            // A running cluster trace may ask for more than the layer's own rate.
            let boost = crate::session::boost();
            let sampler = if boost > self.sampler.rate() { Sampler::new(boost) } else { self.sampler };
            (TraceContext::new_root(&sampler), None)
        } else {
            return;
        };
        let sampled = trace.sampled;
        let started = Instant::now();
        let data = TraceData {
            ctx: trace,
            parent,
            start_unix_ns: if sampled { clock().unix_ns(started) } else { 0 },
            started,
            fields: if sampled { fields.values } else { BTreeMap::new() },
            events: Vec::new(),
            event_bytes: 0,
            events_dropped: 0,
            error: None,
        };
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if !span.extensions().get::<TraceData>().is_some_and(|d| d.ctx.sampled) {
            return;
        }
        // Visited with no lock held: a value's `Debug` that emits an event (which looks at the
        // current span's extensions) cannot deadlock.
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(data) = span.extensions_mut().get_mut::<TraceData>() {
            data.fields.extend(fields.values);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        // More verbose than kept (an ERROR is always looked at: it marks its span).
        if level > self.event_level && level != Level::ERROR {
            return;
        }
        let Some(span) = ctx.event_span(event) else { return };
        // The common case (an unsampled trace, or no trace) under a read lock only.
        if !span.extensions().get::<TraceData>().is_some_and(|d| d.ctx.sampled) {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let mut ext = span.extensions_mut();
        let Some(data) = ext.get_mut::<TraceData>() else { return };
        if level == Level::ERROR && data.error.is_none() {
            data.error = Some(describe_error(&fields));
        }
        if level > self.event_level {
            return;
        }
        let bytes = fields.bytes();
        if data.events.len() >= MAX_EVENTS_PER_SPAN || data.event_bytes + bytes > MAX_EVENT_BYTES_PER_SPAN {
            data.events_dropped = data.events_dropped.saturating_add(1);
            return;
        }
        data.event_bytes += bytes;
        data.events.push(RawEvent {
            unix_ns: clock().unix_ns(Instant::now()),
            level: level.as_str(),
            target: event.metadata().target(),
            message: fields.message,
            fields: fields.values,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut data) = span.extensions_mut().remove::<TraceData>().filter(|d| d.ctx.sampled) else {
            return;
        };
        let error = data.error.take().or_else(|| {
            data.fields
                .get(ERROR_FIELD)
                .filter(|e| !e.is_empty() && *e != "false")
                .map(|e| bounded(e.clone()))
        });
        self.buffer.push(RawSpan {
            trace_id: data.ctx.trace_id,
            span_id: data.ctx.span_id,
            parent: data.parent,
            name: span.name(),
            target: span.metadata().target(),
            node: self.node,
            start_unix_ns: data.start_unix_ns,
            duration_ns: data.started.elapsed().as_nanos() as u64,
            fields: data.fields,
            events: data.events,
            events_dropped: data.events_dropped,
            error,
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

/// The current span's trace context as Foundation's handles carry it (installed as the hook
/// in `foundation_core::trace_context` by [`layer`](crate::layer)).
pub fn current_parent() -> Option<TraceParent> {
    current_context().map(TraceParent::from)
}
