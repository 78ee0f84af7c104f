//! What is sent to a language model and what comes back.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The model.
    Assistant,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage { role: Role::System, content: content.into() }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: Role::User, content: content.into() }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage { role: Role::Assistant, content: content.into() }
    }
}

/// Default completion budget of a request.
pub const DEFAULT_MAX_TOKENS: u64 = 256;

/// A chat-completions request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// The most tokens the answer may have. Default [`DEFAULT_MAX_TOKENS`]; the rate limiter
    /// reserves this many output tokens before the call and refunds what was not used.
    pub max_tokens: u64,
    /// Sampling temperature (the simulated model ignores it).
    pub temperature: f32,
    /// The tenant the call is made for (usage and cost are counted per tenant).
    pub tenant: Option<String>,
    /// Whether the answer may come from the call cache (see
    /// [`CallCache`](super::CallCache)). Default: cached at temperature 0.
    #[serde(default)]
    pub cache: super::CachePolicy,
}

impl ChatRequest {
    /// A request of these messages with the default budget.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            messages,
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 0.0,
            tenant: None,
            cache: super::CachePolicy::Auto,
        }
    }

    /// A one-message request.
    pub fn prompt(text: impl Into<String>) -> Self {
        Self::new(vec![ChatMessage::user(text)])
    }

    /// With this completion budget.
    pub fn max_tokens(mut self, max_tokens: u64) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// With this cache policy (e.g. [`CachePolicy::Off`](super::CachePolicy::Off) for a fresh
    /// answer).
    pub fn cache(mut self, policy: super::CachePolicy) -> Self {
        self.cache = policy;
        self
    }

    /// Made for this tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

/// Tokens a call used, as the provider counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer's text.
    pub content: String,
    /// Tokens used.
    pub usage: Usage,
    /// The model that answered (as the provider names it).
    pub model: String,
    /// The provider that answered (filled in by the provider layer).
    pub provider: String,
    /// The response's rate-limit headers (`x-ratelimit-*`, `anthropic-ratelimit-*`,
    /// `retry-after`), lower-cased, for the limiter to correct itself.
    pub rate_headers: Vec<(String, String)>,
    /// Answered from the call cache: no provider was called (the usage is the original
    /// call's).
    #[serde(default)]
    pub cached: bool,
}
