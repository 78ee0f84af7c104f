//! The bounded tree of steps behind an [`ErrorContext`](super::ErrorContext).
//!
//! Bounds (see `ErrorContextConfig`): total steps, nesting depth, and per step its first K and
//! last M children. When a step's children overflow, the oldest of the "last" window is evicted
//! with its whole subtree and counted, so a runaway loop keeps its first iterations and the most
//! recent ones (the one that failed among them) in constant memory.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use super::history::{Captured, Outcome, StepRecord};
use crate::config::ErrorContextConfig;

/// At most this many captured values per step; recording an existing key replaces it.
pub const MAX_CAPTURES_PER_STEP: usize = 8;

/// Where a context's new steps go: under a recorded step, or nowhere (a bound was reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Recorded(StepId),
    /// Not recorded; counted against the nearest recorded ancestor, when it still exists.
    Unrecorded,
}

/// A generational index: a reused arena slot never aliases an evicted step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepId {
    index: u32,
    generation: u32,
}

struct Node {
    name: Cow<'static, str>,
    depth: usize,
    start: Duration,
    duration: Option<Duration>,
    outcome: Outcome,
    data: Vec<Captured>,
    first: Vec<StepId>,
    last: VecDeque<StepId>,
    elided: u64,
}

struct Entry {
    generation: u32,
    node: Option<Node>,
}

pub(crate) struct Tree {
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
    pub(crate) unrecorded: u64,
    pub(crate) limits: ErrorContextConfig,
}

impl Tree {
    /// A tree holding only the root step (the operation), started at offset zero.
    pub(crate) fn new(operation: Cow<'static, str>, limits: ErrorContextConfig) -> (Self, StepId) {
        let mut tree = Tree { entries: Vec::new(), free: Vec::new(), live: 0, unrecorded: 0, limits };
        let root = tree.alloc(Node::new(operation, 0, Duration::ZERO));
        (tree, root)
    }

    /// Opens a step under `parent`; returns where its own children go.
    pub(crate) fn begin(&mut self, parent: Slot, name: Cow<'static, str>, start: Duration) -> Slot {
        let Slot::Recorded(parent) = parent else {
            self.unrecorded += 1;
            return Slot::Unrecorded;
        };
        let Some(depth) = self.get(parent).map(|p| p.depth + 1) else {
            // The parent was evicted while it still had running children.
            self.unrecorded += 1;
            return Slot::Unrecorded;
        };
        if depth > self.limits.max_depth || self.live >= self.limits.max_steps {
            self.unrecorded += 1;
            return Slot::Unrecorded;
        }
        let id = self.alloc(Node::new(name, depth, start));
        let (keep_first, keep_last) = (self.limits.keep_first_children, self.limits.keep_last_children);
        let mut evicted = None;
        if let Some(p) = self.get_mut(parent) {
            if p.first.len() < keep_first {
                p.first.push(id);
            } else {
                p.last.push_back(id);
                if p.last.len() > keep_last {
                    evicted = p.last.pop_front();
                    p.elided += 1;
                }
            }
        }
        if let Some(old) = evicted {
            self.remove_subtree(old);
        }
        Slot::Recorded(id)
    }

    /// Closes a step (a no-op if it was evicted meanwhile).
    pub(crate) fn end(&mut self, id: StepId, outcome: Outcome, now: Duration) {
        if let Some(node) = self.get_mut(id) {
            node.duration = Some(now.saturating_sub(node.start));
            node.outcome = outcome;
        }
    }

    /// Records a captured value on a step.
    pub(crate) fn capture(&mut self, id: StepId, captured: Captured) {
        if let Some(node) = self.get_mut(id) {
            if let Some(existing) = node.data.iter_mut().find(|c| c.key == captured.key) {
                *existing = captured;
            } else if node.data.len() < MAX_CAPTURES_PER_STEP {
                node.data.push(captured);
            }
        }
    }

    /// A snapshot of the subtree at `id`; running steps get their duration up to `now`.
    pub(crate) fn record(&self, id: StepId, now: Duration) -> Option<StepRecord> {
        let node = self.get(id)?;
        let children = |ids: &mut dyn Iterator<Item = &StepId>| -> Vec<StepRecord> {
            ids.filter_map(|c| self.record(*c, now)).collect()
        };
        Some(StepRecord {
            name: node.name.to_string(),
            start: node.start,
            duration: node.duration.unwrap_or_else(|| now.saturating_sub(node.start)),
            outcome: node.outcome.clone(),
            data: node.data.clone(),
            first_children: children(&mut node.first.iter()),
            elided_children: node.elided,
            last_children: children(&mut node.last.iter()),
        })
    }

    fn alloc(&mut self, node: Node) -> StepId {
        self.live += 1;
        if let Some(index) = self.free.pop() {
            let entry = &mut self.entries[index as usize];
            entry.generation = entry.generation.wrapping_add(1);
            entry.node = Some(node);
            StepId { index, generation: entry.generation }
        } else {
            // The step bound (at most 1 000 000, validated) keeps the arena far below u32::MAX.
            let index = self.entries.len() as u32;
            self.entries.push(Entry { generation: 0, node: Some(node) });
            StepId { index, generation: 0 }
        }
    }

    fn remove_subtree(&mut self, id: StepId) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let Some(entry) = self.entries.get_mut(id.index as usize) else { continue };
            if entry.generation != id.generation {
                continue;
            }
            if let Some(node) = entry.node.take() {
                self.live -= 1;
                self.free.push(id.index);
                stack.extend(node.first);
                stack.extend(node.last);
            }
        }
    }

    fn get(&self, id: StepId) -> Option<&Node> {
        let entry = self.entries.get(id.index as usize)?;
        if entry.generation == id.generation { entry.node.as_ref() } else { None }
    }

    fn get_mut(&mut self, id: StepId) -> Option<&mut Node> {
        let entry = self.entries.get_mut(id.index as usize)?;
        if entry.generation == id.generation { entry.node.as_mut() } else { None }
    }

    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live
    }
}

impl Node {
    fn new(name: Cow<'static, str>, depth: usize, start: Duration) -> Self {
        Node {
            name,
            depth,
            start,
            duration: None,
            outcome: Outcome::Running,
            data: Vec::new(),
            first: Vec::new(),
            last: VecDeque::new(),
            elided: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_nodes_stay_bounded_in_a_runaway_nested_loop() {
        let limits = ErrorContextConfig::default();
        let (mut tree, root) = Tree::new("op".into(), limits.clone());
        let mut peak = 0;
        for i in 0..50_000u32 {
            let outer = tree.begin(Slot::Recorded(root), format!("outer-{i}").into(), Duration::ZERO);
            for _ in 0..3 {
                let inner = tree.begin(outer, "inner".into(), Duration::ZERO);
                if let Slot::Recorded(id) = inner {
                    tree.end(id, Outcome::Ok, Duration::ZERO);
                }
            }
            if let Slot::Recorded(id) = outer {
                tree.end(id, Outcome::Ok, Duration::ZERO);
            }
            peak = peak.max(tree.live());
        }
        // Root + (first + last) outer steps, each with 3 inner steps, plus one in flight.
        let kept = 1 + (limits.keep_first_children + limits.keep_last_children) * 4;
        assert!(peak <= kept + 4, "peak {peak} > {kept}");
        // Freed slots are reused: the arena did not grow with the loop.
        assert!(tree.entries.len() <= kept + 4, "arena grew to {}", tree.entries.len());
        assert_eq!(tree.unrecorded, 0);
    }
}
