//! A native client for Anthropic's Messages API (`POST /v1/messages`), whole or streamed: text,
//! tool use, JSON-schema answers (as a forced tool call, see
//! [`anthropic_format`](super::anthropic_format)), stop sequences, prompt-cache usage, and the
//! `anthropic-ratelimit-*` headers kept for the limiter. Feature `anthropic`.
//!
//! On reqwest like [`OpenAiClient`](super::OpenAiClient), for the same reason: the rate-limit
//! headers. 529 (overloaded) is a provider failure like a 5xx; a stream's `error` event is one
//! too.

use std::time::Duration;

#[cfg(feature = "streaming")]
use foundation_core::Cause;

use super::anthropic_format::{self, ANTHROPIC_VERSION};
use super::completion::Completion;
use super::http_call::{Endpoint, interpret};
use super::model::{BoxFuture, LanguageModel, LmError};
use super::request::ChatRequest;
#[cfg(feature = "streaming")]
use super::{
    anthropic_format::{EventError, EventState},
    completion::{FinishReason, Usage},
    http_call::{Decoder, SseReader},
    sse::SseEvent,
    stream::{CompletionStream, StreamEvent},
    tokens,
};

/// Environment variable with the API's base URL (without `/v1`).
pub const ENV_ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// Environment variable with the API key.
pub const ENV_ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// Base URL when none is configured.
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// Anthropic's Messages API (or a server speaking it, like the simulated provider).
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    endpoint: Endpoint,
    model: String,
    base_url: String,
    api_key: Option<String>,
}

impl AnthropicClient {
    /// A client for `model` at `base_url` (`None`: `ANTHROPIC_BASE_URL`, or Anthropic's; a
    /// trailing `/v1` is accepted) with `api_key` (`None`: `ANTHROPIC_API_KEY`). `provider`
    /// names it in errors and usage.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        base_url: Option<String>,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Self {
        let (base_url, api_key) = super::http_call::resolve(
            base_url,
            ENV_ANTHROPIC_BASE_URL,
            DEFAULT_ANTHROPIC_BASE_URL,
            api_key,
            ENV_ANTHROPIC_API_KEY,
        );
        let base_url = base_url.strip_suffix("/v1").unwrap_or(&base_url).to_string();
        AnthropicClient {
            endpoint: Endpoint::new(provider.into(), timeout),
            model: model.into(),
            base_url,
            api_key,
        }
    }

    /// The URL requests go to.
    pub fn url(&self) -> String {
        format!("{}/v1/messages", self.base_url)
    }

    fn post(&self, request: &ChatRequest, stream: bool) -> Result<reqwest::RequestBuilder, LmError> {
        request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
        let body = anthropic_format::request_body(&self.model, request, stream)
            .map_err(|reason| LmError::InvalidRequest { reason })?;
        let mut http =
            self.endpoint.http.post(self.url()).header("anthropic-version", ANTHROPIC_VERSION).json(&body);
        if !stream {
            http = http.timeout(self.endpoint.timeout);
        }
        if let Some(key) = &self.api_key {
            http = http.header("x-api-key", key);
        }
        Ok(http)
    }

    /// Reads a whole Messages response body (a 200's) to `request`: the answer, or
    /// [`LmError::Malformed`] saying what is wrong. For bodies from elsewhere (recorded
    /// responses, another HTTP stack).
    pub fn parse(&self, request: &ChatRequest, body: &[u8]) -> Result<Completion, LmError> {
        let format_tool = anthropic_format::format_tool(request);
        interpret(&self.endpoint, 200, Vec::new(), body, |b| {
            anthropic_format::parse_response(b, &self.model, &self.endpoint.provider, format_tool)
        })
    }

    /// Reads a whole streamed response body to `request` (server-sent events, as recorded): its
    /// pieces, ending with the whole answer, or the error the stream amounts to (feature
    /// `streaming`).
    #[cfg(feature = "streaming")]
    pub fn parse_stream(&self, request: &ChatRequest, body: &[u8]) -> Result<Vec<StreamEvent>, LmError> {
        let decoder = Events {
            state: EventState::default(),
            format_tool: anthropic_format::format_tool(request).map(str::to_string),
            provider: self.endpoint.provider.clone(),
        };
        super::http_call::parse_recorded(&self.endpoint, decoder, &self.model, body)
    }

    async fn call(&self, request: &ChatRequest) -> Result<Completion, LmError> {
        let e = &self.endpoint;
        let response = self.post(request, false)?.send().await.map_err(|err| e.transport(err))?;
        let status = response.status().as_u16();
        let headers = super::http_call::rate_headers(response.headers());
        let bytes = e.read_body(response).await?;
        let format_tool = anthropic_format::format_tool(request);
        interpret(e, status, headers, &bytes, |b| {
            anthropic_format::parse_response(b, &self.model, &e.provider, format_tool)
        })
    }

    #[cfg(feature = "streaming")]
    async fn open_stream(&self, request: &ChatRequest) -> Result<CompletionStream, LmError> {
        let (response, headers) = self.endpoint.open(self.post(request, true)?).await?;
        let decoder = Events {
            state: EventState::default(),
            format_tool: anthropic_format::format_tool(request).map(str::to_string),
            provider: self.endpoint.provider.clone(),
        };
        Ok(SseReader::stream(
            &self.endpoint,
            response,
            headers,
            decoder,
            &self.model,
            tokens::request_prompt(request),
        ))
    }
}

impl LanguageModel for AnthropicClient {
    fn model(&self) -> &str {
        &self.model
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(self.call(request))
    }

    #[cfg(feature = "streaming")]
    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
        Box::pin(self.open_stream(request))
    }
}

/// The Messages API's events (`message_start` … `message_stop`).
#[cfg(feature = "streaming")]
struct Events {
    state: EventState,
    format_tool: Option<String>,
    provider: String,
}

#[cfg(feature = "streaming")]
impl Decoder for Events {
    fn event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), LmError> {
        anthropic_format::parse_event(
            &event.event,
            &event.data,
            self.format_tool.as_deref(),
            &mut self.state,
            out,
        )
        .map_err(|e| match e {
            EventError::Provider(kind, message) => LmError::Server {
                provider: self.provider.clone(),
                status: if kind == "overloaded_error" { 529 } else { 500 },
                body: format!("{kind}: {message}"),
            },
            EventError::Malformed(reason) => {
                LmError::Malformed { provider: self.provider.clone(), source: Cause::from(reason) }
            }
        })
    }

    fn over(&self) -> bool {
        self.state.done
    }

    fn finished(&self) -> bool {
        self.state.finish_reason.is_some()
    }

    fn end(&mut self) -> (Option<String>, FinishReason, Option<Usage>) {
        let finish = anthropic_format::stream_finish(&self.state, self.format_tool.as_deref());
        (self.state.model.take(), finish, Some(self.state.usage.usage()))
    }
}
