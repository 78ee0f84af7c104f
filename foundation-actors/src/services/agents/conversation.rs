//! Durable conversations: where an agent's conversation is kept so that a restart of the agent
//! (by its supervisor, or on another node after its node was lost) resumes it.
//!
//! A [`ConversationStore`] holds conversations by id: each is a sequence of messages with a
//! **version** that every change makes larger (never reused, a forgotten conversation's
//! included): a writer names the version it appends after. An agent given a store ([`AgentSpec::durable`](super::AgentSpec::durable)):
//!
//! - **loads** the conversation before its first step after every start (and after any failed
//!   save): its memory becomes the spec's memory (the system prompt pinned) with the stored
//!   messages remembered in order, its window applied. A load that fails refuses the step with
//!   [`AgentError::Failed`](super::AgentError::Failed) naming the conversation: the agent never answers
//!   from a conversation it could not read;
//! - **saves** after every step that returned (answered or failed; not one that panicked, whose
//!   memory is thrown away with the crash) the messages its memory gained, appended after the
//!   version it loaded or last saved. The asker gets the step's answer only once the store took
//!   the messages: **an answer the asker received is in the conversation** (what it streamed
//!   while the step ran, and what its tools did, happened before: a withheld answer does not
//!   undo them). A save that fails
//!   turns the answer into `AgentError::Failed` (naming the conversation) and the agent loads again before its
//!   next step (the store is the truth: a save whose outcome is unknown may have been kept);
//! - **conflicts**: an append after a version that is no longer the conversation's (another
//!   instance wrote meanwhile, or the conversation was reset or forgotten) is refused ([`ConversationError::Conflict`]), so two instances
//!   of one conversation never interleave silently: the loser's answer is refused and it
//!   reloads. Run one instance per conversation.
//!
//! A memory replaced in a step ([`AgentContext::memory_mut`](super::AgentContext::memory_mut);
//! a clone of an earlier memory counts as replaced) is saved as a **reset**: the stored
//! conversation becomes the new memory's messages (not its system prompt or window: a resume
//! lays the stored messages over the spec's memory).
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
/// Messages of a conversation a store keeps by default (the latest).
pub const DEFAULT_KEPT_MESSAGES: usize = 256;

/// A conversation as stored: its latest messages (oldest first) and its version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The latest messages kept, oldest first (within the store's bounds).
    pub messages: Vec<ChatMessage>,
    /// Its version (0: never written, or forgotten): every change makes it larger, and the
    /// next change must name it as `after`.
    pub version: u64,
}

/// What a writer adds to a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationChange {
    /// The version the writer last saw: the change is refused unless it is still the
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
    /// Another writer changed the conversation first (or it was reset or forgotten).
    #[error(
        "conversation `{conversation}`: it is at version {actual}, the change assumed {expected} (another writer appended first)"
    )]
    Conflict {
        /// The conversation.
        conversation: String,
        /// The version the change named.
        expected: u64,
        /// The conversation's version.
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
    /// The store holds as much as it may (conversations, or bytes).
    #[error("conversation `{conversation}`: the store is full ({limit})")]
    Full {
        /// The conversation.
        conversation: String,
        /// The limit reached.
        limit: String,
    },
    /// The store cannot vouch for this conversation (its record was damaged): it is neither
    /// read nor written until repaired or forgotten.
    #[error("conversation `{conversation}` is damaged in the store: {reason}")]
    Damaged {
        /// The conversation.
        conversation: String,
        /// What is wrong.
        reason: String,
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
/// equals the conversation's version at that moment, versions are never reused (not even after
/// the conversation is forgotten), and a load after an acknowledged change sees it.
pub trait ConversationStore: Send + Sync + 'static {
    /// The conversation `id` (empty, version 0, if it was never written).
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Conversation, ConversationError>>;

    /// Applies `change` to conversation `id` if its version is still `change.after`; the new
    /// version.
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

/// One conversation as a store keeps it: its version and latest messages, within a count and a
/// byte bound (each message's size as JSON).
#[derive(Debug, Clone, Default)]
pub struct KeptConversation {
    version: u64,
    messages: VecDeque<(ChatMessage, usize)>,
    bytes: usize,
}

/// A message's size as the store counts it: its JSON.
pub fn message_bytes(message: &ChatMessage) -> usize {
    serde_json::to_vec(message).map_or(usize::MAX / 4, |b| b.len())
}

impl KeptConversation {
    /// Checks `change` against the version: a [`ConversationError::Conflict`] unless it follows
    /// this version.
    pub fn check(&self, id: &str, change: &ConversationChange) -> Result<(), ConversationError> {
        if change.after != self.version {
            return Err(ConversationError::Conflict {
                conversation: id.to_string(),
                expected: change.after,
                actual: self.version,
            });
        }
        Ok(())
    }

    /// Applies `change` (checked against the version) as version `version` (larger than the
    /// current one), keeping the latest `keep` messages and at most `max_bytes` of them (the
    /// oldest go first; the change's own messages are kept if they alone fit). The new version.
    pub fn apply(
        &mut self,
        id: &str,
        change: ConversationChange,
        version: u64,
        keep: usize,
        max_bytes: usize,
    ) -> Result<u64, ConversationError> {
        self.check(id, &change)?;
        if change.reset {
            self.messages.clear();
            self.bytes = 0;
        }
        for message in change.messages {
            let size = message_bytes(&message);
            self.bytes = self.bytes.saturating_add(size);
            self.messages.push_back((message, size));
        }
        while self.messages.len() > keep.max(1) || (self.bytes > max_bytes && self.messages.len() > 1) {
            if let Some((_, size)) = self.messages.pop_front() {
                self.bytes -= size;
            }
        }
        self.version = version.max(self.version + 1);
        Ok(self.version)
    }

    /// The conversation as loaded.
    pub fn snapshot(&self) -> Conversation {
        Conversation {
            messages: self.messages.iter().map(|(m, _)| m.clone()).collect(),
            version: self.version,
        }
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The bytes of its messages kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Conversations kept in this process's memory: they survive an agent's restart by its
/// supervisor, not the process. Each keeps its latest `keep` messages. Cheap to clone (clones
/// share the conversations).
#[derive(Debug, Clone)]
pub struct LocalConversations {
    keep: usize,
    conversations: Arc<Mutex<Local>>,
}

#[derive(Debug, Default)]
struct Local {
    conversations: HashMap<String, KeptConversation>,
    /// The last version given (versions are per store: never reused).
    version: u64,
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

    /// Forgets conversation `id` (a load finds it empty at version 0; a writer still at an older
    /// version is refused).
    pub fn forget(&self, id: &str) {
        self.conversations.lock_or_recover().conversations.remove(id);
    }
}

impl ConversationStore for LocalConversations {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Conversation, ConversationError>> {
        Box::pin(async move {
            check_conversation_id(id)?;
            let local = self.conversations.lock_or_recover();
            Ok(local.conversations.get(id).map(KeptConversation::snapshot).unwrap_or_default())
        })
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        change: ConversationChange,
    ) -> BoxFuture<'a, Result<u64, ConversationError>> {
        Box::pin(async move {
            check_conversation_id(id)?;
            let mut local = self.conversations.lock_or_recover();
            let version = local.version + 1;
            let kept = local.conversations.entry(id.to_string()).or_default();
            let applied = kept.apply(id, change, version, self.keep, usize::MAX);
            if applied.is_ok() {
                local.version = version;
            } else if kept.version() == 0 {
                local.conversations.remove(id);
            }
            applied
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

    fn texts(c: &Conversation) -> Vec<String> {
        c.messages.iter().map(|m| m.text()).collect()
    }

    #[tokio::test]
    async fn changes_follow_the_version_only_and_versions_are_never_reused() {
        let store = LocalConversations::new(3);
        assert_eq!(store.load("c").await.unwrap(), Conversation::default());
        let v1 = store.append("c", change(0, &["a", "b"], false)).await.unwrap();
        let stale = store.append("c", change(0, &["x"], false)).await;
        assert!(
            matches!(stale, Err(ConversationError::Conflict { expected: 0, actual, .. }) if actual == v1),
            "{stale:?}"
        );
        let v2 = store.append("c", change(v1, &["c", "d"], false)).await.unwrap();
        assert!(v2 > v1);
        let c = store.load("c").await.unwrap();
        assert_eq!((c.version, texts(&c)), (v2, vec!["b".to_string(), "c".into(), "d".into()]));

        // A reset to nothing is a change: a writer still at v2 is refused.
        let v3 = store.append("c", change(v2, &[], true)).await.unwrap();
        assert!(v3 > v2);
        assert!(store.append("c", change(v2, &["late"], false)).await.is_err());
        assert!(store.load("c").await.unwrap().messages.is_empty());

        // Forgotten, then written again from scratch: the old writer's version is not reused.
        store.forget("c");
        assert_eq!(store.load("c").await.unwrap(), Conversation::default());
        let v4 = store.append("c", change(0, &["fresh"], false)).await.unwrap();
        assert!(v4 > v3);
        assert!(store.append("c", change(v3, &["late"], false)).await.is_err());
        // A refused first change leaves no trace.
        assert!(store.append("other", change(7, &["x"], false)).await.is_err());
        assert_eq!(store.load("other").await.unwrap(), Conversation::default());

        assert!(matches!(store.load("").await, Err(ConversationError::BadId(_))));
        assert!(matches!(store.load("a\nb").await, Err(ConversationError::BadId(_))));
        assert!(matches!(store.load(&"x".repeat(257)).await, Err(ConversationError::BadId(_))));
    }

    #[test]
    fn a_conversation_keeps_its_latest_messages_within_its_bytes() {
        let mut kept = KeptConversation::default();
        let size = message_bytes(&ChatMessage::user("0123456789"));
        let written: Vec<String> = (0..10).map(|i| format!("message-{i:02}")).collect();
        let refs: Vec<&str> = written.iter().map(String::as_str).collect();
        kept.apply("c", change(0, &refs, false), 1, 100, size * 3).unwrap();
        let snap = kept.snapshot();
        assert_eq!(texts(&snap), ["message-07", "message-08", "message-09"]);
        assert!(kept.bytes() <= size * 3);
        // A message larger than the bound alone is kept (the latest is never dropped).
        let big = "x".repeat(size * 5);
        kept.apply("c", change(1, &[&big], false), 2, 100, size * 3).unwrap();
        assert_eq!(kept.snapshot().messages.len(), 1);
    }
}
