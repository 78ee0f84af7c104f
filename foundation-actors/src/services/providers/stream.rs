//! Streamed answers: [`CompletionStream`] yields the answer's text and tool-call pieces as the
//! provider sends them, then the whole answer ([`StreamEvent::Done`]) with its usage.
//!
//! **Contract.** A stream yields any number of [`StreamEvent::Text`] and
//! [`StreamEvent::ToolCall`] events, then exactly one [`StreamEvent::Done`] (the assembled
//! [`Completion`]: the concatenated text, the tool calls whole, the usage, why it stopped), or an
//! error; after either it yields nothing. A provider's stream that ends without its end is an
//! error ([`LmError::Malformed`]), never a silent short answer. **Dropping** a stream cancels
//! it: the HTTP request is dropped (its connection closed), and the provider layer settles its
//! limiter with the tokens used so far (the prompt, and the completion tokens of the pieces
//! received); no answer is cached or counted as whole. Everything a stream holds is bounded:
//! the assembled answer by [`MAX_STREAMED_BYTES`], tool calls by [`MAX_TOOL_CALLS`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use serde::{Deserialize, Serialize};

use super::completion::{Completion, FinishReason, Usage};
use super::message::ToolCall;
use super::model::LmError;

/// The most bytes of text and tool-call arguments one streamed answer may assemble (8 MiB,
/// like a whole response): a provider streaming without end fails as malformed.
pub const MAX_STREAMED_BYTES: usize = 8 << 20;
/// The most tool calls one answer may have.
pub const MAX_TOOL_CALLS: usize = 128;

/// A piece of a tool call: the first piece of a call has its id and name; later pieces (same
/// `index`) append to its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of the answer (0, 1, …).
    pub index: usize,
    /// The call's id (first piece).
    pub id: Option<String>,
    /// The tool's name (first piece).
    pub name: Option<String>,
    /// More of the arguments' JSON text.
    pub arguments: String,
}

/// What a stream yields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// More of the answer's text.
    Text(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// The end: the whole answer.
    Done(Completion),
}

/// The events of one answer, in order: any number of [`StreamEvent::Text`] and
/// [`StreamEvent::ToolCall`] pieces, then exactly one [`StreamEvent::Done`] (the whole answer)
/// or an error, then nothing; a stream that ends without its end is an error
/// ([`LmError::Malformed`]). Dropping it cancels the call (the provider layer settles its
/// limiter with the tokens received). Bounded by [`MAX_STREAMED_BYTES`] and [`MAX_TOOL_CALLS`].
pub struct CompletionStream {
    inner: Pin<Box<dyn Stream<Item = Result<StreamEvent, LmError>> + Send>>,
    provider: String,
    ended: bool,
}

impl std::fmt::Debug for CompletionStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionStream")
            .field("provider", &self.provider)
            .field("ended", &self.ended)
            .finish()
    }
}

impl CompletionStream {
    /// A stream of these events from `provider` (named in the error if it ends early).
    pub fn new(
        provider: impl Into<String>,
        events: impl Stream<Item = Result<StreamEvent, LmError>> + Send + 'static,
    ) -> Self {
        CompletionStream { inner: Box::pin(events), provider: provider.into(), ended: false }
    }

    /// A whole answer as a stream: its text, its tool calls, then the answer (what a model
    /// that cannot stream, or the call cache, gives).
    pub fn from_completion(completion: Completion) -> Self {
        let mut events = Vec::with_capacity(2 + completion.tool_calls.len());
        if !completion.content.is_empty() {
            events.push(Ok(StreamEvent::Text(completion.content.clone())));
        }
        for (index, call) in completion.tool_calls.iter().enumerate() {
            events.push(Ok(StreamEvent::ToolCall(ToolCallDelta {
                index,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: call.arguments.clone(),
            })));
        }
        let provider = completion.provider.clone();
        events.push(Ok(StreamEvent::Done(completion)));
        Self::new(provider, futures::stream::iter(events))
    }

    /// The provider it comes from.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The next event; `None` after the end or an error.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, LmError>> {
        futures::StreamExt::next(self).await
    }

    /// Reads the stream to its end: the whole answer.
    pub async fn collect(mut self) -> Result<Completion, LmError> {
        while let Some(event) = self.next().await {
            if let StreamEvent::Done(completion) = event? {
                return Ok(completion);
            }
        }
        // `poll_next` turns an early end into an error, so this is only reached after one.
        Err(ended_early(&self.provider))
    }
}

fn ended_early(provider: &str) -> LmError {
    LmError::Malformed {
        provider: provider.to_string(),
        source: "the stream ended before the answer's end".into(),
    }
}

impl Stream for CompletionStream {
    type Item = Result<StreamEvent, LmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(ended_early(&self.provider))))
            }
            Poll::Ready(Some(event)) => {
                if matches!(event, Ok(StreamEvent::Done(_)) | Err(_)) {
                    self.ended = true;
                }
                Poll::Ready(Some(event))
            }
        }
    }
}

/// Completion tokens of a streamed piece (estimated: what a cut-short answer is counted with).
pub(crate) fn piece_tokens(piece: &StreamEvent) -> u64 {
    match piece {
        StreamEvent::Text(text) => super::tokens::count(text),
        StreamEvent::ToolCall(delta) => {
            super::tokens::count(&delta.arguments) + delta.name.as_deref().map_or(0, super::tokens::count)
        }
        StreamEvent::Done(_) => 0,
    }
}

/// Builds the whole answer from a stream's pieces, within [`MAX_STREAMED_BYTES`] and
/// [`MAX_TOOL_CALLS`].
#[derive(Debug, Default, Clone)]
pub struct StreamAssembler {
    text: String,
    calls: Vec<ToolCall>,
    bytes: usize,
}

impl StreamAssembler {
    /// An empty answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a piece; `Err` says why it cannot be part of an answer (too large, a tool call's
    /// index out of order, a call without a name).
    pub fn push(&mut self, event: &StreamEvent) -> Result<(), String> {
        match event {
            StreamEvent::Text(text) => {
                self.grow(text.len())?;
                self.text.push_str(text);
            }
            StreamEvent::ToolCall(delta) => {
                self.grow(
                    delta.arguments.len()
                        + delta.id.as_ref().map_or(0, String::len)
                        + delta.name.as_ref().map_or(0, String::len),
                )?;
                if delta.index == self.calls.len() {
                    if self.calls.len() == MAX_TOOL_CALLS {
                        return Err(format!("more than {MAX_TOOL_CALLS} tool calls"));
                    }
                    self.calls.push(ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                } else if delta.index > self.calls.len() {
                    return Err(format!("tool call {} before call {}", delta.index, self.calls.len()));
                }
                let call = &mut self.calls[delta.index];
                // Some servers repeat the id and name in every piece: the first one counts.
                if let Some(id) = delta.id.as_ref().filter(|_| call.id.is_empty()) {
                    call.id.push_str(id);
                }
                if let Some(name) = delta.name.as_ref().filter(|_| call.name.is_empty()) {
                    call.name.push_str(name);
                }
                call.arguments.push_str(&delta.arguments);
            }
            StreamEvent::Done(_) => {}
        }
        Ok(())
    }

    fn grow(&mut self, by: usize) -> Result<(), String> {
        self.bytes += by;
        if self.bytes > MAX_STREAMED_BYTES {
            return Err(format!("the streamed answer is larger than {MAX_STREAMED_BYTES} bytes"));
        }
        Ok(())
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The answer, with what the end of the stream said.
    pub fn finish(
        self,
        finish_reason: FinishReason,
        usage: Usage,
        model: String,
        provider: String,
        rate_headers: Vec<(String, String)>,
    ) -> Result<Completion, String> {
        if let Some(i) = self.calls.iter().position(|c| c.name.is_empty()) {
            return Err(format!("tool call {i} has no name"));
        }
        Ok(Completion {
            content: self.text,
            tool_calls: self.calls,
            finish_reason,
            usage,
            model,
            provider,
            rate_headers,
            cached: false,
        })
    }
}
