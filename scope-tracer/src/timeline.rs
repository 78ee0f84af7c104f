//! Merging the parts of a trace that different nodes recorded into one timeline: parents before
//! their children, siblings by start time, and no child starting before its parent whatever the
//! skew between the nodes' clocks. A span moved to its parent's start takes its events with it;
//! the spans that ended in error are listed in [`Timeline::errors`], in timeline order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::recorder::SpanRecord;

/// A trace as one timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The trace, 32 hex digits.
    pub trace_id: String,
    /// Its spans: every parent before its children, siblings by start.
    pub spans: Vec<SpanRecord>,
    /// Spans whose start was moved to their parent's (their node's clock was behind), with the
    /// shift in nanoseconds.
    pub skew_adjusted: BTreeMap<String, u64>,
    /// Spans whose parent is not in the trace (its node did not answer, or dropped it).
    pub orphans: BTreeSet<String>,
    /// Nodes asked that did not answer.
    pub missing_nodes: BTreeSet<String>,
    /// The spans that ended in error, in timeline order.
    #[serde(default)]
    pub errors: Vec<SpanError>,
}

/// A span that ended in error, named by its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanError {
    /// Its trace, 32 hex digits.
    pub trace_id: String,
    /// The span, 16 hex digits.
    pub span_id: String,
    /// The span's name.
    pub span: String,
    /// The node that recorded it.
    pub node: String,
    /// When the span started (after skew correction), ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Why it ended in error.
    pub message: String,
}

/// Merges spans of one trace from any number of nodes.
pub fn merge(trace_id: &str, spans: Vec<SpanRecord>, missing_nodes: BTreeSet<String>) -> Timeline {
    let mut by_id: BTreeMap<String, SpanRecord> = BTreeMap::new();
    for s in spans.into_iter().filter(|s| s.trace_id == trace_id) {
        by_id.entry(s.span_id.clone()).or_insert(s);
    }
    let mut children: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    let mut orphans = BTreeSet::new();
    for s in by_id.values() {
        let parent = s.parent_span_id.clone().filter(|p| by_id.contains_key(p));
        if s.parent_span_id.is_some() && parent.is_none() {
            orphans.insert(s.span_id.clone());
        }
        children.entry(parent).or_default().push(s.span_id.clone());
    }
    let by_start = |ids: &mut Vec<String>, by_id: &BTreeMap<String, SpanRecord>| {
        ids.sort_by_key(|id| (by_id[id].start_unix_ns, id.clone()));
    };
    let mut roots = children.remove(&None).unwrap_or_default();
    by_start(&mut roots, &by_id);
    let mut ordered = Vec::with_capacity(by_id.len());
    let mut skew_adjusted = BTreeMap::new();
    // Depth first, parents first; a child's start is at least its parent's.
    let mut stack: Vec<(String, u64)> = roots.into_iter().rev().map(|id| (id, 0)).collect();
    while let Some((id, floor)) = stack.pop() {
        let Some(mut span) = by_id.remove(&id) else { continue };
        if span.start_unix_ns < floor {
            let shift = floor - span.start_unix_ns;
            skew_adjusted.insert(span.span_id.clone(), shift);
            span.start_unix_ns = floor;
            for event in &mut span.events {
                event.unix_ns = event.unix_ns.saturating_add(shift);
            }
        }
        if let Some(mut kids) = children.remove(&Some(id.clone())) {
            by_start(&mut kids, &by_id);
            let start = span.start_unix_ns;
            stack.extend(kids.into_iter().rev().map(|k| (k, start)));
        }
        ordered.push(span);
    }
    let errors = ordered
        .iter()
        .filter_map(|s| {
            Some(SpanError {
                trace_id: s.trace_id.clone(),
                span_id: s.span_id.clone(),
                span: s.name.clone(),
                node: s.node.clone(),
                start_unix_ns: s.start_unix_ns,
                message: s.error.clone()?,
            })
        })
        .collect();
    Timeline { trace_id: trace_id.to_string(), spans: ordered, skew_adjusted, orphans, missing_nodes, errors }
}
