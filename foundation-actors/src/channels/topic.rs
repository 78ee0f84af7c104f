//! Typed topic names, their lanes, and (for cluster-wide topics) how their messages cross nodes.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::relay::Decode;
use crate::wire::{self, WireError};

/// Which queue of a subscription a topic's messages go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Control traffic: always received before any normal message that is waiting.
    Control,
    /// Everything else.
    Normal,
}

/// A named topic carrying messages of type `T`. Cheap to clone; two `Topic`s with the same name
/// are the same topic (and must carry the same type and lane).
pub struct Topic<T> {
    name: Arc<str>,
    lane: Lane,
    codec: Option<Codec<T>>,
    _type: PhantomData<fn() -> T>,
}

/// How a cluster-wide topic's messages are put on the wire and taken off it.
pub(crate) struct Codec<T> {
    pub(crate) encode: fn(&T) -> Result<Vec<u8>, WireError>,
    pub(crate) decode: Decode,
}

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        Codec { encode: self.encode, decode: self.decode }
    }
}

impl<T> Topic<T> {
    /// A topic on the normal lane.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Topic { name: name.into(), lane: Lane::Normal, codec: None, _type: PhantomData }
    }

    /// A topic on the control lane: its messages overtake any normal ones waiting.
    pub fn control(name: impl Into<Arc<str>>) -> Self {
        Topic { name: name.into(), lane: Lane::Control, codec: None, _type: PhantomData }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's lane.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// Whether [`Channels::broadcast`](super::Channels::broadcast) can reach other processes.
    pub fn is_cluster_wide(&self) -> bool {
        self.codec.is_some()
    }

    pub(crate) fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    pub(crate) fn codec(&self) -> Option<&Codec<T>> {
        self.codec.as_ref()
    }
}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Topic<T> {
    /// Makes the topic cluster-wide: broadcasts reach subscribers on nodes in other processes,
    /// the message encoded once per broadcast by the [`wire`](crate::wire) adapter. (Within a
    /// process messages are never encoded.) Every node's subscribers must use the same name,
    /// type and lane; a frame whose type does not match is refused by the receiving node.
    pub fn cluster_wide(mut self) -> Self {
        self.codec =
            Some(Codec { encode: |m| wire::encode(m, usize::MAX), decode: super::decode_erased::<T> });
        self
    }
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic { name: self.name.clone(), lane: self.lane, codec: self.codec.clone(), _type: PhantomData }
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("lane", &self.lane)
            .field("type", &std::any::type_name::<T>())
            .field("cluster_wide", &self.is_cluster_wide())
            .finish()
    }
}
