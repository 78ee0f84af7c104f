//! What to read from a store: filters, order and a limit ([`EventQuery`]).

use serde_json::Value;

use super::event::{Event, EventId, to_pointer};

/// The number of events a query returns when it names no limit.
pub const DEFAULT_LIMIT: usize = 1_000;
/// The largest limit a query may ask for; page with [`EventQuery::after`] for more.
pub const MAX_LIMIT: usize = 100_000;

/// Oldest first (by id) or newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Increasing id (the order of appends).
    #[default]
    Ascending,
    /// Decreasing id.
    Descending,
}

/// A query: every filter given must match (AND); the result is ordered by id and limited.
///
/// ```
/// use foundation_core::events::{EventQuery, Order};
///
/// let q = EventQuery::new()
///     .event_type("order.placed")
///     .tenant("acme")
///     .between(1_700_000_000_000, 1_800_000_000_000)
///     .field_eq("status", "paid")
///     .order(Order::Descending)
///     .limit(50);
/// assert_eq!(q.limit, Some(50));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// Only events of one of these types (any type if empty).
    pub event_types: Vec<String>,
    /// Only events at or after this time (ms since the Unix epoch).
    pub from_ms: Option<i64>,
    /// Only events before this time (exclusive).
    pub to_ms: Option<i64>,
    /// Only events of this correlation id.
    pub correlation_id: Option<String>,
    /// Only events caused by this event (its direct consequences).
    pub causation_id: Option<EventId>,
    /// Only this tenant's events.
    pub tenant: Option<String>,
    /// Only events of this stream.
    pub stream: Option<String>,
    /// With [`stream`](Self::stream): only its events with a greater version.
    pub after_version: Option<u64>,
    /// Payload fields (JSON pointer or dotted path) that must equal these values. Numbers
    /// compare by value (`3` equals `3.0`); numeric path segments index arrays.
    pub fields: Vec<(String, Value)>,
    /// Only events with an id greater than this (for paging and resuming).
    pub after: Option<EventId>,
    /// Order by id.
    pub order: Order,
    /// At most this many events ([`DEFAULT_LIMIT`] if `None`, at most [`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

impl EventQuery {
    /// A query matching every event (up to the default limit).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a type to match (events of any of the types given match).
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_types.push(event_type.into());
        self
    }

    /// Only events in `[from_ms, to_ms)`.
    pub fn between(mut self, from_ms: i64, to_ms: i64) -> Self {
        self.from_ms = Some(from_ms);
        self.to_ms = Some(to_ms);
        self
    }

    /// Only events at or after `from_ms`.
    pub fn since(mut self, from_ms: i64) -> Self {
        self.from_ms = Some(from_ms);
        self
    }

    /// Only events of this correlation id.
    pub fn correlation(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Only events directly caused by this one.
    pub fn caused_by(mut self, id: EventId) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Only this tenant's events.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Only events of this stream.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only events of this stream with a version greater than `version` (0: all of them).
    pub fn stream_after(mut self, stream: impl Into<String>, version: u64) -> Self {
        self.stream = Some(stream.into());
        self.after_version = Some(version);
        self
    }

    /// Only events whose payload has this value at `path` (`a.b` or `/a/b`).
    pub fn field_eq(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.push((path.into(), value.into()));
        self
    }

    /// Only events with an id greater than `id`.
    pub fn after(mut self, id: EventId) -> Self {
        self.after = Some(id);
        self
    }

    /// Sets the order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Sets the limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The limit in force, or why the query is refused.
    pub(crate) fn checked_limit(&self) -> Result<usize, String> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(format!("limit {limit} is outside 1..={MAX_LIMIT}; page with `after` for more"));
        }
        if let (Some(from), Some(to)) = (self.from_ms, self.to_ms)
            && from > to
        {
            return Err(format!("time range is empty: from {from} is after to {to}"));
        }
        if self.after_version.is_some() && self.stream.is_none() {
            return Err("`after_version` needs a stream".into());
        }
        for (path, value) in &self.fields {
            if path.is_empty() {
                return Err("a payload field path is empty".into());
            }
            if path.contains('"') {
                return Err(format!("payload field path `{path}` contains a double quote"));
            }
            if value.is_array() || value.is_object() {
                return Err(format!("payload field `{path}` must be compared with a scalar, not {value}"));
            }
        }
        Ok(limit)
    }

    /// Whether an event passes every filter (the in-memory backend's test).
    pub(crate) fn matches(&self, event: &Event) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && self.from_ms.is_none_or(|f| event.timestamp_ms >= f)
            && self.to_ms.is_none_or(|t| event.timestamp_ms < t)
            && self.correlation_id.as_ref().is_none_or(|c| event.correlation_id.as_ref() == Some(c))
            && self.causation_id.is_none_or(|c| event.causation_id == Some(c))
            && self.tenant.as_ref().is_none_or(|t| event.tenant.as_ref() == Some(t))
            && self.stream.as_ref().is_none_or(|s| event.stream.as_ref().is_some_and(|p| p.stream == *s))
            && self.after_version.is_none_or(|v| event.stream.as_ref().is_some_and(|p| p.version > v))
            && self.after.is_none_or(|a| event.id > a)
            && self.fields.iter().all(|(path, value)| {
                lookup(&event.payload, path).is_some_and(|found| scalar_eq(found, value))
            })
    }
}

/// The value at a payload path, read as SQLite's backend reads it: a numeric segment indexes an
/// array (never an object key), other segments are object keys.
fn lookup<'a>(payload: &'a Value, path: &str) -> Option<&'a Value> {
    let pointer = to_pointer(path);
    let mut at = payload;
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        let numeric = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
        at = match at {
            Value::Array(items) if numeric => items.get(segment.parse::<usize>().ok()?)?,
            Value::Object(map) if !numeric => map.get(&segment)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Payload comparison: numbers by value (`3` equals `3.0`, as in SQLite), the rest exactly.
fn scalar_eq(found: &Value, wanted: &Value) -> bool {
    match (found, wanted) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        },
        _ => found == wanted,
    }
}

/// An event and the events it caused, transitively: the answer to "what followed from this?".
#[derive(Debug, Clone, PartialEq)]
pub struct CausalTree {
    /// The event at this node of the tree.
    pub event: Event,
    /// The events it caused directly, each with its own consequences, in id order.
    pub consequences: Vec<CausalTree>,
}

impl CausalTree {
    /// Every event in the tree, depth first (the root first).
    pub fn events(&self) -> Vec<&Event> {
        let mut out = vec![&self.event];
        for child in &self.consequences {
            out.extend(child.events());
        }
        out
    }

    /// The number of events in the tree.
    pub fn len(&self) -> usize {
        1 + self.consequences.iter().map(CausalTree::len).sum::<usize>()
    }

    /// Always false: a tree holds at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }
}
