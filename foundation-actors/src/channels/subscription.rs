//! A subscriber's bounded, two-lane queue and the handle that reads it.

use foundation_core::sync::MutexRecover;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::topic::{Lane, Topic};
use super::{ChannelError, Registry};
use crate::traced::Traced;

/// Default bound of each lane of a subscription's queue.
pub const DEFAULT_CAPACITY: usize = 1024;

/// What happens when a message arrives for a subscriber whose lane is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the oldest waiting message to make room (the subscriber sees the latest data).
    #[default]
    DropOldest,
    /// Drop the arriving message (the subscriber sees the oldest data, with a gap after it).
    DropNewest,
    /// Disconnect the subscriber: its queue is emptied and `recv` returns
    /// [`ChannelError::Disconnected`]. For subscribers that must see every message or none.
    Disconnect,
}

/// How a subscription buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Bound of each lane (control and normal) of the queue, at least 1. Default
    /// [`DEFAULT_CAPACITY`]: a subscriber may fall 1024 messages behind per lane before the
    /// overflow policy applies.
    pub capacity: usize,
    /// What happens on overflow. Default [`Overflow::DropOldest`].
    pub overflow: Overflow,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions { capacity: DEFAULT_CAPACITY, overflow: Overflow::default() }
    }
}

/// The queue shared between the publishers and one subscription.
pub(crate) struct Queue<T> {
    pub(crate) id: u64,
    lanes: Mutex<Lanes<T>>,
    notify: Notify,
    dropped: AtomicU64,
    options: SubscribeOptions,
}

/// Messages wait with the trace context of the span that published them.
struct Lanes<T> {
    control: VecDeque<Traced<T>>,
    normal: VecDeque<Traced<T>>,
    disconnected: bool,
    closed: bool,
}

/// What a push did.
pub(crate) enum Pushed {
    Queued,
    Dropped,
    /// The subscriber was disconnected by this push (policy `Disconnect`) or earlier.
    Disconnected,
}

impl<T> Queue<T> {
    pub(crate) fn new(id: u64, options: SubscribeOptions) -> Self {
        Queue {
            id,
            lanes: Mutex::new(Lanes {
                control: VecDeque::new(),
                normal: VecDeque::new(),
                disconnected: false,
                closed: false,
            }),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            options,
        }
    }

    pub(crate) fn push(&self, lane: Lane, message: Traced<T>) -> Pushed {
        let mut lanes = self.lanes.lock_or_recover();
        if lanes.disconnected || lanes.closed {
            return Pushed::Disconnected;
        }
        let queue = match lane {
            Lane::Control => &mut lanes.control,
            Lane::Normal => &mut lanes.normal,
        };
        let result = if queue.len() < self.options.capacity {
            queue.push_back(message);
            Pushed::Queued
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            match self.options.overflow {
                Overflow::DropOldest => {
                    queue.pop_front();
                    queue.push_back(message);
                    Pushed::Dropped
                }
                Overflow::DropNewest => Pushed::Dropped,
                Overflow::Disconnect => {
                    lanes.disconnected = true;
                    lanes.control.clear();
                    lanes.normal.clear();
                    Pushed::Disconnected
                }
            }
        };
        drop(lanes);
        self.notify.notify_one();
        result
    }

    /// Messages waiting, both lanes.
    pub(crate) fn len(&self) -> usize {
        let lanes = self.lanes.lock_or_recover();
        lanes.control.len() + lanes.normal.len()
    }

    /// Whether a full lane keeps the arriving message (and drops an older one).
    pub(crate) fn keeps_newest(&self) -> bool {
        self.options.overflow == Overflow::DropOldest
    }

    fn close(&self) {
        self.lanes.lock_or_recover().closed = true;
        self.notify.notify_one();
    }
}

/// A subscription to one or more topics of the same message type.
///
/// Messages wait in a bounded queue with two lanes; [`recv`](Self::recv) returns control-lane
/// messages before normal ones. Dropping the subscription unsubscribes it from every topic.
pub struct Subscription<T: Clone + Send + 'static> {
    queue: Arc<Queue<T>>,
    registry: Weak<Registry>,
    topics: Vec<Arc<str>>,
}

impl<T: Clone + Send + Sync + 'static> Subscription<T> {
    pub(crate) fn new(queue: Arc<Queue<T>>, registry: Weak<Registry>, topic: Arc<str>) -> Self {
        Subscription { queue, registry, topics: vec![topic] }
    }

    /// Also receives `topic` through this subscription (same queue, same bound).
    pub fn also(&mut self, topic: &Topic<T>) -> Result<(), ChannelError> {
        let registry = self.registry.upgrade().ok_or(ChannelError::Closed)?;
        registry.add(topic, self.queue.clone())?;
        self.topics.push(topic.shared_name());
        Ok(())
    }

    /// Stops receiving `topic`; messages of it already queued stay.
    pub fn unsubscribe(&mut self, topic: &Topic<T>) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(topic.name(), self.queue.id);
        }
        self.topics.retain(|t| &**t != topic.name());
    }

    /// The next message: a waiting control-lane message first, else the oldest normal one.
    /// Waits if none is queued. `Err(Disconnected)` once the overflow policy disconnected this
    /// subscriber; `Err(Closed)` once the channels are shut down and the queue is empty.
    pub async fn recv(&mut self) -> Result<T, ChannelError> {
        self.recv_traced().await.map(Traced::into_inner)
    }

    /// Like [`recv`](Self::recv), with the trace context of the span that published the
    /// message: enter [`Traced::span`] (or instrument the handling future with it) to continue
    /// the publisher's trace here, on this node or, for a broadcast, on another.
    pub async fn recv_traced(&mut self) -> Result<Traced<T>, ChannelError> {
        loop {
            let notified = self.queue.notify.notified();
            if let Some(result) = self.try_take() {
                return result;
            }
            notified.await;
        }
    }

    /// The next message if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<T, ChannelError>> {
        self.try_take().map(|r| r.map(Traced::into_inner))
    }

    fn try_take(&self) -> Option<Result<Traced<T>, ChannelError>> {
        let mut lanes = self.queue.lanes.lock_or_recover();
        if lanes.disconnected {
            return Some(Err(ChannelError::Disconnected { dropped: self.dropped() }));
        }
        if let Some(m) = lanes.control.pop_front().or_else(|| lanes.normal.pop_front()) {
            return Some(Ok(m));
        }
        if lanes.closed { Some(Err(ChannelError::Closed)) } else { None }
    }

    /// Messages this subscriber lost to its overflow policy.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Messages waiting, both lanes.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The topics this subscription receives.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| &**t)
    }

    pub(crate) fn close_queue(queue: &Queue<T>) {
        queue.close();
    }
}

impl<T: Clone + Send + 'static> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            for topic in &self.topics {
                registry.remove(topic, self.queue.id);
            }
        }
    }
}

impl<T: Clone + Send + 'static> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("topics", &self.topics).finish_non_exhaustive()
    }
}
