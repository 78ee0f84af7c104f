//! A client for OpenAI-compatible chat-completions endpoints: OpenAI, vLLM, Ollama (`/v1`),
//! llama.cpp server, and the simulated provider server.
//!
//! Written on reqwest rather than an SDK crate: SDKs hide the rate-limit headers that the
//! limiter needs. `http://` and `https://` (rustls on aws-lc-rs, the system's root certificates).

use std::time::Duration;

use super::completion::Completion;
use super::http_call::{Endpoint, interpret};
use super::model::{BoxFuture, LanguageModel, LmError};
use super::openai_format;
use super::request::ChatRequest;
#[cfg(feature = "streaming")]
use super::{
    http_call::{Decoder, SseReader},
    sse::SseEvent,
    stream::{CompletionStream, StreamEvent},
    tokens,
};

pub use super::http_call::MAX_RESPONSE_BYTES;

/// Environment variable with the endpoint's base URL (up to `/v1`).
pub const ENV_BASE_URL: &str = "OPENAI_BASE_URL";
/// Environment variable with the API key.
pub const ENV_API_KEY: &str = "OPENAI_API_KEY";
/// Base URL when none is configured.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// An OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    endpoint: Endpoint,
    model: String,
    base_url: String,
    api_key: Option<String>,
}

impl OpenAiClient {
    /// A client for `model` at `base_url` (`None`: `OPENAI_BASE_URL`, or OpenAI's) with `api_key`
    /// (`None`: `OPENAI_API_KEY`, or no key). `provider` names it in errors and usage.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        base_url: Option<String>,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Self {
        let (base_url, api_key) =
            super::http_call::resolve(base_url, ENV_BASE_URL, DEFAULT_BASE_URL, api_key, ENV_API_KEY);
        OpenAiClient {
            endpoint: Endpoint::new(provider.into(), timeout),
            model: model.into(),
            base_url,
            api_key,
        }
    }

    /// The URL requests go to.
    pub fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    fn post(&self, request: &ChatRequest, stream: bool) -> Result<reqwest::RequestBuilder, LmError> {
        request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
        // OpenAI's own API takes the budget as `max_completion_tokens` (its reasoning models
        // refuse `max_tokens`); compatible servers read `max_tokens`.
        let openai_itself = self.base_url.starts_with("https://api.openai.com/");
        let body = openai_format::request_body_with(&self.model, request, stream, openai_itself);
        let mut http = self.endpoint.http.post(self.url()).json(&body);
        if !stream {
            // A stream's length is the answer's: each wait for more of it is bounded instead.
            http = http.timeout(self.endpoint.timeout);
        }
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        Ok(http)
    }

    async fn call(&self, request: &ChatRequest) -> Result<Completion, LmError> {
        let e = &self.endpoint;
        let response = self.post(request, false)?.send().await.map_err(|err| e.transport(err))?;
        let status = response.status().as_u16();
        let headers = super::http_call::rate_headers(response.headers());
        let bytes = e.read_body(response).await?;
        self.interpret(status, headers, &bytes)
    }

    /// What an answer says: a completion, or the error its status and body amount to. Pure (no
    /// I/O), so that it can be tried with any bytes: whatever the endpoint sends, this returns
    /// and never panics (property-tested below).
    fn interpret(
        &self,
        status: u16,
        rate_headers: Vec<(String, String)>,
        bytes: &[u8],
    ) -> Result<Completion, LmError> {
        interpret(&self.endpoint, status, rate_headers, bytes, |b| {
            openai_format::parse_response(b, &self.model, &self.endpoint.provider)
        })
    }

    /// Reads a whole chat-completions response body (a 200's): the answer, or
    /// [`LmError::Malformed`] saying what is wrong. For bodies from elsewhere (recorded
    /// responses, another HTTP stack); the client itself reads responses this way.
    pub fn parse(&self, body: &[u8]) -> Result<Completion, LmError> {
        self.interpret(200, Vec::new(), body)
    }

    /// Reads a whole streamed response body (server-sent events, as recorded): its pieces,
    /// ending with the whole answer, or the error the stream amounts to (feature `streaming`).
    /// Unlike a live stream, an error stops the reading at once, and a body without usage
    /// gets the completion tokens counted and 0 prompt tokens (the prompt is not known here).
    #[cfg(feature = "streaming")]
    pub fn parse_stream(&self, body: &[u8]) -> Result<Vec<StreamEvent>, LmError> {
        let decoder =
            Chunks { state: openai_format::ChunkState::default(), provider: self.endpoint.provider.clone() };
        super::http_call::parse_recorded(&self.endpoint, decoder, &self.model, body)
    }

    /// Opens a streamed answer: `Ok` once the endpoint answered 2xx (its errors before that are
    /// the same as [`complete`](LanguageModel::complete)'s).
    #[cfg(feature = "streaming")]
    async fn open_stream(&self, request: &ChatRequest) -> Result<CompletionStream, LmError> {
        let (response, headers) = self.endpoint.open(self.post(request, true)?).await?;
        let decoder =
            Chunks { state: openai_format::ChunkState::default(), provider: self.endpoint.provider.clone() };
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

impl LanguageModel for OpenAiClient {
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

/// Chat-completion chunks (`data: {…}` up to `data: [DONE]`).
#[cfg(feature = "streaming")]
struct Chunks {
    state: openai_format::ChunkState,
    provider: String,
}

#[cfg(feature = "streaming")]
impl Decoder for Chunks {
    fn event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), LmError> {
        openai_format::parse_chunk(&event.data, &mut self.state, out).map_err(|e| LmError::Malformed {
            provider: self.provider.clone(),
            source: foundation_core::Cause::from(e),
        })
    }

    fn over(&self) -> bool {
        self.state.done
    }

    fn finished(&self) -> bool {
        self.state.finish_reason.is_some()
    }

    fn end(&mut self) -> (Option<String>, super::completion::FinishReason, Option<super::completion::Usage>) {
        (self.state.model.take(), self.state.finish_reason.take().unwrap_or_default(), self.state.usage)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        // Seconds in the suite; longer: PROPTEST_CASES=200000 cargo test -p foundation-actors --lib openai
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever an endpoint answers (status, headers, bytes — JSON-looking or not), the
        /// client returns a completion or a typed error naming the provider, and never panics.
        #[test]
        fn any_answer_is_a_completion_or_a_typed_error(
            status in prop_oneof![Just(200u16), Just(429u16), Just(500u16), Just(404u16), any::<u16>()],
            retry_after in prop_oneof![Just(String::new()), "[0-9eE.+-]{0,24}", "[a-z0-9 .:]{0,16}", Just("1e20".to_string())],
            body in prop_oneof![
                any::<Vec<u8>>(),
                "\\{\"choices\":\\[\\{\"message\":\\{\"content\":\"[a-z]{0,8}\"\\}\\}\\],\"usage\":\\{\"prompt_tokens\":[0-9]{1,3},\"completion_tokens\":[0-9]{1,3}\\}\\}".prop_map(String::into_bytes),
                "[\\{\\}\\[\\]\":,a-z0-9 -]{0,64}".prop_map(String::into_bytes),
                "Please try again in [0-9a-z.]{0,12}".prop_map(String::into_bytes),
            ],
        ) {
            // One client for every case: building one loads the system's root certificates.
            static CLIENT: std::sync::OnceLock<super::OpenAiClient> = std::sync::OnceLock::new();
            let client = CLIENT.get_or_init(|| {
                super::OpenAiClient::new("fuzzed", "m", Some("http://127.0.0.1:9".into()), None, std::time::Duration::from_secs(1))
            });
            let headers = vec![("retry-after".to_string(), retry_after)];
            match client.interpret(status, headers, body.as_ref()) {
                Ok(completion) => prop_assert!((200..300).contains(&status) && completion.provider == "fuzzed"),
                Err(super::LmError::RateLimited { provider, retry_after, .. }) => {
                    prop_assert_eq!(status, 429);
                    prop_assert_eq!(provider, "fuzzed");
                    prop_assert!(retry_after.is_none_or(|d| d <= foundation_core::rate_limit::MAX_PAUSE));
                }
                Err(e) => prop_assert!(e.to_string().contains("fuzzed"), "{}", e),
            }
        }
    }

    #[test]
    fn try_again_in_is_read_from_a_429_message() {
        let body = r#"{"error":{"message":"Rate limit reached for gpt-4o on tokens per min. Please try again in 976ms. Visit..."}}"#;
        assert_eq!(super::super::http_call::try_again_in(body), Some(std::time::Duration::from_millis(976)));
        assert_eq!(super::super::http_call::try_again_in("nothing"), None);
    }
}
