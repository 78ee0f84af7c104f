//! The in-memory backend: everything in maps, gone with the process. For tests, caches of
//! derived events and single-process tools.

use crate::sync::RwLockRecover;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

use super::backend::{EventBackend, EventStoreError, ExpectedVersion, Snapshot, StoreStats};
use super::event::{Event, EventId, NewEvent, StreamPosition, now_ms};
use super::query::{EventQuery, Order};
use super::retention::{Retention, RetentionReport};

#[derive(Default)]
struct State {
    events: BTreeMap<EventId, Event>,
    by_correlation: HashMap<String, BTreeSet<EventId>>,
    by_causation: HashMap<EventId, BTreeSet<EventId>>,
    /// Each stream's event ids, in version order (version = index + 1).
    streams: HashMap<String, Vec<EventId>>,
    snapshots: HashMap<String, Snapshot>,
    checkpoints: HashMap<String, EventId>,
    last_id: EventId,
    unstreamed: u64,
    unstreamed_bytes: u64,
}

impl State {
    fn insert(&mut self, new: NewEvent, stream: Option<StreamPosition>) -> Event {
        self.last_id += 1;
        let event = Event {
            id: self.last_id,
            event_type: new.event_type,
            schema_version: new.schema_version,
            timestamp_ms: new.timestamp_ms.unwrap_or_else(now_ms),
            correlation_id: new.correlation_id,
            causation_id: new.causation_id,
            tenant: new.tenant,
            stream,
            payload: new.payload,
        };
        if let Some(c) = &event.correlation_id {
            self.by_correlation.entry(c.clone()).or_default().insert(event.id);
        }
        if let Some(c) = event.causation_id {
            self.by_causation.entry(c).or_default().insert(event.id);
        }
        match &event.stream {
            Some(p) => self.streams.entry(p.stream.clone()).or_default().push(event.id),
            None => {
                self.unstreamed += 1;
                self.unstreamed_bytes += payload_bytes(&event);
            }
        }
        self.events.insert(event.id, event.clone());
        event
    }

    fn remove(&mut self, id: EventId) {
        let Some(event) = self.events.remove(&id) else { return };
        if let Some(c) = &event.correlation_id
            && let Some(set) = self.by_correlation.get_mut(c)
        {
            set.remove(&id);
            if set.is_empty() {
                self.by_correlation.remove(c);
            }
        }
        if let Some(c) = event.causation_id
            && let Some(set) = self.by_causation.get_mut(&c)
        {
            set.remove(&id);
            if set.is_empty() {
                self.by_causation.remove(&c);
            }
        }
        if event.stream.is_none() {
            self.unstreamed -= 1;
            self.unstreamed_bytes -= payload_bytes(&event);
        }
    }
}

fn payload_bytes(event: &Event) -> u64 {
    serde_json::to_vec(&event.payload).map(|v| v.len() as u64).unwrap_or(0)
}

/// Events kept in this process's memory (see the module docs).
#[derive(Default)]
pub struct MemoryBackend {
    state: RwLock<State>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read_or_recover()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write_or_recover()
    }
}

impl EventBackend for MemoryBackend {
    fn blocking(&self) -> bool {
        false
    }

    fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventStoreError> {
        let mut state = self.write();
        Ok(events.into_iter().map(|e| state.insert(e, None)).collect())
    }

    fn append_to_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, EventStoreError> {
        let mut state = self.write();
        let current = state.streams.get(stream).map_or(0, |s| s.len() as u64);
        expected.check(stream, current)?;
        Ok(events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let position = StreamPosition { stream: stream.to_string(), version: current + 1 + i as u64 };
                state.insert(e, Some(position))
            })
            .collect())
    }

    fn query(&self, query: &EventQuery, limit: usize) -> Result<Vec<Event>, EventStoreError> {
        let state = self.read();
        // The narrowest index the query names, else every event (from `after` on).
        let candidates: Box<dyn DoubleEndedIterator<Item = &EventId>> =
            if let Some(set) = query.correlation_id.as_ref().map(|c| state.by_correlation.get(c)) {
                match set {
                    Some(set) => Box::new(set.iter()),
                    None => return Ok(Vec::new()),
                }
            } else if let Some(set) = query.causation_id.map(|c| state.by_causation.get(&c)) {
                match set {
                    Some(set) => Box::new(set.iter()),
                    None => return Ok(Vec::new()),
                }
            } else if let Some(ids) = query.stream.as_ref().map(|s| state.streams.get(s)) {
                match ids {
                    // Version v is at index v - 1.
                    Some(ids) => Box::new(ids.iter().skip(query.after_version.unwrap_or(0) as usize)),
                    None => return Ok(Vec::new()),
                }
            } else {
                let from = query.after.map_or(0, |a| a + 1);
                Box::new(state.events.range(from..).map(|(id, _)| id))
            };
        let candidates: Box<dyn Iterator<Item = &EventId>> = match query.order {
            Order::Ascending => candidates,
            Order::Descending => Box::new(candidates.rev()),
        };
        Ok(candidates
            .filter_map(|id| state.events.get(id))
            .filter(|e| query.matches(e))
            .take(limit)
            .cloned()
            .collect())
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, EventStoreError> {
        Ok(self.read().events.get(&id).cloned())
    }

    fn caused_by(&self, ids: &[EventId]) -> Result<Vec<Event>, EventStoreError> {
        let state = self.read();
        let mut out: Vec<Event> = ids
            .iter()
            .filter_map(|id| state.by_causation.get(id))
            .flatten()
            .filter_map(|id| state.events.get(id).cloned())
            .collect();
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    fn stream_version(&self, stream: &str) -> Result<u64, EventStoreError> {
        Ok(self.read().streams.get(stream).map_or(0, |s| s.len() as u64))
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), EventStoreError> {
        let mut state = self.write();
        if state.snapshots.get(&snapshot.stream).is_none_or(|s| s.version < snapshot.version) {
            state.snapshots.insert(snapshot.stream.clone(), snapshot.clone());
        }
        Ok(())
    }

    fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, EventStoreError> {
        Ok(self.read().snapshots.get(stream).cloned())
    }

    fn save_checkpoint(&self, name: &str, position: EventId) -> Result<(), EventStoreError> {
        let mut state = self.write();
        let recorded = state.checkpoints.entry(name.to_string()).or_insert(0);
        *recorded = (*recorded).max(position);
        Ok(())
    }

    fn load_checkpoint(&self, name: &str) -> Result<EventId, EventStoreError> {
        Ok(self.read().checkpoints.get(name).copied().unwrap_or(0))
    }

    fn apply_retention(
        &self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<RetentionReport, EventStoreError> {
        let mut state = self.write();
        let mut report = RetentionReport::default();
        if let Some(age) = retention.max_age {
            let cutoff = now_ms.saturating_sub(age.as_millis() as i64);
            let old: Vec<EventId> = state
                .events
                .values()
                .filter(|e| e.stream.is_none() && e.timestamp_ms < cutoff)
                .map(|e| e.id)
                .collect();
            report.expired = old.len() as u64;
            old.into_iter().for_each(|id| state.remove(id));
        }
        // Oldest first, in one pass over the events outside streams.
        let (mut count, mut bytes) = (state.unstreamed, state.unstreamed_bytes);
        let mut evict = Vec::new();
        for event in state.events.values().filter(|e| e.stream.is_none()) {
            let over = retention.max_events.is_some_and(|m| count > m)
                || retention.max_payload_bytes.is_some_and(|m| bytes > m);
            if !over {
                break;
            }
            count -= 1;
            bytes = bytes.saturating_sub(payload_bytes(event));
            evict.push(event.id);
        }
        report.evicted = evict.len() as u64;
        evict.into_iter().for_each(|id| state.remove(id));
        Ok(report)
    }

    fn stats(&self) -> Result<StoreStats, EventStoreError> {
        let state = self.read();
        Ok(StoreStats {
            events: state.events.len() as u64,
            unstreamed_events: state.unstreamed,
            unstreamed_payload_bytes: state.unstreamed_bytes,
            last_id: state.last_id,
        })
    }
}
