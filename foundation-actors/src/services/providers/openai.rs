//! A client for OpenAI-compatible chat-completions endpoints: OpenAI, vLLM, Ollama (`/v1`),
//! llama.cpp server, and the simulated provider server.
//!
//! Written on reqwest rather than an SDK crate: SDKs hide the rate-limit headers that the
//! limiter needs. `http://` and `https://` (rustls on aws-lc-rs, the system's root certificates).

use std::time::Duration;

use foundation_core::Cause;
use serde::Deserialize;

use super::message::{ChatRequest, Completion, Usage};
use super::model::{BoxFuture, LanguageModel, LmError};

/// Environment variable with the endpoint's base URL (up to `/v1`).
pub const ENV_BASE_URL: &str = "OPENAI_BASE_URL";
/// Environment variable with the API key.
pub const ENV_API_KEY: &str = "OPENAI_API_KEY";
/// Base URL when none is configured.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Longest piece of an error body kept in an error.
const BODY_PREVIEW: usize = 300;
/// The largest response body read from an endpoint (8 MiB): a longer one is not read further
/// and the call fails as malformed. A chat completion is a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// An OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    provider: String,
    model: String,
    base_url: String,
    api_key: Option<String>,
    timeout: Duration,
    http: reqwest::Client,
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
        let base_url = base_url
            .or_else(|| std::env::var(ENV_BASE_URL).ok())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let api_key = api_key.or_else(|| std::env::var(ENV_API_KEY).ok()).filter(|k| !k.is_empty());
        OpenAiClient {
            provider: provider.into(),
            model: model.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            timeout,
            http: reqwest::Client::new(),
        }
    }

    /// The URL requests go to.
    pub fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    async fn call(&self, request: &ChatRequest) -> Result<Completion, LmError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        });
        let mut http = self.http.post(self.url()).json(&body).timeout(self.timeout);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let response = http.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let rate_headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| {
                let n = name.as_str();
                n.starts_with("x-ratelimit-") || n.starts_with("anthropic-ratelimit-") || n == "retry-after"
            })
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string())))
            .collect();
        let bytes = self.read_body(response).await?;
        self.interpret(status, rate_headers, &bytes)
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
        let provider = || self.provider.clone();
        let text = String::from_utf8_lossy(bytes);
        let preview = || text.chars().take(BODY_PREVIEW).collect::<String>();
        match status {
            200..=299 => {}
            429 => {
                let retry_after = rate_headers
                    .iter()
                    .find(|(n, _)| n == "retry-after")
                    .and_then(|(_, v)| foundation_core::rate_limit::parse_duration(v))
                    .or_else(|| try_again_in(&text))
                    .map(|d| d.min(foundation_core::rate_limit::MAX_PAUSE));
                return Err(LmError::RateLimited { provider: provider(), retry_after, rate_headers });
            }
            500..=599 => return Err(LmError::Server { provider: provider(), status, body: preview() }),
            _ => return Err(LmError::Rejected { provider: provider(), status, body: preview() }),
        }
        let parsed: Wire = serde_json::from_slice(bytes).map_err(|e| LmError::Malformed {
            provider: provider(),
            source: Cause::from(format!("{e} in {:?}", preview())),
        })?;
        let choice = parsed.choices.into_iter().next().ok_or_else(|| LmError::Malformed {
            provider: provider(),
            source: "no choices in the response".into(),
        })?;
        let usage = parsed.usage.ok_or_else(|| LmError::Malformed {
            provider: provider(),
            source: "no usage in the response (token counts are needed for limits and cost)".into(),
        })?;
        Ok(Completion {
            content: choice.message.content.unwrap_or_default(),
            usage: Usage { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens },
            model: parsed.model.unwrap_or_else(|| self.model.clone()),
            provider: provider(),
            rate_headers,
            cached: false,
        })
    }

    /// The response's body, read up to [`MAX_RESPONSE_BYTES`] (an endpoint's answer is
    /// untrusted: a body without end must not fill the memory).
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, LmError> {
        let too_large = || LmError::Malformed {
            provider: self.provider.clone(),
            source: Cause::from(format!("the response body is larger than {MAX_RESPONSE_BYTES} bytes")),
        };
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, e: reqwest::Error) -> LmError {
        if e.is_timeout() {
            LmError::Timeout { provider: self.provider.clone(), after: self.timeout }
        } else {
            // The source chain says why (refused, reset); the top level only says "error sending".
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason.push_str(": ");
                reason.push_str(&s.to_string());
                source = s.source();
            }
            LmError::Transport { provider: self.provider.clone(), source: Cause::from(reason) }
        }
    }
}

impl LanguageModel for OpenAiClient {
    fn model(&self) -> &str {
        &self.model
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(self.call(request))
    }
}

/// OpenAI's token 429s say "Please try again in 976ms" instead of sending `retry-after`.
fn try_again_in(body: &str) -> Option<Duration> {
    let at = body.find("try again in ")? + "try again in ".len();
    let rest = &body[at..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).unwrap_or(rest.len());
    foundation_core::rate_limit::parse_duration(rest[..end].trim_end_matches('.'))
}

#[derive(Deserialize)]
struct Wire {
    model: Option<String>,
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
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
        assert_eq!(super::try_again_in(body), Some(std::time::Duration::from_millis(976)));
        assert_eq!(super::try_again_in("nothing"), None);
    }
}
