//! Language-model providers: clients, protections, fallback and usage.
//!
//! - [`LanguageModel`]: the trait every client implements, whole answers
//!   ([`complete`](LanguageModel::complete)) and streams ([`stream`](LanguageModel::stream):
//!   [`CompletionStream`]); [`OpenAiClient`] for OpenAI-compatible endpoints (OpenAI, vLLM,
//!   Ollama, llama.cpp server), [`AnthropicClient`] for Anthropic's Messages API (feature
//!   `anthropic`), and [`SimulatedModel`], a deterministic model that needs no network and
//!   answers from the few-shot demonstrations in its prompt, calls tools and writes JSON-schema
//!   answers.
//! - One conversation for every API: [`ChatMessage`] (content parts, tool calls, tool results),
//!   [`ChatRequest`] (tools, [`ToolChoice`], [`ResponseFormat`], stop sequences, seed, checked
//!   before sending), [`Completion`] (text, tool calls, [`FinishReason`], [`Usage`] with cached
//!   prompt tokens).
//! - [`Provider`]: a client behind its account's limits (a multi-dimensional
//!   [`RateLimiter`](foundation_core::rate_limit::RateLimiter), settled with the tokens really
//!   used and corrected by response headers), a circuit breaker and retries that honour
//!   `retry-after`.
//! - [`LlmRouter`]: a chain of providers with fallback, a [`ModelRegistry`] of context windows
//!   and prices, and a [`UsageLedger`] of requests, tokens and cost per provider, model and
//!   tenant (also exported as metrics).
//! - [`CallCache`]: answers kept by (model, prompt, parameters) in front of any model, in this
//!   process and optionally a tier shared by the nodes; repeated calls do not pay twice.
//! - [`ModelServer`] and [`RemoteModel`]: a model served to the whole cluster and called (or
//!   streamed, bounded and back-pressured) from any node.
//! - [`SimulatedProvider`]: an HTTP server that speaks OpenAI's and Anthropic's APIs and
//!   behaves like a provider (limits, 429s with real headers, latency, faults, streams), for
//!   tests and benchmarks and any client (`foundation sim-provider`).
//!
//! Calls are plain async methods on cheap handles rather than messages to an actor: a call
//! waits for the network, and an actor in the way would serialise what the limiter already
//! orders. State that is shared (limiter, breaker, ledger) is behind short locks.
//!
//! ```
//! use foundation_actors::providers::*;
//! use foundation_core::rate_limit::ProviderLimits;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let sim = SimulatedModel::new(SimulatedConfig { latency: std::time::Duration::ZERO, ..Default::default() });
//! let options = ProviderOptions { limits: ProviderLimits::profile("openai-tier-1").unwrap(), ..Default::default() };
//! let router = LlmRouter::new(ModelRegistry::with_defaults()).provider(Provider::new("sim", sim, options)?);
//! let prompt = "---\nQuestion: What is the capital of France?\nAnswer: Paris\n---\nQuestion: Capital of France?\nAnswer:";
//! let answer = router.complete(&ChatRequest::prompt(prompt).tenant("acme")).await?;
//! assert_eq!(answer.content, "Answer: Paris");
//! let acme = router.usage().totals(&UsageFilter { tenant: Some("acme".into()), ..Default::default() });
//! assert_eq!(acme.requests, 1);
//! assert!(acme.cost_usd > 0.0);
//! # Ok::<(), LmError>(())
//! # }).unwrap();
//! ```

#[cfg(feature = "anthropic")]
mod anthropic;
// The API formats are written both ways (client and simulated server, streamed and whole): which
// parts a build uses depends on its features, so parts unused in a build are not warned about.
#[cfg(any(feature = "anthropic", feature = "sim-server"))]
#[cfg_attr(not(all(feature = "anthropic", feature = "streaming", feature = "sim-server")), allow(dead_code))]
mod anthropic_format;
mod call_cache;
mod catalog;
mod completion;
mod embed_batch;
mod embedding;
mod http_call;
mod json_schema;
mod message;
mod model;
mod openai;
#[cfg_attr(not(all(feature = "streaming", feature = "sim-server")), allow(dead_code))]
mod openai_format;
mod provider;
mod remote;
mod request;
mod router;
mod schema_check;
mod semantic_tier;
#[cfg(feature = "sim-server")]
mod sim_server;
mod simulated;
#[cfg(feature = "streaming")]
mod sse;
mod stream;
pub mod tokens;
mod usage;

#[cfg(feature = "anthropic")]
pub use anthropic::{
    AnthropicClient, DEFAULT_ANTHROPIC_BASE_URL, ENV_ANTHROPIC_API_KEY, ENV_ANTHROPIC_BASE_URL,
};
pub use call_cache::{
    CALL_CACHE, CachePolicy, CallCache, CallCacheConfig, CallCacheStats, DEFAULT_CALL_CACHE_BYTES,
    DEFAULT_CALL_CACHE_TTL,
};
pub use catalog::{ANY_PROVIDER, Deprecation, ModelRegistry, ModelSpec, ModelStatus};
pub use completion::{Completion, FinishReason, Usage};
pub use embed_batch::{BATCH_TIMEOUT, BatchConfig, EmbeddingBatcher};
pub use embedding::{
    EmbeddingModel, Embeddings, MAX_EMBEDDING_INPUTS, OpenAiEmbeddings, SimulatedEmbeddings,
};
pub use http_call::STREAM_DEADLINE_FACTOR;
pub use message::{ChatMessage, ContentPart, Role, ToolCall};
pub use model::{BoxFuture, LanguageModel, LmError};
pub use openai::{DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL, MAX_RESPONSE_BYTES, OpenAiClient};
pub use provider::{DEFAULT_MAX_WAIT, DEFAULT_RATE_LIMIT_PAUSE, Provider, ProviderOptions};
pub use remote::{
    DEFAULT_STREAM_IDLE, MAX_CONCURRENT_CALLS, MAX_OPEN_STREAMS, MODEL_SERVICE, ModelServer,
    ModelServerHandle, ModelServerStats, PULL_BATCH, RemoteModel, STREAM_WINDOW, model_capability,
};
#[cfg(feature = "json-schema")]
pub use request::schema_of;
pub use request::{
    ChatRequest, DEFAULT_MAX_TOKENS, MAX_MAX_TOKENS, MAX_STOP_SEQUENCES, ResponseFormat, ToolChoice, ToolSpec,
};
pub use router::{ConfigFollower, LlmRouter, OBSERVED_WEIGHT, Observed, Routing, UNHEALTHY_FAILURE_RATE};
pub use schema_check::{SchemaViolation, check_against_schema};
pub use semantic_tier::{
    DEFAULT_EMBED_TIMEOUT, DEFAULT_SEMANTIC_ENTRIES, SEMANTIC_CACHE, SemanticStats, SemanticTier,
    SemanticTierConfig,
};
#[cfg(feature = "sim-server")]
pub use sim_server::{ServerStats, SimServerConfig, SimulatedProvider};
pub use simulated::{
    DEFAULT_ERROR_RATE, DEFAULT_LATENCY, DEFAULT_MIN_SIMILARITY, DEFAULT_STREAM_CHUNK_TOKENS,
    SimulatedConfig, SimulatedModel, TOOL_SIMILARITY, similarity,
};
pub use stream::{
    CompletionStream, MAX_STREAMED_BYTES, MAX_TOOL_CALLS, StreamAssembler, StreamEvent, ToolCallDelta,
};
pub use usage::{
    LEDGER_FILE_VERSION, LedgerFileError, NO_TENANT, ProcessCallTotals, UsageFilter, UsageKey, UsageLedger,
    UsageTotals, process_call_totals,
};
