//! An agent's conversation memory: a pinned system prompt and a bounded window of recent
//! messages.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::providers::{ChatMessage, Role};

/// [`Memory::new`] was given a window of 0 messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a memory window must hold at least one message")]
pub struct EmptyWindow;

/// A bounded conversation memory: the system prompt is always kept; of the other messages, the
/// most recent `window` are.
///
/// ```
/// use foundation_actors::agents::Memory;
/// use foundation_actors::providers::ChatMessage;
///
/// let mut memory = Memory::new(2).unwrap().with_system("You are terse.");
/// for text in ["a", "b", "c"] {
///     memory.remember(ChatMessage::user(text));
/// }
/// let kept: Vec<_> = memory.messages().iter().map(|m| m.text()).collect();
/// assert_eq!(kept, ["You are terse.", "b", "c"]);
/// assert_eq!(memory.forgotten(), 1);
/// ```
#[derive(Debug)]
pub struct Memory {
    system: Option<ChatMessage>,
    window: usize,
    recent: VecDeque<ChatMessage>,
    forgotten: u64,
    /// Which memory this is (each clone has its own): a durable agent tells a replaced memory
    /// by it.
    identity: u64,
}

impl Clone for Memory {
    /// The same messages; a memory of its own (a durable agent whose memory is replaced by a
    /// clone, even of itself, saves it as a reset).
    fn clone(&self) -> Self {
        Memory {
            system: self.system.clone(),
            window: self.window,
            recent: self.recent.clone(),
            forgotten: self.forgotten,
            identity: NEXT_IDENTITY.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Identities of memories made in this process.
static NEXT_IDENTITY: AtomicU64 = AtomicU64::new(1);

impl Memory {
    /// A memory keeping the last `window` messages (at least 1).
    pub fn new(window: usize) -> Result<Self, EmptyWindow> {
        if window == 0 {
            return Err(EmptyWindow);
        }
        Ok(Memory {
            system: None,
            window,
            recent: VecDeque::with_capacity(window.min(1024)),
            forgotten: 0,
            identity: NEXT_IDENTITY.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Pins a system prompt (kept whatever the window).
    pub fn with_system(mut self, prompt: impl Into<String>) -> Self {
        self.system = Some(ChatMessage::system(prompt));
        self
    }

    /// Adds a message, forgetting the oldest one beyond the window.
    pub fn remember(&mut self, message: ChatMessage) {
        if self.recent.len() == self.window {
            self.recent.pop_front();
            self.forgotten += 1;
        }
        self.recent.push_back(message);
    }

    /// The system prompt, then the recent messages, oldest first: a model's conversation.
    /// Tool results at the window's start are left out: the assistant message that asked for
    /// them was forgotten, and model APIs refuse a tool result without its call.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let recent = self.recent.iter().skip_while(|m| m.role == Role::Tool);
        self.system.iter().chain(recent).cloned().collect()
    }

    /// How many messages were forgotten.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// The number of recent messages held (the system prompt aside).
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether no message is held (the system prompt aside).
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// The size of its window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Messages remembered since it was made (forgotten ones included).
    pub(crate) fn remembered(&self) -> u64 {
        self.forgotten + self.recent.len() as u64
    }

    pub(crate) fn identity(&self) -> u64 {
        self.identity
    }

    /// The latest `n` messages held (fewer if it holds fewer), oldest first.
    pub(crate) fn latest(&self, n: usize) -> Vec<ChatMessage> {
        let skip = self.recent.len().saturating_sub(n);
        self.recent.iter().skip(skip).cloned().collect()
    }
}
