//! What the HTTP clients share: telling a response's status apart (429, 5xx, other 4xx), reading
//! a bounded body, naming transport failures, keeping the rate-limit headers, and reading a
//! streamed answer's server-sent events through an API's [`Decoder`].

use std::time::Duration;

use foundation_core::Cause;

use super::completion::Completion;
use super::model::LmError;
#[cfg(feature = "streaming")]
use super::{
    completion::Usage,
    sse::{SseEvent, SseParser},
    stream::{CompletionStream, StreamAssembler, StreamEvent},
    tokens,
};

/// Longest piece of an error body kept in an error.
const BODY_PREVIEW: usize = 300;
/// The largest response body read from an endpoint (8 MiB): a longer one is not read further
/// and the call fails as malformed. A chat completion is a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// A stream may run this many times the call timeout in all (each wait for its next bytes is
/// bounded by the timeout itself): a server that keeps a stream alive with pings or empty
/// pieces does not hold the limiter's permit forever.
pub const STREAM_DEADLINE_FACTOR: u32 = 10;
/// The most bytes a stream may send in all (pings and framing included): four times
/// [`MAX_STREAMED_BYTES`](super::MAX_STREAMED_BYTES).
#[cfg(feature = "streaming")]
const MAX_STREAM_WIRE_BYTES: usize = 4 * super::stream::MAX_STREAMED_BYTES;

/// A provider's HTTP side: its name (in errors), its client and its timeout.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) provider: String,
    pub(crate) timeout: Duration,
    pub(crate) http: reqwest::Client,
}

impl Endpoint {
    pub(crate) fn new(provider: String, timeout: Duration) -> Self {
        Endpoint { provider, timeout, http: reqwest::Client::new() }
    }

    /// The error a status and body amount to (`None` for a 2xx). Pure: tried with any bytes.
    pub(crate) fn status_error(
        &self,
        status: u16,
        rate_headers: &[(String, String)],
        bytes: &[u8],
    ) -> Option<LmError> {
        let provider = || self.provider.clone();
        let text = String::from_utf8_lossy(bytes);
        let preview = || text.chars().take(BODY_PREVIEW).collect::<String>();
        match status {
            200..=299 => None,
            429 => {
                let retry_after = rate_headers
                    .iter()
                    .find(|(n, _)| n == "retry-after")
                    .and_then(|(_, v)| foundation_core::rate_limit::parse_duration(v))
                    .or_else(|| try_again_in(&text))
                    .map(|d| d.min(foundation_core::rate_limit::MAX_PAUSE));
                Some(LmError::RateLimited {
                    provider: provider(),
                    retry_after,
                    rate_headers: rate_headers.to_vec(),
                })
            }
            // 529: Anthropic's "overloaded".
            500..=599 => Some(LmError::Server { provider: provider(), status, body: preview() }),
            _ => Some(LmError::Rejected { provider: provider(), status, body: preview() }),
        }
    }

    /// An unparsable 2xx body.
    pub(crate) fn malformed(&self, reason: &str, bytes: &[u8]) -> LmError {
        let preview: String = String::from_utf8_lossy(bytes).chars().take(BODY_PREVIEW).collect();
        LmError::Malformed {
            provider: self.provider.clone(),
            source: Cause::from(format!("{reason} in {preview:?}")),
        }
    }

    /// The response's body, read up to [`MAX_RESPONSE_BYTES`] (an endpoint's answer is
    /// untrusted: a body without end must not fill the memory).
    pub(crate) async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, LmError> {
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

    pub(crate) fn transport(&self, e: reqwest::Error) -> LmError {
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

    /// Sends a request that asks for a stream; `Ok` with the response once it answered 2xx.
    #[cfg(feature = "streaming")]
    pub(crate) async fn open(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, Vec<(String, String)>), LmError> {
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(r) => r.map_err(|e| self.transport(e))?,
            Err(_) => return Err(LmError::Timeout { provider: self.provider.clone(), after: self.timeout }),
        };
        let status = response.status().as_u16();
        let headers = rate_headers(response.headers());
        if !(200..300).contains(&status) {
            let bytes = self.read_body(response).await?;
            return Err(self
                .status_error(status, &headers, &bytes)
                .unwrap_or_else(|| self.malformed("?", &bytes)));
        }
        Ok((response, headers))
    }
}

/// Where a client goes and with what key: the given base URL, else the environment variable
/// `env_url`, else `default` (trailing `/` removed); the given key, else `env_key` (empty: none).
pub(crate) fn resolve(
    base_url: Option<String>,
    env_url: &str,
    default: &str,
    api_key: Option<String>,
    env_key: &str,
) -> (String, Option<String>) {
    let base_url = base_url.or_else(|| std::env::var(env_url).ok()).unwrap_or_else(|| default.to_string());
    let api_key = api_key.or_else(|| std::env::var(env_key).ok()).filter(|k| !k.is_empty());
    (base_url.trim_end_matches('/').to_string(), api_key)
}

/// OpenAI's token 429s say "Please try again in 976ms" instead of sending `retry-after`.
pub(crate) fn try_again_in(body: &str) -> Option<Duration> {
    let at = body.find("try again in ")? + "try again in ".len();
    let rest = &body[at..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).unwrap_or(rest.len());
    foundation_core::rate_limit::parse_duration(rest[..end].trim_end_matches('.'))
}

/// The rate-limit headers of a response, lower-cased (at most 64).
pub(crate) fn rate_headers(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n.starts_with("x-ratelimit-") || n.starts_with("anthropic-ratelimit-") || n == "retry-after"
        })
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string())))
        .take(64)
        .collect()
}

/// How an API's streamed events become pieces of an answer.
#[cfg(feature = "streaming")]
pub(crate) trait Decoder: Send + 'static {
    /// Reads one event; its pieces go to `out`.
    fn event(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), LmError>;
    /// The stream said it is over (no more events are read).
    fn over(&self) -> bool;
    /// The stream said why it finished (a close of the connection after this is its end).
    fn finished(&self) -> bool;
    /// The model, why it finished and the usage, once over.
    fn end(&mut self) -> (Option<String>, super::completion::FinishReason, Option<Usage>);
}

/// A streamed answer being read: the response, the SSE parser, the pieces parsed but not yet
/// yielded, the answer assembled so far.
#[cfg(feature = "streaming")]
pub(crate) struct SseReader<D: Decoder> {
    response: reqwest::Response,
    endpoint: Endpoint,
    decoder: D,
    parser: SseParser,
    pending: std::collections::VecDeque<StreamEvent>,
    assembler: StreamAssembler,
    model: String,
    prompt_estimate: u64,
    rate_headers: Vec<(String, String)>,
    /// When the whole stream must have ended.
    deadline: tokio::time::Instant,
    /// Bytes read so far.
    wire_bytes: usize,
    /// An error to report once the pieces decoded before it are given out.
    failed: Option<LmError>,
    ended: bool,
}

#[cfg(feature = "streaming")]
impl<D: Decoder> SseReader<D> {
    /// The stream of `response`, decoded by `decoder`; `model` is the answer's model if the
    /// stream names none, `prompt_estimate` its prompt tokens if it reports no usage.
    pub(crate) fn stream(
        endpoint: &Endpoint,
        response: reqwest::Response,
        rate_headers: Vec<(String, String)>,
        decoder: D,
        model: &str,
        prompt_estimate: u64,
    ) -> CompletionStream {
        let reader = SseReader {
            response,
            endpoint: endpoint.clone(),
            decoder,
            parser: SseParser::new(),
            pending: std::collections::VecDeque::new(),
            assembler: StreamAssembler::new(),
            model: model.to_string(),
            prompt_estimate,
            rate_headers,
            deadline: tokio::time::Instant::now() + endpoint.timeout * STREAM_DEADLINE_FACTOR,
            wire_bytes: 0,
            failed: None,
            ended: false,
        };
        CompletionStream::new(endpoint.provider.clone(), futures::stream::unfold(reader, Self::step))
    }

    async fn step(mut self) -> Option<(Result<StreamEvent, LmError>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if let Some(e) = self.failed.take() {
                return self.fail(e);
            }
            if self.decoder.over() {
                return self.finish();
            }
            // Each wait for more of the stream is bounded by the timeout (a stalled stream
            // ends), and the whole stream by the deadline.
            let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = self.endpoint.timeout.min(left);
            let chunk = match tokio::time::timeout(wait, self.response.chunk()).await {
                Err(_) => {
                    let after = if wait < self.endpoint.timeout {
                        self.endpoint.timeout * STREAM_DEADLINE_FACTOR
                    } else {
                        self.endpoint.timeout
                    };
                    let e = LmError::Timeout { provider: self.endpoint.provider.clone(), after };
                    return self.fail(e);
                }
                Ok(Err(e)) => {
                    let e = self.endpoint.transport(e);
                    return self.fail(e);
                }
                // The connection closed: the end if the stream said it finished, else an error.
                Ok(Ok(None)) => {
                    if self.decoder.finished() {
                        return self.finish();
                    }
                    let e = self.malformed("the stream ended before the answer's end".into());
                    return self.fail(e);
                }
                Ok(Ok(Some(chunk))) => chunk,
            };
            self.wire_bytes += chunk.len();
            if self.wire_bytes > MAX_STREAM_WIRE_BYTES {
                let e = self.malformed(format!("the stream is longer than {MAX_STREAM_WIRE_BYTES} bytes"));
                return self.fail(e);
            }
            let mut events = Vec::new();
            if let Err(e) = self.parser.feed(&chunk, &mut events) {
                let e = self.malformed(e);
                return self.fail(e);
            }
            // Pieces decoded before an error are given out first.
            'events: for event in events {
                let mut pieces = Vec::new();
                let decoded = self.decoder.event(&event, &mut pieces);
                for piece in pieces {
                    if let Err(e) = self.assembler.push(&piece) {
                        self.failed = Some(self.malformed(e));
                        break 'events;
                    }
                    self.pending.push_back(piece);
                }
                if let Err(e) = decoded {
                    self.failed = Some(e);
                    break;
                }
            }
        }
    }

    fn malformed(&self, reason: String) -> LmError {
        LmError::Malformed { provider: self.endpoint.provider.clone(), source: Cause::from(reason) }
    }

    fn fail(mut self, e: LmError) -> Option<(Result<StreamEvent, LmError>, Self)> {
        self.ended = true;
        Some((Err(e), self))
    }

    fn finish(mut self) -> Option<(Result<StreamEvent, LmError>, Self)> {
        self.ended = true;
        if !self.decoder.finished() {
            let e = self.malformed("the stream ended without saying why the answer finished".into());
            return Some((Err(e), self));
        }
        let assembler = std::mem::take(&mut self.assembler);
        let (model, finish, usage) = self.decoder.end();
        // A server that cannot report a stream's usage (`stream_options` unsupported) gets the
        // estimate: the limiter and the ledger need numbers.
        let usage = usage.unwrap_or_else(|| Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: tokens::count(assembler.text()),
            cached_prompt_tokens: 0,
        });
        let model = model.unwrap_or_else(|| self.model.clone());
        let headers = std::mem::take(&mut self.rate_headers);
        match assembler.finish(finish, usage, model, self.endpoint.provider.clone(), headers) {
            Ok(completion) => Some((Ok(StreamEvent::Done(completion)), self)),
            Err(e) => {
                let e = self.malformed(e);
                Some((Err(e), self))
            }
        }
    }
}

/// A recorded stream's pieces and whole answer, read as [`SseReader`] reads a live one.
#[cfg(feature = "streaming")]
pub(crate) fn parse_recorded<D: Decoder>(
    endpoint: &Endpoint,
    mut decoder: D,
    model: &str,
    body: &[u8],
) -> Result<Vec<StreamEvent>, LmError> {
    let malformed = |reason: String| LmError::Malformed {
        provider: endpoint.provider.clone(),
        source: Cause::from(reason),
    };
    if body.len() > MAX_STREAM_WIRE_BYTES {
        return Err(malformed(format!("the stream is longer than {MAX_STREAM_WIRE_BYTES} bytes")));
    }
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.feed(body, &mut events).map_err(malformed)?;
    let mut assembler = StreamAssembler::new();
    let mut out = Vec::new();
    for event in events {
        if decoder.over() {
            break;
        }
        let mut pieces = Vec::new();
        decoder.event(&event, &mut pieces)?;
        for piece in pieces {
            assembler.push(&piece).map_err(malformed)?;
            out.push(piece);
        }
    }
    if !decoder.finished() {
        return Err(malformed("the stream ended without saying why the answer finished".into()));
    }
    let (named, finish, usage) = decoder.end();
    let usage = usage.unwrap_or_else(|| Usage {
        prompt_tokens: 0,
        completion_tokens: tokens::count(assembler.text()),
        cached_prompt_tokens: 0,
    });
    let whole = assembler
        .finish(
            finish,
            usage,
            named.unwrap_or_else(|| model.to_string()),
            endpoint.provider.clone(),
            Vec::new(),
        )
        .map_err(malformed)?;
    out.push(StreamEvent::Done(whole));
    Ok(out)
}

/// The whole answer of a 2xx body, or the error its status amounts to.
pub(crate) fn interpret(
    endpoint: &Endpoint,
    status: u16,
    rate_headers: Vec<(String, String)>,
    bytes: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<Completion, String>,
) -> Result<Completion, LmError> {
    if let Some(e) = endpoint.status_error(status, &rate_headers, bytes) {
        return Err(e);
    }
    let mut completion = parse(bytes).map_err(|e| endpoint.malformed(&e, bytes))?;
    completion.rate_headers = rate_headers;
    Ok(completion)
}
