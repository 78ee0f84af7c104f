//! A simulated provider: an HTTP server that speaks OpenAI's chat-completions API
//! (`POST /v1/chat/completions`) and Anthropic's Messages API (`POST /v1/messages`), whole or
//! streamed as server-sent events, answers with the [`SimulatedModel`] (text, tool calls,
//! JSON-schema answers; see [`SimulatedModel::respond`]), enforces its own requests- and
//! tokens-per-minute limits (429 with the API's headers when exceeded), and injects latency,
//! 5xx faults and malformed answers on demand. For tests and benchmarks of everything that
//! talks to providers, ours or any other client (`foundation sim-provider` serves it).
//!
//! Admission is what real providers do: a request is charged when it arrives, for its prompt
//! and its completion tokens (the simulated answer is known in advance, so the charge is exact),
//! against token buckets that hold a minute's worth and refill continuously. Every response
//! carries `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (Anthropic:
//! `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`); a 429 also carries
//! `retry-after` (seconds, fractional) and says "Please try again in …" like OpenAI. A streamed
//! answer is counted as served when its last event is sent, and as cancelled if the client goes
//! away before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::completion::{Completion, Usage};
use super::request::ChatRequest;
use super::simulated::{SimulatedConfig, SimulatedModel};
use super::stream::StreamEvent;
use super::{anthropic_format, openai_format};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use foundation_core::rate_limit::{ProviderLimits, RateLimitError, RateLimiter, TokenCost};

/// How the simulated provider behaves.
#[derive(Debug, Clone, Default)]
pub struct SimServerConfig {
    /// The limits it enforces (`rpm`, `tpm`; others are ignored). Default: none.
    pub limits: ProviderLimits,
    /// The model behind it (seed, latency, token counts).
    pub model: SimulatedConfig,
}

/// What the server has seen, by its own count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests answered with a completion.
    pub served: u64,
    /// Requests refused with 429.
    pub rate_limited: u64,
    /// Requests failed on purpose with 500.
    pub faults: u64,
    /// Requests answered with garbage on purpose.
    pub malformed: u64,
    /// Requests that were not valid chat-completions requests (400).
    pub bad_requests: u64,
    /// Prompt tokens of served requests.
    pub prompt_tokens: u64,
    /// Completion tokens of served requests.
    pub completion_tokens: u64,
    /// Requests answered as a stream (counted as served when the stream ends).
    pub streams: u64,
    /// Streams the client went away from before their end.
    pub streams_cancelled: u64,
    /// Tool calls in the answers.
    pub tool_calls: u64,
    /// Embedding requests served (also counted in `served`), and the texts they embedded.
    pub embedding_requests: u64,
    /// Texts embedded.
    pub embedded_texts: u64,
}

struct Shared {
    model: SimulatedModel,
    limits: ProviderLimits,
    limiter: Option<RateLimiter>,
    fail_next: AtomicU64,
    malformed_next: AtomicU64,
    served: AtomicU64,
    rate_limited: AtomicU64,
    faults: AtomicU64,
    malformed: AtomicU64,
    bad_requests: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    streams: AtomicU64,
    streams_cancelled: AtomicU64,
    tool_calls: AtomicU64,
    embedding_requests: AtomicU64,
    embedded_texts: AtomicU64,
    ids: AtomicU64,
    prompt_cache: std::sync::Mutex<PromptCache>,
}

/// Prompt prefixes seen, as providers cache them: a request whose conversation starts with one
/// seen before (its tools and response format, then its messages up to a message boundary)
/// has that prefix's tokens reported as cached, in blocks of [`CACHE_BLOCK`] tokens once the
/// prefix is at least [`MIN_CACHED_PROMPT`] (OpenAI's rules; Anthropic caches only marked
/// prefixes, which the simulated server does not model: it caches alike for both APIs). At
/// most [`PROMPT_CACHE_ENTRIES`] prefixes, the oldest forgotten first.
#[derive(Default)]
struct PromptCache {
    seen: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

/// The shortest prompt prefix reported as cached, in tokens.
const MIN_CACHED_PROMPT: u64 = 1024;
/// Cached tokens are reported in blocks of this many.
const CACHE_BLOCK: u64 = 128;
/// Prefixes the simulated server remembers.
const PROMPT_CACHE_ENTRIES: usize = 16_384;

impl PromptCache {
    /// The cached prompt tokens of `request`; remembers its prefixes.
    fn cached_tokens(&mut self, request: &ChatRequest) -> u64 {
        use foundation_core::hash::stable_hash;
        let head = serde_json::to_vec(&(&request.tools, &request.response_format)).unwrap_or_default();
        let mut hash = stable_hash(&head);
        let mut tokens = super::tokens::request_prompt(request) - super::tokens::prompt(&request.messages)
            + super::tokens::REQUEST_OVERHEAD;
        let mut best = 0;
        let mut prefixes = Vec::with_capacity(request.messages.len());
        for message in &request.messages {
            let mut bytes = hash.to_le_bytes().to_vec();
            bytes.extend(serde_json::to_vec(message).unwrap_or_default());
            hash = stable_hash(&bytes);
            tokens += super::tokens::message(message);
            if self.seen.contains(&hash) {
                best = tokens;
            }
            prefixes.push(hash);
        }
        for prefix in prefixes {
            if self.seen.insert(prefix) {
                self.order.push_back(prefix);
                if self.order.len() > PROMPT_CACHE_ENTRIES
                    && let Some(old) = self.order.pop_front()
                {
                    self.seen.remove(&old);
                }
            }
        }
        if best >= MIN_CACHED_PROMPT { best / CACHE_BLOCK * CACHE_BLOCK } else { 0 }
    }
}

impl Shared {
    fn count_served(&self, usage: &Usage) {
        self.served.fetch_add(1, Ordering::SeqCst);
        self.prompt_tokens.fetch_add(usage.prompt_tokens, Ordering::SeqCst);
        self.completion_tokens.fetch_add(usage.completion_tokens, Ordering::SeqCst);
    }
}

/// A running simulated provider; stops when dropped.
pub struct SimulatedProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl SimulatedProvider {
    /// Starts serving on `listen` (port 0: any free port).
    pub async fn start(listen: SocketAddr, config: SimServerConfig) -> std::io::Result<Self> {
        let limits = ProviderLimits { rpm: config.limits.rpm, tpm: config.limits.tpm, ..Default::default() };
        let limiter =
            limits.limiter().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            model: SimulatedModel::new(config.model),
            limits,
            limiter,
            fail_next: AtomicU64::new(0),
            malformed_next: AtomicU64::new(0),
            served: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
            tool_calls: AtomicU64::new(0),
            embedding_requests: AtomicU64::new(0),
            embedded_texts: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            prompt_cache: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .route("/v1/messages", axum::routing::post(messages))
            .route("/v1/embeddings", axum::routing::post(embeddings))
            .with_state(shared.clone());
        let limits = foundation_core::http::HttpLimits::default();
        let task = tokio::spawn(foundation_core::http::serve(listener, app, limits, std::future::pending()));
        Ok(SimulatedProvider { addr, shared, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, for an [`OpenAiClient`](super::OpenAiClient) (`http://addr/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Its counts so far.
    pub fn stats(&self) -> ServerStats {
        let s = &self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ServerStats {
            served: get(&s.served),
            rate_limited: get(&s.rate_limited),
            faults: get(&s.faults),
            malformed: get(&s.malformed),
            bad_requests: get(&s.bad_requests),
            prompt_tokens: get(&s.prompt_tokens),
            completion_tokens: get(&s.completion_tokens),
            streams: get(&s.streams),
            streams_cancelled: get(&s.streams_cancelled),
            tool_calls: get(&s.tool_calls),
            embedding_requests: get(&s.embedding_requests),
            embedded_texts: get(&s.embedded_texts),
        }
    }

    /// The next `n` requests fail with HTTP 500 (uncharged).
    pub fn fail_next(&self, n: u64) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests get HTTP 200 with a body that is not a chat completion.
    pub fn malformed_next(&self, n: u64) {
        self.shared.malformed_next.store(n, Ordering::SeqCst);
    }
}

impl Drop for SimulatedProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes one from a fault counter if it is not zero.
fn take_one(counter: &AtomicU64) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

/// Which API a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

async fn chat(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match openai_format::parse_request(&body) {
        Ok(read) => serve(s, Api::OpenAi, read.request, read.model, read.stream, read.include_usage).await,
        Err(e) => {
            s.bad_requests.fetch_add(1, Ordering::SeqCst);
            error(Api::OpenAi, StatusCode::BAD_REQUEST, &e, HeaderMap::new())
        }
    }
}

async fn messages(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match anthropic_format::parse_request(&body) {
        Ok(read) => serve(s, Api::Anthropic, read.request, read.model, read.stream, true).await,
        Err(e) => {
            s.bad_requests.fetch_add(1, Ordering::SeqCst);
            error(Api::Anthropic, StatusCode::BAD_REQUEST, &e, HeaderMap::new())
        }
    }
}

/// The most numbers a simulated embedding has.
const MAX_EMBEDDING_DIMS: usize = 4096;
/// Numbers in a simulated embedding unless the request asks otherwise.
const DEFAULT_EMBEDDING_DIMS: usize = 256;

/// `POST /v1/embeddings`: the [`SimulatedEmbeddings`](super::SimulatedEmbeddings) of the
/// inputs, as floats or (`encoding_format: "base64"`, what the Python package asks for) as
/// little-endian `f32`s in base64; charged against the limits like a chat request.
async fn embeddings(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let bad = |s: &Shared, message: String| {
        s.bad_requests.fetch_add(1, Ordering::SeqCst);
        error(Api::OpenAi, StatusCode::BAD_REQUEST, &message, HeaderMap::new())
    };
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(&s, format!("invalid request: {e}")),
    };
    let inputs: Vec<String> = match request.get("input") {
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        Some(serde_json::Value::Array(many)) if many.iter().all(serde_json::Value::is_string) => {
            many.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Some(serde_json::Value::Array(_)) => {
            return bad(&s, "input: token arrays are not served; send texts".into());
        }
        _ => return bad(&s, "input must be a text or an array of texts".into()),
    };
    if inputs.is_empty() || inputs.len() > super::MAX_EMBEDDING_INPUTS {
        return bad(&s, format!("{} inputs; 1 to {} a request", inputs.len(), super::MAX_EMBEDDING_INPUTS));
    }
    let dims = match request.get("dimensions").map(serde_json::Value::as_u64) {
        None => DEFAULT_EMBEDDING_DIMS,
        Some(Some(d)) if (1..=MAX_EMBEDDING_DIMS as u64).contains(&d) => d as usize,
        Some(_) => return bad(&s, format!("dimensions must be 1 to {MAX_EMBEDDING_DIMS}")),
    };
    let base64 = match request.get("encoding_format").and_then(serde_json::Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return bad(&s, format!("encoding_format {other:?} is not float or base64")),
    };
    let model = request
        .get("model")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("simulated-embeddings")
        .to_string();
    let (vectors, usage) = super::SimulatedEmbeddings::new(model.clone(), dims).vectors(&inputs);
    let mut headers = HeaderMap::new();
    if let Some(limiter) = &s.limiter {
        let cost = s.limits.cost(TokenCost { input: usage.prompt_tokens, output: 0 });
        let granted = limiter.try_acquire(&cost);
        rate_headers(&s, Api::OpenAi, limiter, &mut headers);
        if let Err(RateLimitError::WouldWait { dimension, retry_in }) = granted {
            return too_many(&s, Api::OpenAi, &dimension, retry_in, headers);
        }
    }
    s.count_served(&usage);
    s.embedding_requests.fetch_add(1, Ordering::SeqCst);
    s.embedded_texts.fetch_add(inputs.len() as u64, Ordering::SeqCst);
    let data: Vec<serde_json::Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            };
            serde_json::json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = serde_json::json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    });
    (StatusCode::OK, headers, axum::Json(body)).into_response()
}

async fn serve(
    s: Arc<Shared>,
    api: Api,
    request: ChatRequest,
    model: Option<String>,
    stream: bool,
    include_usage: bool,
) -> Response {
    if take_one(&s.fail_next) {
        s.faults.fetch_add(1, Ordering::SeqCst);
        return error(api, StatusCode::INTERNAL_SERVER_ERROR, "injected fault", HeaderMap::new());
    }
    let mut completion = s.model.respond(&request);
    let usage = completion.usage;
    let mut headers = HeaderMap::new();
    if let Some(limiter) = &s.limiter {
        let cost = s.limits.cost(TokenCost { input: usage.prompt_tokens, output: usage.completion_tokens });
        let granted = limiter.try_acquire(&cost);
        rate_headers(&s, api, limiter, &mut headers);
        match granted {
            // Rate buckets keep what a permit paid when it is dropped.
            Ok(_paid) => {}
            Err(RateLimitError::WouldWait { dimension, retry_in }) => {
                return too_many(&s, api, &dimension, retry_in, headers);
            }
            Err(e) => return error(api, StatusCode::BAD_REQUEST, &e.to_string(), headers),
        }
    }
    if let Some(model) = model {
        completion.model = model;
    }
    let cached =
        foundation_core::sync::MutexRecover::lock_or_recover(&s.prompt_cache).cached_tokens(&request);
    completion.usage.cached_prompt_tokens = cached.min(completion.usage.prompt_tokens);
    let id = s.ids.fetch_add(1, Ordering::SeqCst);
    s.tool_calls.fetch_add(completion.tool_calls.len() as u64, Ordering::SeqCst);
    if stream {
        s.streams.fetch_add(1, Ordering::SeqCst);
        return stream_response(s, api, &request, completion, id, include_usage, headers);
    }
    tokio::time::sleep(s.model.latency(&request)).await;
    if take_one(&s.malformed_next) {
        s.malformed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::OK, headers, "{\"choices\": \"not what you expected\"").into_response();
    }
    s.count_served(&usage);
    let body = match api {
        Api::OpenAi => openai_format::response_json(
            &format!("chatcmpl-sim-{id}"),
            &completion.model,
            CREATED,
            &completion,
        ),
        Api::Anthropic => anthropic_format::response_json(&format!("msg_sim_{id}"), &completion),
    };
    (StatusCode::OK, headers, axum::Json(body)).into_response()
}

/// The `created` time of every answer: fixed, so that answers are the same in every run.
const CREATED: u64 = 1_700_000_000;

/// Counts a stream as cancelled if it is dropped (the client went away) before its end.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A streamed answer: server-sent events in the API's format, the first after the model's
/// latency, then one per `stream_interval`.
fn stream_response(
    s: Arc<Shared>,
    api: Api,
    request: &ChatRequest,
    completion: Completion,
    id: u64,
    include_usage: bool,
    mut headers: HeaderMap,
) -> Response {
    let mut frames: Vec<String> = Vec::new();
    let pieces = super::simulated::pieces(&completion, s.model.config().stream_chunk_tokens);
    match api {
        Api::OpenAi => {
            let id = format!("chatcmpl-sim-{id}");
            let model = completion.model.as_str();
            let data = |v: serde_json::Value| format!("data: {v}\n\n");
            frames.push(data(openai_format::chunk_json(
                &id,
                model,
                CREATED,
                serde_json::json!({"role": "assistant", "content": ""}),
                None,
            )));
            for piece in &pieces {
                let delta = match piece {
                    StreamEvent::Text(t) => openai_format::text_delta(t, false),
                    StreamEvent::ToolCall(d) => openai_format::tool_call_delta(d),
                    StreamEvent::Done(_) => continue,
                };
                frames.push(data(openai_format::chunk_json(&id, model, CREATED, delta, None)));
            }
            frames.push(data(openai_format::chunk_json(
                &id,
                model,
                CREATED,
                serde_json::json!({}),
                Some(&completion.finish_reason),
            )));
            if include_usage {
                frames.push(data(openai_format::usage_chunk_json(&id, model, CREATED, &completion.usage)));
            }
            frames.push("data: [DONE]\n\n".to_string());
        }
        Api::Anthropic => {
            for (event, data) in
                anthropic_format::stream_events(&format!("msg_sim_{id}"), &completion, &pieces)
            {
                frames.push(format!("event: {event}\ndata: {data}\n\n"));
            }
        }
    }
    let first = s.model.latency(request);
    let interval = s.model.config().stream_interval;
    let usage = completion.usage;
    let guard = StreamGuard { shared: s, finished: false };
    let frames: std::collections::VecDeque<String> = frames.into();
    let body = futures::stream::unfold(
        (frames, guard, Some(first)),
        move |(mut frames, mut guard, wait)| async move {
            let Some(mut frame) = frames.pop_front() else {
                if !guard.finished {
                    guard.finished = true;
                    guard.shared.count_served(&usage);
                }
                return None;
            };
            if let Some(wait) = wait.filter(|w| !w.is_zero()) {
                tokio::time::sleep(wait).await;
            }
            // Without a pause between pieces, the frames go out together, up to 16 KiB a write
            // (as a busy server's would): a stream's pieces still arrive one event at a time.
            if interval.is_zero() {
                while frame.len() < 16 << 10
                    && let Some(next) = frames.pop_front()
                {
                    frame.push_str(&next);
                }
            }
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(frame)), (frames, guard, Some(interval))))
        },
    );
    headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    (StatusCode::OK, headers, axum::body::Body::from_stream(body)).into_response()
}

/// A 429: `retry-after` (fractional seconds) and OpenAI's "Please try again in …" message.
fn too_many(
    s: &Shared,
    api: Api,
    dimension: &str,
    retry_in: Option<std::time::Duration>,
    mut headers: HeaderMap,
) -> Response {
    s.rate_limited.fetch_add(1, Ordering::SeqCst);
    let wait = retry_in.unwrap_or_default();
    insert(&mut headers, "retry-after", format!("{:.3}", wait.as_secs_f64()));
    let message = format!(
        "Rate limit reached for {dimension} per min. Please try again in {}ms.",
        wait.as_millis().max(1)
    );
    error(api, StatusCode::TOO_MANY_REQUESTS, &message, headers)
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// The API's rate-limit headers: limit, remaining and reset for requests and tokens (OpenAI:
/// `x-ratelimit-*` with the time to full as `6.5s`; Anthropic: `anthropic-ratelimit-*` with the
/// time it is full again, RFC 3339).
fn rate_headers(s: &Shared, api: Api, limiter: &RateLimiter, headers: &mut HeaderMap) {
    let available = limiter.available();
    for (name, limit) in [("requests", s.limits.rpm), ("tokens", s.limits.tpm)] {
        let (Some(limit), Some((_, level))) = (limit, available.iter().find(|(n, _)| n == name)) else {
            continue;
        };
        let remaining = level.max(0.0).floor() as u64;
        let reset = ((limit as f64 - level) / limit as f64 * 60.0).max(0.0);
        let (prefix, reset) = match api {
            Api::OpenAi => ("x-ratelimit-".to_string(), format!("{reset:.3}s")),
            Api::Anthropic => {
                ("anthropic-ratelimit-".to_string(), rfc3339_after(std::time::Duration::from_secs_f64(reset)))
            }
        };
        let (limit_h, remaining_h, reset_h) = match api {
            Api::OpenAi => (
                format!("{prefix}limit-{name}"),
                format!("{prefix}remaining-{name}"),
                format!("{prefix}reset-{name}"),
            ),
            Api::Anthropic => (
                format!("{prefix}{name}-limit"),
                format!("{prefix}{name}-remaining"),
                format!("{prefix}{name}-reset"),
            ),
        };
        for (header, value) in
            [(limit_h, limit.to_string()), (remaining_h, remaining.to_string()), (reset_h, reset)]
        {
            if let (Ok(n), Ok(v)) = (axum::http::HeaderName::try_from(header), HeaderValue::from_str(&value))
            {
                headers.insert(n, v);
            }
        }
    }
}

/// Now plus `after` as an RFC 3339 UTC time (`2026-12-06T22:14:04Z`), as Anthropic's reset
/// headers say it.
fn rfc3339_after(after: std::time::Duration) -> String {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default() + after;
    let secs = at.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn error(api: Api, status: StatusCode, message: &str, headers: HeaderMap) -> Response {
    let body = match api {
        Api::OpenAi => {
            serde_json::json!({"error": {"message": message, "type": "simulated", "code": status.as_u16()}})
        }
        Api::Anthropic => {
            let kind = match status.as_u16() {
                429 => "rate_limit_error",
                400 => "invalid_request_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    (status, headers, axum::Json(body)).into_response()
}
