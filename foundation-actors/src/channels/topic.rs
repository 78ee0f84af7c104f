//! Typed topic names and their lanes.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

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
    _type: PhantomData<fn() -> T>,
}

impl<T> Topic<T> {
    /// A topic on the normal lane.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Topic { name: name.into(), lane: Lane::Normal, _type: PhantomData }
    }

    /// A topic on the control lane: its messages overtake any normal ones waiting.
    pub fn control(name: impl Into<Arc<str>>) -> Self {
        Topic { name: name.into(), lane: Lane::Control, _type: PhantomData }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's lane.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    pub(crate) fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic { name: self.name.clone(), lane: self.lane, _type: PhantomData }
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("lane", &self.lane)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}
