//! Durable conversations: where an agent's conversation is kept so that a restart of the agent
//! (by its supervisor, or on another node after its node was lost) resumes it.
//!
//! A [`ConversationStore`] holds conversations by id: each is a sequence of messages with a
//! **length** (messages ever appended; the version a writer appends after). An agent given a
//! store ([`AgentSpec::durable`](super::AgentSpec::durable)):
//!
//! - **loads** the conversation before its first step after every start (and after any failed
//!   save): its memory becomes the spec's memory (the system prompt pinned) with the stored
//!   messages remembered in order, its window applied. A load that fails refuses the step with
//!   [`AgentError::Failed`](super::AgentError::Failed) naming the conversation: the agent never answers
//!   from a conversation it could not read;
//! - **saves** after every step that returned (answered or failed; not one that panicked, whose
//!   memory is thrown away with the crash) the messages its memory gained, appended after the
//!   length it loaded or last saved. The asker gets the step's answer only once the store took
//!   the messages: **an answer the asker received is in the conversation**. A save that fails
//!   turns the answer into `AgentError::Failed` (naming the conversation) and the agent loads again before its
//!   next step (the store is the truth: a save whose outcome is unknown may have been kept);
//! - **conflicts**: an append after a length that is no longer the conversation's (another
//!   instance wrote meanwhile) is refused ([`ConversationError::Conflict`]), so two instances
//!   of one conversation never interleave silently: the loser's answer is refused and it
//!   reloads. Run one instance per conversation.
//!
//! A memory replaced in a step ([`AgentContext::memory_mut`](super::AgentContext::memory_mut))
//! is saved as a **reset**: the stored conversation becomes the new memory's messages.
//!
//! [`LocalConversations`] keeps conversations in this process (tests, one-process apps: gone
//! with the process). `foundation_cluster::conversations::Conversations` keeps them in a
//! replicated log on every node (feature `agents` of foundation-cluster).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use foundation_core::Cause;
use foundation_core::sync::MutexRecover;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::providers::ChatMessage;

/// Longest conversation id, in bytes.
pub const MAX_CONVERSATION_ID: usize = 256;
/// Messages of a conversation a [`LocalConversations`] keeps by default (the latest).
pub const DEFAULT_KEPT_MESSAGES: usize = 256;

/// A conversation as stored: its latest messages (oldest first) and its length.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The latest messages kept, oldest first (at most the store's bound).
    pub messages: Vec<ChatMessage>,
    /// Messages ever appended (a reset counts its messages after the length it replaced): what
    /// the next append must name as `after`.
    pub length: u64,
}

/// What a writer adds to a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationChange {
    /// The length the writer last saw: the change is refused unless it is still the
    /// conversation's ([`ConversationError::Conflict`]).
    pub after: u64,
    /// The messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// The messages replace the conversation's rather than follow them.
    pub reset: bool,
}

/// Why a conversation could not be read or written. Every variant names the conversation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConversationError {
    /// Another writer appended first: the conversation is longer than the change assumed.
    #[error(
        "conversation `{conversation}`: it has {actual} messages, the change assumed {expected} (another writer appended first)"
    )]
    Conflict {
        /// The conversation.
        conversation: String,
        /// The length the change named.
        expected: u64,
        /// The conversation's length.
        actual: u64,
    },
    /// The id is empty, longer than [`MAX_CONVERSATION_ID`] bytes, or has a control character.
    #[error("conversation id `{0}` is not valid: 1 to 256 bytes, no control characters")]
    BadId(String),
    /// The change is larger than the store takes in one piece.
    #[error(
        "conversation `{conversation}`: a change of {bytes} bytes is larger than the {max} the store takes"
    )]
    TooLarge {
        /// The conversation.
        conversation: String,
        /// The change's encoded size.
        bytes: usize,
        /// The most.
        max: usize,
    },
    /// The store holds as many conversations as it may.
    #[error("conversation `{conversation}`: the store holds its limit of {max} conversations")]
    Full {
        /// The conversation.
        conversation: String,
        /// The limit.
        max: usize,
    },
    /// The store could not be reached or did not answer; a change's outcome is unknown (it may
    /// have been kept).
    #[error("conversation `{conversation}`: the store is unavailable: {source}")]
    Unavailable {
        /// The conversation.
        conversation: String,
        /// Why.
        #[source]
        source: Cause,
    },
}

/// Where conversations are kept (see the module docs for how agents use one).
///
/// Implementations must be linearizable per conversation: a change is applied only if `after`
/// equals the conversation's length at that moment, and a load after an acknowledged change
/// sees it.
pub trait ConversationStore: Send + Sync + 'static {
    /// The conversation `id` (empty, length 0, if it was never written).
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Conversation, ConversationError>>;

    /// Applies `change` to conversation `id` if its length is still `change.after`; the new
    /// length.
    fn append<'a>(
        &'a self,
        id: &'a str,
        change: ConversationChange,
    ) -> BoxFuture<'a, Result<u64, ConversationError>>;
}

/// Checks a conversation id.
pub fn check_conversation_id(id: &str) -> Result<(), ConversationError> {
    if id.is_empty() || id.len() > MAX_CONVERSATION_ID || id.chars().any(char::is_control) {
        return Err(ConversationError::BadId(id.chars().take(64).collect()));
    }
    Ok(())
}

/// One conversation as a store keeps it: its length and latest messages.
#[derive(Debug, Clone, Default)]
pub struct KeptConversation {
    length: u64,
    messages: VecDeque<ChatMessage>,
}

impl KeptConversation {
    /// Applies `change` (checked against the length), keeping the latest `keep` messages; the
    /// new length.
    pub fn apply(
        &mut self,
        id: &str,
        change: ConversationChange,
        keep: usize,
    ) -> Result<u64, ConversationError> {
        if change.after != self.length {
            return Err(ConversationError::Conflict {
                conversation: id.to_string(),
                expected: change.after,
                actual: self.length,
            });
        }
        if change.reset {
            self.messages.clear();
        }
        self.length += change.messages.len() as u64;
        self.messages.extend(change.messages);
        while self.messages.len() > keep {
            self.messages.pop_front();
        }
        Ok(self.length)
    }

    /// The conversation as loaded.
    pub fn snapshot(&self) -> Conversation {
        Conversation { messages: self.messages.iter().cloned().collect(), length: self.length }
    }

    /// Its length.
    pub fn length(&self) -> u64 {
        self.length
    }
}

/// Conversations kept in this process's memory: they survive an agent's restart by its
/// supervisor, not the process. Each keeps its latest `keep` messages. Cheap to clone (clones
/// share the conversations).
#[derive(Debug, Clone)]
pub struct LocalConversations {
    keep: usize,
    conversations: Arc<Mutex<HashMap<String, KeptConversation>>>,
}

impl Default for LocalConversations {
    fn default() -> Self {
        LocalConversations::new(DEFAULT_KEPT_MESSAGES)
    }
}

impl LocalConversations {
    /// A store keeping each conversation's latest `keep` messages (at least 1).
    pub fn new(keep: usize) -> Self {
        LocalConversations { keep: keep.max(1), conversations: Arc::default() }
    }
}

impl ConversationStore for LocalConversations {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Conversation, ConversationError>> {
        Box::pin(async move {
            check_conversation_id(id)?;
            let conversations = self.conversations.lock_or_recover();
            Ok(conversations.get(id).map(KeptConversation::snapshot).unwrap_or_default())
        })
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        change: ConversationChange,
    ) -> BoxFuture<'a, Result<u64, ConversationError>> {
        Box::pin(async move {
            check_conversation_id(id)?;
            let mut conversations = self.conversations.lock_or_recover();
            conversations.entry(id.to_string()).or_default().apply(id, change, self.keep)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a failed unwrap fails it")]
    use super::*;

    fn change(after: u64, texts: &[&str], reset: bool) -> ConversationChange {
        ConversationChange { after, messages: texts.iter().map(|t| ChatMessage::user(*t)).collect(), reset }
    }

    #[tokio::test]
    async fn appends_after_the_length_only_and_keep_the_latest() {
        let store = LocalConversations::new(3);
        assert_eq!(store.load("c").await.unwrap(), Conversation::default());
        assert_eq!(store.append("c", change(0, &["a", "b"], false)).await.unwrap(), 2);
        let stale = store.append("c", change(0, &["x"], false)).await;
        assert!(
            matches!(stale, Err(ConversationError::Conflict { expected: 0, actual: 2, .. })),
            "{stale:?}"
        );
        assert_eq!(store.append("c", change(2, &["c", "d"], false)).await.unwrap(), 4);
        let c = store.load("c").await.unwrap();
        assert_eq!(c.length, 4);
        assert_eq!(c.messages.iter().map(|m| m.text()).collect::<Vec<_>>(), ["b", "c", "d"]);
        assert_eq!(store.append("c", change(4, &["z"], true)).await.unwrap(), 5);
        let c = store.load("c").await.unwrap();
        assert_eq!(c.messages.iter().map(|m| m.text()).collect::<Vec<_>>(), ["z"]);
        assert!(matches!(store.load("").await, Err(ConversationError::BadId(_))));
        assert!(matches!(store.load("a\nb").await, Err(ConversationError::BadId(_))));
        assert!(matches!(store.load(&"x".repeat(257)).await, Err(ConversationError::BadId(_))));
    }
}
