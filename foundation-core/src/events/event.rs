//! What an event is: the record a store keeps ([`Event`]) and what a caller hands it ([`NewEvent`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event's identity: its position in the store's single, gap-tolerant, increasing order.
///
/// Positions are assigned at append and never reused; events appended later have higher
/// positions. Retention may remove old positions, so readers resume "after position P", never
/// "at index P".
pub type EventId = u64;

/// Where an event sits in a stream (an aggregate's journal): the stream's name and the event's
/// version in it, counted from 1 without gaps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The stream's name, e.g. `order-42`.
    pub stream: String,
    /// The event's version in that stream: 1 for the first event.
    pub version: u64,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its position in the store (see [`EventId`]).
    pub id: EventId,
    /// What happened, e.g. `order.placed`.
    pub event_type: String,
    /// The version of the payload's schema for this type (1 unless the caller says otherwise).
    pub schema_version: u32,
    /// When it happened, in milliseconds since the Unix epoch (the store's clock unless given).
    pub timestamp_ms: i64,
    /// The operation it belongs to: every event of one request, job or conversation shares it.
    pub correlation_id: Option<String>,
    /// The event that caused this one, if any.
    pub causation_id: Option<EventId>,
    /// The tenant it belongs to; `None` for the system's own events.
    pub tenant: Option<String>,
    /// Its place in a stream, for events appended to one (aggregates' journals).
    pub stream: Option<StreamPosition>,
    /// The data, as JSON.
    pub payload: Value,
}

impl Event {
    /// The payload field at a JSON pointer (`/order/total`) or dotted path (`order.total`).
    pub fn field(&self, path: &str) -> Option<&Value> {
        let pointer = to_pointer(path);
        self.payload.pointer(&pointer)
    }
}

/// A dotted path (`a.b.0`) as a JSON pointer (`/a/b/0`); a pointer is returned unchanged.
pub(crate) fn to_pointer(path: &str) -> String {
    if path.starts_with('/') || path.is_empty() {
        return path.to_string();
    }
    let mut pointer = String::with_capacity(path.len() + 1);
    for part in path.split('.') {
        pointer.push('/');
        pointer.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    pointer
}

/// An event to append: the store assigns its id, and its timestamp unless one is given.
///
/// ```
/// use foundation_core::events::NewEvent;
///
/// let placed = NewEvent::new("order.placed", serde_json::json!({"order": 42, "total": 99.5}))
///     .correlation("req-7")
///     .tenant("acme")
///     .schema_version(2);
/// assert_eq!(placed.event_type, "order.placed");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened.
    pub event_type: String,
    /// The payload's schema version (default 1).
    pub schema_version: u32,
    /// When it happened (ms since the Unix epoch); `None`: when it is appended.
    pub timestamp_ms: Option<i64>,
    /// The operation it belongs to.
    pub correlation_id: Option<String>,
    /// The event that caused it.
    pub causation_id: Option<EventId>,
    /// The tenant it belongs to.
    pub tenant: Option<String>,
    /// The data.
    pub payload: Value,
}

impl NewEvent {
    /// An event of this type with this payload, schema version 1, no correlation or tenant.
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        NewEvent {
            event_type: event_type.into(),
            schema_version: 1,
            timestamp_ms: None,
            correlation_id: None,
            causation_id: None,
            tenant: None,
            payload,
        }
    }

    /// Sets the payload's schema version.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Sets the timestamp (ms since the Unix epoch) instead of the store's clock.
    pub fn at(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Sets the correlation id.
    pub fn correlation(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Records the event that caused this one, and takes its correlation id unless one is set.
    pub fn caused_by(mut self, cause: &Event) -> Self {
        self.causation_id = Some(cause.id);
        if self.correlation_id.is_none() {
            self.correlation_id = cause.correlation_id.clone();
        }
        self
    }

    /// Records the cause by id alone.
    pub fn caused_by_id(mut self, cause: EventId) -> Self {
        self.causation_id = Some(cause);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Checks what the store refuses: an empty or oversized type, tenant or correlation id.
    pub(crate) fn validate(&self) -> Result<(), String> {
        fn text(what: &str, value: &str) -> Result<(), String> {
            if value.is_empty() {
                return Err(format!("{what} is empty"));
            }
            if value.len() > MAX_NAME_BYTES {
                return Err(format!("{what} is {} bytes, over the limit of {MAX_NAME_BYTES}", value.len()));
            }
            Ok(())
        }
        text("event type", &self.event_type)?;
        if let Some(c) = &self.correlation_id {
            text("correlation id", c)?;
        }
        if let Some(t) = &self.tenant {
            text("tenant", t)?;
        }
        Ok(())
    }
}

/// The longest event type, correlation id, tenant or stream name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
