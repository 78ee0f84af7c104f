//! The durable backend: one SQLite file (SQLite is compiled in), in WAL mode.
//!
//! **Durability.** Every append is one transaction: all its events are stored or none is, and
//! an append that returned is on disk in the sense the [`Synchronous`] setting gives:
//! - [`Synchronous::Normal`] (the default): the WAL is written at commit and synced at
//!   checkpoints. A process crash (even `kill -9`) loses no committed event; a power loss or OS
//!   crash may lose the last transactions committed before it (never half of one).
//! - [`Synchronous::Full`]: the WAL is synced at every commit; a power loss loses nothing that
//!   was acknowledged, at the cost of one fsync per append (batch appends to amortize it).
//!
//! A write connection and a read connection (WAL lets reads proceed during a write). Several
//! processes may share the file: writes take SQLite's write lock for their whole transaction
//! (`BEGIN IMMEDIATE`, waiting up to 5 s for another writer), and the counts retention works
//! from are kept in the file, changed in the same transactions.

use crate::sync::MutexRecover;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::Value as SqlValue;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params, params_from_iter,
};
use serde_json::Value;

use super::backend::{EventBackend, EventStoreError, ExpectedVersion, Snapshot, StoreStats};
use super::event::{Event, EventId, NewEvent, StreamPosition, now_ms};
use super::query::{EventQuery, Order};
use super::retention::{Retention, RetentionReport};

/// How hard SQLite works to keep a commit through a power loss (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Safe against process crashes; the last commits may be lost to a power loss.
    #[default]
    Normal,
    /// An fsync per commit: safe against power loss.
    Full,
}

/// Where and how to open a SQLite event store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file (created if missing).
    pub path: PathBuf,
    /// The fsync policy.
    pub synchronous: Synchronous,
}

impl SqliteOptions {
    /// A file at `path`, with the default policy ([`Synchronous::Normal`]).
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteOptions { path: path.as_ref().to_path_buf(), synchronous: Synchronous::Normal }
    }

    /// Sets the fsync policy.
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    correlation_id TEXT,
    causation_id INTEGER,
    tenant TEXT,
    stream TEXT,
    stream_version INTEGER,
    payload TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream ON events(stream, stream_version) WHERE stream IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_correlation ON events(correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_causation ON events(causation_id) WHERE causation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_type_time ON events(event_type, timestamp_ms);
CREATE INDEX IF NOT EXISTS events_tenant_time ON events(tenant, timestamp_ms) WHERE tenant IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_time ON events(timestamp_ms);
CREATE TABLE IF NOT EXISTS snapshots (stream TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counts (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    unstreamed INTEGER NOT NULL,
    unstreamed_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
";

const COLUMNS: &str = "id, event_type, schema_version, timestamp_ms, correlation_id, causation_id, tenant, stream, stream_version, payload";

/// Events in a SQLite file (see the module docs).
pub struct SqliteBackend {
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
}

struct Writer {
    conn: Connection,
}

fn storage(e: impl Into<crate::BoxError>) -> EventStoreError {
    EventStoreError::Storage(e.into())
}

impl SqliteBackend {
    /// Opens (or creates) the store.
    pub fn open(options: &SqliteOptions) -> Result<Self, EventStoreError> {
        let open = |flags| {
            Connection::open_with_flags(&options.path, flags).map_err(|e| {
                EventStoreError::Storage(format!("cannot open {}: {e}", options.path.display()).into())
            })
        };
        let conn = open(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        // Before anything takes a lock (switching to WAL does): a second process opening a fresh
        // file while the first creates the schema waits instead of failing with "busy".
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(storage)?;
        let sync = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; {SCHEMA}"
        ))
        .map_err(|e| {
            EventStoreError::Storage(
                format!("{} is not a usable event store: {e}", options.path.display()).into(),
            )
        })?;
        // The counts retention bounds, kept in the file and changed in the same transactions as
        // the events, so that every process sharing the file sees them exact. Computed once for
        // a file written before the table existed.
        let has_counts: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM counts)", [], |r| r.get(0)).map_err(storage)?;
        if !has_counts {
            conn.execute(
                "INSERT OR IGNORE INTO counts (id, unstreamed, unstreamed_bytes)
                 SELECT 1, count(*), coalesce(sum(octet_length(payload)), 0) FROM events WHERE stream IS NULL",
                [],
            )
            .map_err(storage)?;
        }
        let reader = open(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        reader.execute_batch("PRAGMA busy_timeout = 5000;").map_err(storage)?;
        Ok(SqliteBackend { writer: Mutex::new(Writer { conn }), reader: Mutex::new(reader) })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock_or_recover()
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock_or_recover()
    }
}

/// Starts a write transaction that takes the write lock at once (`BEGIN IMMEDIATE`): a read
/// inside it (a stream's version) cannot be overtaken by another process's commit, and waiting
/// for another writer honours the busy timeout instead of failing with "busy" at the first write.
fn begin(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, EventStoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)
}

/// A stream's version (0 if it has no events), on the writer's transaction or the reader.
fn version_of(conn: &Connection, stream: &str) -> Result<u64, EventStoreError> {
    let v: i64 = conn
        .query_row("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream = ?1", [stream], |r| {
            r.get(0)
        })
        .map_err(storage)?;
    Ok(v as u64)
}

fn row_to_event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let payload: String = row.get(9)?;
    let stream: Option<String> = row.get(7)?;
    let version: Option<i64> = row.get(8)?;
    Ok(Event {
        id: row.get::<_, i64>(0)? as u64,
        event_type: row.get(1)?,
        schema_version: row.get::<_, i64>(2)? as u32,
        timestamp_ms: row.get(3)?,
        correlation_id: row.get(4)?,
        causation_id: row.get::<_, Option<i64>>(5)?.map(|c| c as u64),
        tenant: row.get(6)?,
        stream: stream.map(|stream| StreamPosition { stream, version: version.unwrap_or(0) as u64 }),
        payload: serde_json::from_str(&payload).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

/// Inserts events in the open transaction; returns them as stored and their payload bytes.
fn insert_all(
    tx: &rusqlite::Transaction<'_>,
    events: Vec<NewEvent>,
    stream: Option<(&str, u64)>,
) -> Result<(Vec<Event>, u64), EventStoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO events (event_type, schema_version, timestamp_ms, correlation_id, causation_id, tenant, stream, stream_version, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(storage)?;
    let mut stored = Vec::with_capacity(events.len());
    let mut bytes = 0;
    for (i, new) in events.into_iter().enumerate() {
        let payload = serde_json::to_string(&new.payload).map_err(storage)?;
        bytes += payload.len() as u64;
        let timestamp_ms = new.timestamp_ms.unwrap_or_else(now_ms);
        let position = stream
            .map(|(s, current)| StreamPosition { stream: s.to_string(), version: current + 1 + i as u64 });
        stmt.execute(params![
            new.event_type,
            new.schema_version,
            timestamp_ms,
            new.correlation_id,
            new.causation_id.map(|c| c as i64),
            new.tenant,
            position.as_ref().map(|p| p.stream.as_str()),
            position.as_ref().map(|p| p.version as i64),
            payload,
        ])
        .map_err(storage)?;
        stored.push(Event {
            id: tx.last_insert_rowid() as u64,
            event_type: new.event_type,
            schema_version: new.schema_version,
            timestamp_ms,
            correlation_id: new.correlation_id,
            causation_id: new.causation_id,
            tenant: new.tenant,
            stream: position,
            payload: new.payload,
        });
    }
    Ok((stored, bytes))
}

/// A payload path as SQLite's JSON path: `a.b.0` and `/a/b/0` become `$."a"."b"[0]` (numeric
/// segments index arrays).
fn json_path(path: &str) -> String {
    let parts: Vec<&str> = if let Some(pointer) = path.strip_prefix('/') {
        pointer.split('/').collect()
    } else {
        path.split('.').collect()
    };
    let mut out = String::from("$");
    for part in parts {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            out.push_str(&format!(".\"{}\"", part.replace('"', "\\\"")));
        }
    }
    out
}

/// The WHERE clause and parameters of a query.
fn where_clause(query: &EventQuery) -> (String, Vec<SqlValue>) {
    let mut terms: Vec<String> = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    let param = |v: SqlValue, params: &mut Vec<SqlValue>| {
        params.push(v);
        format!("?{}", params.len())
    };
    if !query.event_types.is_empty() {
        let list: Vec<String> =
            query.event_types.iter().map(|t| param(SqlValue::Text(t.clone()), &mut params)).collect();
        terms.push(format!("event_type IN ({})", list.join(", ")));
    }
    if let Some(from) = query.from_ms {
        terms.push(format!("timestamp_ms >= {}", param(SqlValue::Integer(from), &mut params)));
    }
    if let Some(to) = query.to_ms {
        terms.push(format!("timestamp_ms < {}", param(SqlValue::Integer(to), &mut params)));
    }
    if let Some(c) = &query.correlation_id {
        terms.push(format!("correlation_id = {}", param(SqlValue::Text(c.clone()), &mut params)));
    }
    if let Some(c) = query.causation_id {
        terms.push(format!("causation_id = {}", param(SqlValue::Integer(c as i64), &mut params)));
    }
    if let Some(t) = &query.tenant {
        terms.push(format!("tenant = {}", param(SqlValue::Text(t.clone()), &mut params)));
    }
    if let Some(s) = &query.stream {
        terms.push(format!("stream = {}", param(SqlValue::Text(s.clone()), &mut params)));
    }
    if let Some(v) = query.after_version {
        terms.push(format!("stream_version > {}", param(SqlValue::Integer(v as i64), &mut params)));
    }
    if let Some(a) = query.after {
        terms.push(format!("id > {}", param(SqlValue::Integer(a as i64), &mut params)));
    }
    for (path, value) in &query.fields {
        let p = param(SqlValue::Text(json_path(path)), &mut params);
        // `json_type` keeps the comparison exact: 1 does not match `true`, "1" does not match 1.
        let term = match value {
            Value::Null => format!("json_type(payload, {p}) = 'null'"),
            Value::Bool(b) => format!("json_type(payload, {p}) = '{b}'"),
            Value::Number(n) => {
                let v = match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => SqlValue::Integer(i),
                    (None, Some(f)) => SqlValue::Real(f),
                    _ => SqlValue::Null,
                };
                let v = param(v, &mut params);
                format!("json_type(payload, {p}) IN ('integer', 'real') AND json_extract(payload, {p}) = {v}")
            }
            Value::String(s) => {
                let v = param(SqlValue::Text(s.clone()), &mut params);
                format!("json_type(payload, {p}) = 'text' AND json_extract(payload, {p}) = {v}")
            }
            // Refused by `EventQuery::checked_limit` before a backend sees it.
            Value::Array(_) | Value::Object(_) => "0".to_string(),
        };
        terms.push(term);
    }
    let clause = if terms.is_empty() { String::new() } else { format!("WHERE {}", terms.join(" AND ")) };
    (clause, params)
}

impl EventBackend for SqliteBackend {
    fn blocking(&self) -> bool {
        true
    }

    fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventStoreError> {
        let mut writer = self.writer();
        let tx = begin(&mut writer.conn)?;
        let (stored, bytes) = insert_all(&tx, events, None)?;
        tx.execute(
            "UPDATE counts SET unstreamed = unstreamed + ?1, unstreamed_bytes = unstreamed_bytes + ?2",
            params![stored.len() as i64, bytes as i64],
        )
        .map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(stored)
    }

    fn append_to_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, EventStoreError> {
        let mut writer = self.writer();
        let tx = begin(&mut writer.conn)?;
        let current = version_of(&tx, stream)?;
        expected.check(stream, current)?;
        // The unique (stream, stream_version) index is the backstop if another process raced us
        // between the read and the insert: the insert fails, the transaction rolls back.
        let (stored, _) = insert_all(&tx, events, Some((stream, current)))?;
        tx.commit().map_err(storage)?;
        Ok(stored)
    }

    fn query(&self, query: &EventQuery, limit: usize) -> Result<Vec<Event>, EventStoreError> {
        let (clause, mut params) = where_clause(query);
        let order = match query.order {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        };
        params.push(SqlValue::Integer(limit as i64));
        let sql =
            format!("SELECT {COLUMNS} FROM events {clause} ORDER BY id {order} LIMIT ?{}", params.len());
        let reader = self.reader();
        let mut stmt = reader.prepare_cached(&sql).map_err(storage)?;
        let rows = stmt.query_map(params_from_iter(params), row_to_event).map_err(storage)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(storage)
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, EventStoreError> {
        let reader = self.reader();
        let mut stmt =
            reader.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1")).map_err(storage)?;
        stmt.query_row([id as i64], row_to_event).optional().map_err(storage)
    }

    fn caused_by(&self, ids: &[EventId]) -> Result<Vec<Event>, EventStoreError> {
        let reader = self.reader();
        let mut stmt = reader
            .prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE causation_id = ?1 ORDER BY id"))
            .map_err(storage)?;
        let mut out = Vec::new();
        for id in ids {
            let rows = stmt.query_map([*id as i64], row_to_event).map_err(storage)?;
            for row in rows {
                out.push(row.map_err(storage)?);
            }
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    fn stream_version(&self, stream: &str) -> Result<u64, EventStoreError> {
        version_of(&self.reader(), stream)
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), EventStoreError> {
        let state = serde_json::to_string(&snapshot.state).map_err(storage)?;
        self.writer()
            .conn
            .execute(
                "INSERT INTO snapshots (stream, version, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT(stream) DO UPDATE SET version = excluded.version, state = excluded.state
                 WHERE excluded.version > snapshots.version",
                params![snapshot.stream, snapshot.version as i64, state],
            )
            .map_err(storage)?;
        Ok(())
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, EventStoreError> {
        let reader = self.reader();
        let row: Option<(i64, String)> = reader
            .query_row("SELECT version, state FROM snapshots WHERE stream = ?1", [stream], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(storage)?;
        row.map(|(version, state)| {
            Ok(Snapshot {
                stream: stream.to_string(),
                version: version as u64,
                state: serde_json::from_str(&state).map_err(storage)?,
            })
        })
        .transpose()
    }

    fn save_checkpoint(&self, name: &str, position: EventId) -> Result<(), EventStoreError> {
        self.writer()
            .conn
            .execute(
                "INSERT INTO checkpoints (name, position) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET position = max(position, excluded.position)",
                params![name, position as i64],
            )
            .map_err(storage)?;
        Ok(())
    }

    fn load_checkpoint(&self, name: &str) -> Result<EventId, EventStoreError> {
        let reader = self.reader();
        let p: Option<i64> = reader
            .query_row("SELECT position FROM checkpoints WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(storage)?;
        Ok(p.unwrap_or(0) as u64)
    }

    fn apply_retention(
        &self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<RetentionReport, EventStoreError> {
        let mut writer = self.writer();
        let mut report = RetentionReport::default();
        let tx = begin(&mut writer.conn)?;
        let (unstreamed, unstreamed_bytes): (i64, i64) = tx
            .query_row("SELECT unstreamed, unstreamed_bytes FROM counts", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(storage)?;
        let (mut unstreamed, mut unstreamed_bytes) =
            (unstreamed.max(0) as u64, unstreamed_bytes.max(0) as u64);
        if let Some(age) = retention.max_age {
            let cutoff = now_ms.saturating_sub(age.as_millis() as i64);
            let (n, b): (i64, i64) = tx
                .query_row(
                    "SELECT count(*), coalesce(sum(octet_length(payload)), 0) FROM events WHERE stream IS NULL AND timestamp_ms < ?1",
                    [cutoff],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(storage)?;
            tx.execute("DELETE FROM events WHERE stream IS NULL AND timestamp_ms < ?1", [cutoff])
                .map_err(storage)?;
            report.expired = n as u64;
            unstreamed = unstreamed.saturating_sub(n as u64);
            unstreamed_bytes = unstreamed_bytes.saturating_sub(b as u64);
        }
        // Oldest first, in chunks, until under both bounds.
        loop {
            let over_count = retention.max_events.map_or(0, |m| unstreamed.saturating_sub(m));
            let over_bytes = retention.max_payload_bytes.map_or(0, |m| unstreamed_bytes.saturating_sub(m));
            if over_count == 0 && over_bytes == 0 {
                break;
            }
            let mut stmt = tx
                .prepare_cached("SELECT id, octet_length(payload) FROM events WHERE stream IS NULL ORDER BY id LIMIT 1000")
                .map_err(storage)?;
            let oldest: Vec<(i64, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(storage)?
                .collect::<Result<_, _>>()
                .map_err(storage)?;
            if oldest.is_empty() {
                break;
            }
            let (mut n, mut b) = (0u64, 0u64);
            let mut last = 0;
            for (id, len) in oldest {
                if n >= over_count && b >= over_bytes {
                    break;
                }
                n += 1;
                b += len as u64;
                last = id;
            }
            tx.execute("DELETE FROM events WHERE stream IS NULL AND id <= ?1", [last]).map_err(storage)?;
            report.evicted += n;
            unstreamed = unstreamed.saturating_sub(n);
            unstreamed_bytes = unstreamed_bytes.saturating_sub(b);
        }
        tx.execute(
            "UPDATE counts SET unstreamed = ?1, unstreamed_bytes = ?2",
            params![unstreamed as i64, unstreamed_bytes as i64],
        )
        .map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(report)
    }

    fn stats(&self) -> Result<StoreStats, EventStoreError> {
        let reader = self.reader();
        let (events, last_id, unstreamed, unstreamed_bytes): (i64, i64, i64, i64) = reader
            .query_row(
                "SELECT (SELECT count(*) FROM events),
                        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                        (SELECT unstreamed FROM counts), (SELECT unstreamed_bytes FROM counts)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(storage)?;
        let (unstreamed, unstreamed_bytes) = (unstreamed.max(0) as u64, unstreamed_bytes.max(0) as u64);
        Ok(StoreStats {
            events: events as u64,
            unstreamed_events: unstreamed,
            unstreamed_payload_bytes: unstreamed_bytes,
            last_id: last_id as u64,
        })
    }
}
