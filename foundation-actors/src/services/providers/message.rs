//! The messages of a conversation: who wrote them, their content parts, the tools an assistant
//! called and what the tools answered.
//!
//! These are Foundation's own types, not any API's JSON: [`OpenAiClient`](super::OpenAiClient)
//! and [`AnthropicClient`](super::AnthropicClient) translate them to and from their wire formats,
//! so the same conversation goes to either (and to the simulated model).

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The model.
    Assistant,
    /// A tool's answer to one of the assistant's calls ([`ChatMessage::tool_call_id`] says which).
    Tool,
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text(String),
    /// An image, by URL or as a `data:` URL (`data:image/png;base64,…`).
    Image {
        /// Where the image is, or the image itself as a `data:` URL.
        url: String,
        /// The detail asked for (`low`, `high`, `auto`); `None`: the provider's default.
        detail: Option<String>,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text(text.into())
    }

    /// An image part by URL (or `data:` URL), at the provider's default detail.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::Image { url: url.into(), detail: None }
    }
}

/// A tool the assistant asked to call: its id (which the tool's answer names), the tool and its
/// arguments as the JSON text the model wrote (parse them with [`ToolCall::arguments_json`]: a
/// model may write invalid JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, unique within the conversation.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments: JSON text, as the model wrote it.
    pub arguments: String,
}

impl ToolCall {
    /// A call of `name` with these arguments.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: &serde_json::Value) -> Self {
        ToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }
    }

    /// The arguments parsed as JSON (an empty text is `{}`: some providers send nothing for a
    /// call without arguments).
    pub fn arguments_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            return Ok(serde_json::Value::Object(Default::default()));
        }
        serde_json::from_str(&self.arguments)
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its content, in order (text, images). Usually one text part; an assistant message that
    /// only calls tools may have none.
    pub content: Vec<ContentPart>,
    /// The tools an assistant message calls (empty for other roles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message of `role` with one text part.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: vec![ContentPart::Text(text.into())],
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::new(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(Role::User, text)
    }

    /// A user message of several parts (text and images).
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        ChatMessage { role: Role::User, content: parts, tool_calls: Vec::new(), tool_call_id: None }
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant, text)
    }

    /// An assistant message calling tools (with its text, if it had any).
    pub fn assistant_tool_calls(text: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        let text = text.into();
        let content = if text.is_empty() { Vec::new() } else { vec![ContentPart::Text(text)] };
        ChatMessage { role: Role::Assistant, content, tool_calls: calls, tool_call_id: None }
    }

    /// A tool's answer to the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, text: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Tool,
            content: vec![ContentPart::Text(text.into())],
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.into()),
        }
    }

    /// Its text parts, joined by newlines (images left out).
    pub fn text(&self) -> String {
        let mut texts = self.content.iter().filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Image { .. } => None,
        });
        match (texts.next(), texts.next()) {
            (None, _) => String::new(),
            (Some(one), None) => one.to_string(),
            (Some(first), Some(second)) => {
                let mut all = format!("{first}\n{second}");
                for t in texts {
                    all.push('\n');
                    all.push_str(t);
                }
                all
            }
        }
    }

    /// Whether it is a single text part (sent as a plain string where an API allows both).
    pub fn is_plain_text(&self) -> bool {
        matches!(self.content.as_slice(), [ContentPart::Text(_)])
    }
}
