//! What comes back from a language model: text, tool calls, why it stopped, and the tokens it
//! cost.

use serde::{Deserialize, Serialize};

use super::message::{ChatMessage, ToolCall};

/// Tokens a call used, as the provider counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (the cached ones included).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Of the prompt tokens, those the provider served from its prompt cache (OpenAI's
    /// `prompt_tokens_details.cached_tokens`, Anthropic's `cache_read_input_tokens`): billed
    /// cheaper by most providers.
    #[serde(default)]
    pub cached_prompt_tokens: u64,
}

impl Usage {
    /// Prompt and completion together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;

    fn add(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.saturating_add(other.prompt_tokens),
            completion_tokens: self.completion_tokens.saturating_add(other.completion_tokens),
            cached_prompt_tokens: self.cached_prompt_tokens.saturating_add(other.cached_prompt_tokens),
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        *self = *self + other;
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished, or met a stop sequence.
    #[default]
    Stop,
    /// It reached `max_tokens`.
    Length,
    /// It called tools: answer them and ask again.
    ToolCalls,
    /// The provider's filter stopped it (or the model refused).
    ContentFilter,
    /// Another reason, as the provider named it.
    Other(String),
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer's text (empty when it only calls tools).
    pub content: String,
    /// The tools it calls, in order.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    #[serde(default)]
    pub finish_reason: FinishReason,
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

impl Completion {
    /// An answer of this text from `model` of `provider`, with this usage.
    pub fn from_text(
        content: impl Into<String>,
        usage: Usage,
        model: impl Into<String>,
        provider: impl Into<String>,
    ) -> Self {
        Completion {
            content: content.into(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage,
            model: model.into(),
            provider: provider.into(),
            rate_headers: Vec::new(),
            cached: false,
        }
    }

    /// The answer as the assistant's message of the conversation (its text and tool calls), to
    /// send back with the tools' results.
    pub fn message(&self) -> ChatMessage {
        ChatMessage::assistant_tool_calls(self.content.clone(), self.tool_calls.clone())
    }

    /// The text parsed as JSON into `T` (for a [`ResponseFormat`](super::ResponseFormat)
    /// answer).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.content)
    }
}
