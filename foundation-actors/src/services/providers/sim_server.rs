//! A simulated provider: an HTTP server on loopback that speaks the chat-completions API,
//! answers with the [`SimulatedModel`], enforces its own requests- and tokens-per-minute limits
//! (429 with OpenAI's headers when exceeded), and injects latency, 5xx faults and malformed
//! answers on demand. For tests and benchmarks of everything that talks to providers.
//!
//! Admission is what real providers do: a request is charged when it arrives, for its prompt
//! and its completion tokens (the simulated answer is known in advance, so the charge is exact),
//! against token buckets that hold a minute's worth and refill continuously. Every response
//! carries `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; a 429 also carries
//! `retry-after` (seconds, fractional) and says "Please try again in …" like OpenAI.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use foundation_core::rate_limit::{ProviderLimits, RateLimitError, RateLimiter, TokenCost};
use serde::Deserialize;

use super::message::{ChatMessage, ChatRequest};
use super::simulated::{SimulatedConfig, SimulatedModel};

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
    ids: AtomicU64,
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
            ids: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
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

#[derive(Deserialize)]
struct WireRequest {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    max_tokens: Option<u64>,
}

/// Takes one from a fault counter if it is not zero.
fn take_one(counter: &AtomicU64) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

async fn chat(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let wire: WireRequest = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => {
            s.bad_requests.fetch_add(1, Ordering::SeqCst);
            return error(StatusCode::BAD_REQUEST, &format!("invalid request: {e}"), HeaderMap::new());
        }
    };
    if take_one(&s.fail_next) {
        s.faults.fetch_add(1, Ordering::SeqCst);
        return error(StatusCode::INTERNAL_SERVER_ERROR, "injected fault", HeaderMap::new());
    }
    let mut request = ChatRequest::new(wire.messages);
    if let Some(max) = wire.max_tokens {
        request.max_tokens = max;
    }
    let (content, usage) = s.model.answer(&request);
    let mut headers = HeaderMap::new();
    if let Some(limiter) = &s.limiter {
        let cost = s.limits.cost(TokenCost { input: usage.prompt_tokens, output: usage.completion_tokens });
        let granted = limiter.try_acquire(&cost);
        rate_headers(&s, limiter, &mut headers);
        match granted {
            // Rate buckets keep what a permit paid when it is dropped.
            Ok(_paid) => {}
            Err(RateLimitError::WouldWait { dimension, retry_in }) => {
                s.rate_limited.fetch_add(1, Ordering::SeqCst);
                let wait = retry_in.unwrap_or_default();
                insert(&mut headers, "retry-after", format!("{:.3}", wait.as_secs_f64()));
                let message = format!(
                    "Rate limit reached for {dimension} per min. Please try again in {}ms.",
                    wait.as_millis().max(1)
                );
                return error(StatusCode::TOO_MANY_REQUESTS, &message, headers);
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string(), headers),
        }
    }
    tokio::time::sleep(s.model.latency(&request)).await;
    if take_one(&s.malformed_next) {
        s.malformed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::OK, headers, "{\"choices\": \"not what you expected\"").into_response();
    }
    s.served.fetch_add(1, Ordering::SeqCst);
    s.prompt_tokens.fetch_add(usage.prompt_tokens, Ordering::SeqCst);
    s.completion_tokens.fetch_add(usage.completion_tokens, Ordering::SeqCst);
    let id = s.ids.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({
        "id": format!("chatcmpl-sim-{id}"),
        "object": "chat.completion",
        "created": 0,
        "model": wire.model.unwrap_or_else(|| s.model.config().model.clone()),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.total()},
    });
    (StatusCode::OK, headers, axum::Json(body)).into_response()
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// OpenAI's headers: limit, remaining and time to full for requests and tokens.
fn rate_headers(s: &Shared, limiter: &RateLimiter, headers: &mut HeaderMap) {
    let available = limiter.available();
    let dims: [(&str, Option<u64>, &'static str, &'static str, &'static str); 2] = [
        (
            "requests",
            s.limits.rpm,
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ),
        (
            "tokens",
            s.limits.tpm,
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ),
    ];
    for (name, limit, limit_h, remaining_h, reset_h) in dims {
        let (Some(limit), Some((_, level))) = (limit, available.iter().find(|(n, _)| n == name)) else {
            continue;
        };
        let remaining = level.max(0.0).floor() as u64;
        let reset = (limit as f64 - level) / limit as f64 * 60.0;
        insert(headers, limit_h, limit.to_string());
        insert(headers, remaining_h, remaining.to_string());
        insert(headers, reset_h, format!("{:.3}s", reset.max(0.0)));
    }
}

fn error(status: StatusCode, message: &str, headers: HeaderMap) -> Response {
    let body =
        serde_json::json!({"error": {"message": message, "type": "simulated", "code": status.as_u16()}});
    (status, headers, axum::Json(body)).into_response()
}
